"""`tf.distribute` strategies and numeric precision chosen by flag value.

Shared by the training scripts, so that `--distribution_strategy` and `--precision`
mean the same everywhere and fail with a message naming the flag.
"""

from __future__ import annotations

import functools

import tensorflow as tf
import tf_keras

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")
# Flag value -> Keras dtype policy (variables stay float32 in the mixed policies).
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16",
              "mixed_float16": "mixed_float16"}


@functools.lru_cache(maxsize=None)
def create_strategy(name: str, tpu: str = "", num_gpus: int = 0) -> tf.distribute.Strategy:
  """The strategy `name` (see `STRATEGIES`), one instance per process and settings.

  Strategies are cached, as TensorFlow expects one strategy per process.

  Args:
    name: `default` (one device), `mirrored` (`num_gpus` GPUs, or all visible ones;
      every logical CPU device when there are none), `multi_worker_mirrored` (workers from TF_CONFIG)
      or `tpu` (the TPU at `tpu`: a name, a grpc:// address, or '' for a local TPU).
    tpu: the TPU address for `tpu`.
    num_gpus: GPUs for `mirrored`; 0 uses every visible GPU.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus > len(gpus):
      raise ValueError(f"--num_gpus={num_gpus} but only {len(gpus)} GPUs are visible.")
    if gpus:
      return tf.distribute.MirroredStrategy(
          [gpu.name for gpu in gpus[:num_gpus or len(gpus)]])
    # On CPU devices, collective all-reduces of differently shaped models in one
    # process collide in TensorFlow's collective runtime; reduce on one device instead.
    return tf.distribute.MirroredStrategy(
        [cpu.name for cpu in tf.config.list_logical_devices("CPU")],
        cross_device_ops=tf.distribute.ReductionToOneDevice())
  if name == "multi_worker_mirrored":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError, RuntimeError) as error:
      raise ValueError(f"--distribution_strategy=tpu found no TPU at --tpu={tpu!r}: "
                       f"{error}") from error
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"Unknown --distribution_strategy {name!r}; allowed values: "
                   f"{', '.join(STRATEGIES)}.")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's files (always, outside multi-worker jobs)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type or isinstance(
      strategy, tf.distribute.TPUStrategy):
    return True
  if resolver.task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def set_precision(precision: str) -> None:
  """Sets the Keras dtype policy for models built from now on."""
  if precision not in PRECISIONS:
    raise ValueError(f"Unknown --precision {precision!r}; allowed values: "
                     f"{', '.join(PRECISIONS)}.")
  tf_keras.mixed_precision.set_global_policy(PRECISIONS[precision])
