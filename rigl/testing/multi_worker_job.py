"""A small RigL training job, run as one worker process of a multi-worker test.

`python -m rigl.testing.multi_worker_job --strategy=multi_worker_mirrored ...` trains
a small conv net (no batch norm, whose statistics are per replica) with RigL under the
strategy that TF_CONFIG describes, through `training.Trainer`. Every input pipeline
reads its share of each global batch of a fixed data set, so a run over any number of
workers sees the same global batches as a one-process run with the same global batch.

With `--record_batches=N`, the job first trains one batch at a time up to batch N and
writes the step counter, masks and kernels after each batch to
`<masks_dir>/masks-<task index>.npz`; then it trains on to `--batches`. With
`--run_dir`, it checkpoints there (the chief; see `training.Trainer`) and resumes from
the latest checkpoint. A failed peer worker ends it with `strategies.WorkerFailure`.

The functions serve the tests' one-process reference runs as well.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

import rigl
from rigl import strategies
from rigl import training

IMAGE_SHAPE = (6, 6, 2)
NUM_CLASSES = 4
GLOBAL_BATCH = 8
BATCHES_PER_EPOCH = 6
SPARSITY = 0.7
MASK_UPDATE_FREQUENCY = 2
DROP_FRACTION = 0.5
LEARNING_RATE = 0.1
MOMENTUM = 0.9
DATA_SEED, WEIGHT_SEED = 0, 1
WEIGHT_SCALE = 0.3
# Task index written for a process outside a multi-worker job.
SINGLE_PROCESS_TASK = 0
MASKS_FILE = "masks-{task}.npz"
KEEP_CHECKPOINTS = 2


def _epoch_data(epoch: int) -> tuple[np.ndarray, np.ndarray]:
  """The epoch's examples, in global-batch order (a fixed permutation per epoch)."""
  rng = np.random.default_rng(DATA_SEED)
  count = GLOBAL_BATCH * BATCHES_PER_EPOCH
  images = rng.standard_normal((count, *IMAGE_SHAPE)).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, count).astype(np.int64)
  order = np.random.default_rng([DATA_SEED, epoch]).permutation(count)
  return images[order], labels[order]


def train_input(epoch: int, skip: int, context: tf.distribute.InputContext
                ) -> tf.data.Dataset:
  """This pipeline's slice of every global batch of `epoch`, without the first `skip`."""
  per_replica = context.get_per_replica_batch_size(GLOBAL_BATCH)
  replicas_per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
  rows = per_replica * replicas_per_pipeline
  start = context.input_pipeline_id * rows
  images, labels = _epoch_data(epoch)
  images = images.reshape(BATCHES_PER_EPOCH, GLOBAL_BATCH, *IMAGE_SHAPE)
  labels = labels.reshape(BATCHES_PER_EPOCH, GLOBAL_BATCH)
  shard = (images[:, start:start + rows].reshape(-1, *IMAGE_SHAPE),
           labels[:, start:start + rows].reshape(-1))
  return tf.data.Dataset.from_tensor_slices(shard).batch(
      per_replica, drop_remainder=True).skip(skip)


def build(strategy: tf.distribute.Strategy
          ) -> tuple[tf_keras.Model, rigl.SparseOptimizer]:
  """The model, with weights drawn by NumPy, and its RigL optimizer, under `strategy`."""
  with strategy.scope():
    model = tf_keras.Sequential([
        tf_keras.Input(IMAGE_SHAPE),
        tf_keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(16, activation="relu", name="hidden"),
        tf_keras.layers.Dense(NUM_CLASSES, name="logits")])
    rng = np.random.default_rng(WEIGHT_SEED)
    model.set_weights([(WEIGHT_SCALE * rng.standard_normal(w.shape)).astype(np.float32)
                       for w in model.get_weights()])
    optimizer = rigl.create_sparse_optimizer(
        "rigl", tf_keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM), model,
        rigl.SparsityConfig(SPARSITY, "erdos_renyi"),
        schedule=rigl.MaskUpdateSchedule(0, -1, MASK_UPDATE_FREQUENCY, DROP_FRACTION))
  return model, optimizer


