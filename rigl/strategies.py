"""`tf.distribute` strategies and numeric precision chosen by flag value.

Shared by the training scripts, so that `--distribution_strategy` and `--precision`
mean the same everywhere and fail with a message naming the flag.

Multi-worker jobs: when a worker dies or stops answering, TensorFlow aborts the
collective operations of the others, at once when its connections drop, or when the
coordination service has missed its heartbeats for 10 s (TensorFlow's default). A job
does not hang on a lost worker, but cannot continue either: every worker must restart
and resume from the run directory's latest checkpoint. `stop_on_worker_failure` turns
that error into a one-line exit.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Iterator

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


def num_workers(strategy: tf.distribute.Strategy) -> int:
  """Processes taking part in the strategy's collectives (1 outside multi-worker jobs)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type or isinstance(
      strategy, tf.distribute.TPUStrategy):
    return 1
  jobs = resolver.cluster_spec().as_dict()
  return sum(len(jobs.get(job, ())) for job in ("chief", "worker"))


# What collective operations raise once another worker is gone: a dropped connection
# or missed coordination-service heartbeats (Unavailable), a collective timeout
# (DeadlineExceeded), or the cancellation of operations waiting on them.
WORKER_FAILURE_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                         tf.errors.AbortedError, tf.errors.CancelledError)
# A task's device-name prefix in TensorFlow messages, e.g. /job:worker/replica:0/task:1.
_TASK_NAME = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")
# The reason TensorFlow gives for aborting collectives, after this phrase.
_ABORT_REASON = re.compile(r"Collective ops is aborted by: *(.*)")
# Characters of TensorFlow's message kept when it has no recognisable reason line.
MAX_REASON_CHARS = 300


class WorkerFailure(SystemExit):
  """This worker stops because another worker of its multi-worker job failed.

  A `SystemExit` (status 1), so that a script ends with its one-line message rather
  than a traceback; `failed_tasks` names the failed tasks, e.g. ("worker 1",).
  """

  def __init__(self, message: str, failed_tasks: tuple[str, ...]):
    super().__init__(message)
    self.failed_tasks = failed_tasks


def _task_label(job: str, index: int | str) -> str:
  return f"{job} {index}"


def worker_failure(error: tf.errors.OpError,
                   strategy: tf.distribute.Strategy) -> WorkerFailure | None:
  """The `WorkerFailure` that `error` means for this worker, or None for other errors.

  An error means a failed peer when this is a multi-worker job, its type is one of
  `WORKER_FAILURE_ERRORS`, and TensorFlow's message names another task of the job or
  says that collectives were aborted.
  """
  if not isinstance(error, WORKER_FAILURE_ERRORS) or num_workers(strategy) < 2:
    return None
  resolver = strategy.cluster_resolver
  this_task = _task_label(resolver.task_type, resolver.task_id)
  message = error.message or ""
  failed = tuple(dict.fromkeys(
      label for label in (_task_label(job, index)
                          for job, index in _TASK_NAME.findall(message))
      if label != this_task))
  reason = _ABORT_REASON.search(message)
  if not failed and not reason:
    return None
  reason_text = (reason.group(1) if reason else
                 " ".join(message.split())[:MAX_REASON_CHARS]).strip(" :")
  peers = " and ".join(failed) if failed else "another worker"
  return WorkerFailure(
      f"{this_task.capitalize()} stops: {peers} of the multi-worker job failed "
      f"({type(error).__name__}: {reason_text}). Restart every worker to resume from "
      "the run directory's latest checkpoint.", failed)


@contextlib.contextmanager
def stop_on_worker_failure(strategy: tf.distribute.Strategy) -> Iterator[None]:
  """Raises `WorkerFailure` (a one-line exit) when another worker of the job fails.

  Wrap a worker's whole training and evaluation: the error can come from any
  collective (a training step, the input pipeline's start, the evaluation, a
  checkpoint of variables read across replicas). Other errors pass unchanged.
  """
  try:
    yield
  except WORKER_FAILURE_ERRORS as error:
    failure = worker_failure(error, strategy)
    if failure is None:
      raise
    raise failure from None


def set_precision(precision: str) -> None:
  """Sets the Keras dtype policy for models built from now on."""
  if precision not in PRECISIONS:
    raise ValueError(f"Unknown --precision {precision!r}; allowed values: "
                     f"{', '.join(PRECISIONS)}.")
  tf_keras.mixed_precision.set_global_policy(PRECISIONS[precision])
