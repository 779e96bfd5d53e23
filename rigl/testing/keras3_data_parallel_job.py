"""Keras 3 sparse training on one device or data-parallel, run as a test's process.

`python -m rigl.testing.keras3_data_parallel_job --replicas=N --output=FILE` trains a
tiny Dense model with each of `METHODS` through `model.fit`, on the Keras backend
that `KERAS_BACKEND` names: with `--replicas=1` on one device without a distribution;
with more, data-parallel (JAX: `keras.distribution.DataParallel`; TensorFlow:
`tf.distribute.MirroredStrategy`) over that many CPU devices. Every run sees the same
data, weights and global batches. The devices exist only when the process starts
with `environment(backend, replicas)`, which the TensorFlow run completes by
configuring its logical CPUs before TensorFlow initialises.

It writes, per method and masked layer `name`, `<method>/<name>/initial` (the
initial mask), `<method>/<name>/replicas` (the final mask of every replica, stacked)
and `<method>/<name>/sparsity` (the layer's target sparsity) to FILE (`.npz`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

import rigl

METHODS = ("rigl", "set")
INPUT_SIZE = 8
HIDDEN_UNITS = 16
NUM_CLASSES = 3
GLOBAL_BATCH = 8
EXAMPLES = 32
EPOCHS = 2
SPARSITY = 0.8
MASK_UPDATE_FREQUENCY = 2
MASK_UPDATE_END_STEP = 100
LEARNING_RATE = 0.1
MOMENTUM = 0.9
DATA_SEED, WEIGHT_SEED, MASK_SEED = 0, 1, 2
WEIGHT_SCALE = 0.5


def environment(backend: str, replicas: int) -> dict[str, str]:
  """The environment of a job on `backend` with `replicas` CPU devices."""
  env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
  if backend == "jax":
    env["XLA_FLAGS"] = " ".join(
        [env.get("XLA_FLAGS", ""), f"--xla_force_host_platform_device_count={replicas}"])
  return env


def _data() -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(DATA_SEED)
  inputs = rng.standard_normal((EXAMPLES, INPUT_SIZE)).astype(np.float32)
  return inputs, rng.integers(0, NUM_CLASSES, EXAMPLES).astype(np.int32)


def _train(method: str) -> keras.optimizers.Optimizer:
  """Trains the model with `method` in the current scope; returns its optimizer."""
  model = keras.Sequential([
      keras.Input((INPUT_SIZE,)),
      keras.layers.Dense(HIDDEN_UNITS, activation="tanh", name="hidden"),
      keras.layers.Dense(NUM_CLASSES, name="logits")])
  rng = np.random.default_rng(WEIGHT_SEED)
  model.set_weights([(WEIGHT_SCALE * rng.standard_normal(w.shape)).astype(np.float32)
                     for w in model.get_weights()])
  optimizer = rigl.sparsify(
      model, keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM), method=method,
      sparsity=SPARSITY, distribution="random", seed=MASK_SEED,
      schedule=rigl.MaskUpdateSchedule(frequency=MASK_UPDATE_FREQUENCY,
                                       end_step=MASK_UPDATE_END_STEP))
  model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  inputs, labels = _data()
  model.fit(inputs, labels, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False,
            verbose=0)
  return optimizer


def _replica_values(variable: keras.Variable, strategy: Any) -> np.ndarray:
  """Every device's copy of `variable`, stacked."""
  if keras.backend.backend() == "jax":
    copies = [shard.data for shard in variable.value.addressable_shards]
  else:
    copies = strategy.experimental_local_results(variable.value)
  return np.stack([np.asarray(keras.ops.convert_to_numpy(c)) for c in copies])


def _run(replicas: int) -> dict[str, np.ndarray]:
  """Trains every method; the arrays the job writes (see the module docstring)."""
  strategy = tf.distribute.get_strategy()
  scope = contextlib.nullcontext
  if replicas > 1 and keras.backend.backend() == "tensorflow":
    strategy = tf.distribute.MirroredStrategy(
        [device.name for device in tf.config.list_logical_devices("CPU")])
    scope = strategy.scope
  elif replicas > 1:
    scope = keras.distribution.DataParallel().scope
  results = {}
  for method in METHODS:
    with scope():
      optimizer = _train(method)
    initial = optimizer.initial_masks()
    for name, mask in optimizer.masks.items():
      results[f"{method}/{name}/initial"] = initial[name]
      results[f"{method}/{name}/replicas"] = _replica_values(mask, strategy)
      results[f"{method}/{name}/sparsity"] = np.array(optimizer.layer_sparsities[name])
  return results


def main(argv: Sequence[str]) -> None:
  """Parses the flags (see the module docstring), trains and writes the masks."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--replicas", type=int, required=True)
  parser.add_argument("--output", required=True, help="The .npz file to write.")
  args = parser.parse_args(argv)
  if keras.backend.backend() == "tensorflow":
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * args.replicas)
  devices = (len(keras.distribution.list_devices("cpu"))
             if keras.backend.backend() == "jax"
             else len(tf.config.list_logical_devices("CPU")))
  if devices != args.replicas:
    raise RuntimeError(f"Expected {args.replicas} CPU devices, found {devices}: start "
                       "the job with `environment(backend, replicas)`.")
  np.savez(args.output, **_run(args.replicas))


if __name__ == "__main__":
  main(sys.argv[1:])