def run_config(batches: int, run_dir: str = "", steps_per_checkpoint: int = 0,
               log: Callable[[str], None] = print) -> training.RunConfig:
  """Training for `batches` batches; checkpoints in `run_dir` when it is given."""
  return training.RunConfig(
      train_steps=batches, global_batch_size=GLOBAL_BATCH,
      steps_per_epoch=BATCHES_PER_EPOCH, count_batches=True,
      steps_per_checkpoint=steps_per_checkpoint, save_path=run_dir,
      save_checkpoints=bool(run_dir), keep_checkpoint_max=KEEP_CHECKPOINTS,
      mask_images=False, log=log)


def local_value(variable: tf.Variable) -> np.ndarray:
  """The value of this process's first copy of `variable`."""
  values = getattr(variable, "values", None)
  return (values[0] if values else variable).numpy()


def train_recording(trainer: training.Trainer, batches: int) -> dict[str, np.ndarray]:
  """Trains batch by batch up to `batches`, recording the state after every batch.

  Returns `steps` (the step counter after each batch) and, per masked layer `name`,
  `name.mask` (its masks as `np.packbits` rows) and `name.kernel` (its kernels).
  """
  if batches <= trainer.progress:
    raise ValueError(f"Nothing to record: the run is at batch {trainer.progress}, "
                     f"not before batch {batches}.")
  records: dict[str, list[np.ndarray]] = {"steps": []}
  for batch in range(trainer.progress + 1, batches + 1):
    trainer.train(train_input, until=batch)
    records["steps"].append(np.array(trainer.step))
    for name, mask in trainer.optimizer.masks.items():
      records.setdefault(f"{name}.mask", []).append(np.packbits(local_value(mask) != 0))
      records.setdefault(f"{name}.kernel", []).append(
          local_value(trainer.optimizer.kernels[name]))
  return {key: np.stack(values) for key, values in records.items()}


def task_index(strategy: tf.distribute.Strategy) -> int:
  """This process's worker index (0 outside a multi-worker job)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  return resolver.task_id if resolver and resolver.task_type else SINGLE_PROCESS_TASK


def write_records(directory: str, task: int, records: dict[str, np.ndarray]) -> None:
  """Writes `records` as `MASKS_FILE`, through a temporary file (readers poll for it)."""
  path = pathlib.Path(directory) / MASKS_FILE.format(task=task)
  temporary = path.with_suffix(".tmp.npz")
  np.savez(temporary, **records)
  os.replace(temporary, path)


def main(argv: Sequence[str]) -> None:
  """Parses the flags (see the module docstring) and runs this worker's part."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--strategy", default="multi_worker_mirrored",
                      choices=strategies.STRATEGIES)
  parser.add_argument("--batches", type=int, required=True,
                      help="Global batches to train in all.")
  parser.add_argument("--record_batches", type=int, default=0,
                      help="Record the state after each of the first batches.")
  parser.add_argument("--masks_dir", default="",
                      help="Where the records go (needed with --record_batches).")
  parser.add_argument("--run_dir", default="", help="Checkpoint directory.")
  parser.add_argument("--steps_per_checkpoint", type=int, default=0,
                      help="Batches between checkpoints (0: once per epoch).")
  args = parser.parse_args(argv)
  if args.record_batches and not args.masks_dir:
    parser.error("--record_batches needs --masks_dir.")
  strategy = strategies.create_strategy(args.strategy)
  with strategies.stop_on_worker_failure(strategy):
    model, optimizer = build(strategy)
    trainer = training.Trainer(
        model, optimizer,
        run_config(args.batches, args.run_dir, args.steps_per_checkpoint), strategy)
    trainer.restore_latest()
    if args.record_batches:
      write_records(args.masks_dir, task_index(strategy),
                    train_recording(trainer, args.record_batches))
    trainer.train(train_input, until=args.batches)
  print(f"Worker {task_index(strategy)} finished at step {trainer.step}.", flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
