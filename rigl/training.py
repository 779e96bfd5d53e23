"""The train/eval loop every training script shares.

`train_and_evaluate` trains a Keras model with a sparse optimizer for a number of epochs
under a `tf.distribute` strategy, evaluates on the full evaluation set after every
epoch, writes TensorBoard summaries (loss, accuracy, learning rate, drop fraction,
global and per-layer sparsity, inference and cumulative training FLOPs, mask images),
prints one progress line per epoch, checkpoints model, optimizer (masks, schedule state,
slots, step) and its own counters every epoch, resumes from the latest checkpoint, and
finally writes `results.json`.

A run directory records the settings that define the run (`run_config.json`); resuming
with different settings is refused rather than silently mixing two runs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import time
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf
import tf_keras

from rigl import flops
from rigl import sparse_kernels
from rigl.sparse_optimizer_base import DynamicSparseOptimizer
from rigl.sparse_optimizer_base import SparseOptimizer

RUN_CONFIG_FILE = "run_config.json"
RESULTS_FILE = "results.json"
MASK_RECORDS_FILE = "mask_records.npz"
CHECKPOINT_DIR = "checkpoints"
# Training FLOPs are accounted after the first call of an epoch and then every this
# many calls, from the masks' FLOPs at both ends of each stretch.
FLOPS_SAMPLE_CALLS = 100


@dataclasses.dataclass
class RunConfig:
  """How long to train and where to keep the run.

  Attributes:
    num_epochs: passes over the training data.
    global_batch_size: examples per step over all replicas.
    training_method: the method's flag value, for FLOPs accounting.
    save_path: run directory; empty keeps nothing on disk.
    identity: the settings that define the run; a resumed run must match them.
    l2_scale: L2 penalty l2_scale * sum(w^2) / 2 on every conv and dense kernel.
    save_checkpoints: checkpoint every epoch and resume from the latest checkpoint.
    keep_checkpoint_max: checkpoints kept (0 keeps all).
    mask_record_frequency: record the masks every this many steps (0: never).
    log: where progress lines go.
  """
  num_epochs: int
  global_batch_size: int
  training_method: str
  save_path: str = ""
  identity: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  l2_scale: float = 0.0
  save_checkpoints: bool = True
  keep_checkpoint_max: int = 5
  mask_record_frequency: int = 0
  log: Callable[[str], None] = print


def check_run_directory(save_path: str, identity: Mapping[str, Any]) -> None:
  """Records `identity` in a new run directory, or checks it against an existing one."""
  path = pathlib.Path(save_path) / RUN_CONFIG_FILE
  identity = json.loads(json.dumps(dict(identity)))
  if path.exists():
    recorded = json.loads(path.read_text())
    differences = sorted(key for key in set(recorded) | set(identity)
                         if recorded.get(key) != identity.get(key))
    if differences:
      details = ", ".join(f"{key}: {recorded.get(key)!r} there, {identity.get(key)!r} now"
                          for key in differences)
      raise ValueError(f"{save_path} holds a different run ({details}); use another "
                       "--save_path or delete it.")
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  _write_json_atomically(path, identity)


def _write_json_atomically(path: pathlib.Path, values: Mapping[str, Any]) -> None:
  temporary = path.with_suffix(".tmp")
  temporary.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
  os.replace(temporary, path)


def l2_penalty(kernels) -> tf.Tensor:
  """sum(w^2) / 2 over `kernels` (TF1's l2_regularizer without its scale)."""
  return tf.add_n([tf.nn.l2_loss(kernel) for kernel in kernels])


def model_kernels(model: tf_keras.Model) -> list[tf.Variable]:
  """Conv and dense kernels (not depthwise kernels, biases or BN), for L2."""
  return [layer.kernel for layer in sparse_kernels.find_kernels(model)]


def _mask_image(mask: np.ndarray) -> np.ndarray:
  """A [1, rows, cols, 1] image of a mask: conv kernels as (k*k*in) x out."""
  matrix = mask.reshape(-1, mask.shape[-1])
  return matrix[np.newaxis, :, :, np.newaxis].astype(np.float32)


class _Counters(tf.Module):
  """Run counters kept in checkpoints beside model and optimizer."""

  def __init__(self):
    super().__init__()
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.training_flops = tf.Variable(0.0, dtype=tf.float64, trainable=False)
    self.dense_step_flops = tf.Variable(0.0, dtype=tf.float64, trainable=False)
    self.wall_time_s = tf.Variable(0.0, dtype=tf.float64, trainable=False)


class _MaskRecorder:
  """Collects boolean masks every `frequency` steps into an .npz file."""

  def __init__(self, path: pathlib.Path, frequency: int):
    self.path, self.frequency = path, frequency
    self.steps: list[int] = []
    self.masks: dict[str, list[np.ndarray]] = {}
    if frequency and path.exists():
      with np.load(path) as records:
        self.steps = list(records["steps"])
        for name in records["layer_names"]:
          self.masks[str(name)] = list(records[str(name)])

  def maybe_record(self, step: int, optimizer: SparseOptimizer) -> None:
    if not self.frequency or step % self.frequency or step in self.steps:
      return
    self.steps.append(step)
    for name, mask in optimizer.masks.items():
      self.masks.setdefault(name, []).append(mask.numpy().astype(bool))

  def save(self) -> None:
    if self.frequency and self.steps:
      arrays = {name: np.stack(values) for name, values in self.masks.items()}
      temporary = self.path.with_suffix(".tmp.npz")
      np.savez_compressed(temporary, steps=np.array(self.steps),
                          layer_names=np.array(list(self.masks)), **arrays)
      os.replace(temporary, self.path)


def train_and_evaluate(model: tf_keras.Model, optimizer: SparseOptimizer,
                       train_dataset_fn: Callable[[int], tf.data.Dataset],
                       eval_dataset: tf.data.Dataset, config: RunConfig, *,
                       strategy: tf.distribute.Strategy | None = None,
                       extra_results: Callable[[], Mapping[str, Any]] | None = None
                       ) -> dict[str, Any]:
  """Trains, evaluates after every epoch, checkpoints, and returns the results.

  Args:
    model, optimizer: built under `strategy.scope()`; the model outputs logits.
    train_dataset_fn: the training batches of an epoch (global batches), given the
      epoch index, so that a resumed run sees the same data order.
    eval_dataset: the evaluation batches (global batches), iterated fully.
    config: run length, directory and settings.
    strategy: the distribution strategy (default: the current one).
    extra_results: more entries for `results.json`, computed after training.
  """
  strategy = strategy or tf.distribute.get_strategy()
  save_path = pathlib.Path(config.save_path) if config.save_path else None
  if save_path:
    check_run_directory(config.save_path, config.identity)
  counters = _Counters()
  with strategy.scope():
    optimizer.build(model.trainable_variables)  # Slots exist before a restore.
  manager = None
  if save_path and config.save_checkpoints:
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, counters=counters)
    manager = tf.train.CheckpointManager(
        checkpoint, str(save_path / CHECKPOINT_DIR),
        max_to_keep=config.keep_checkpoint_max or None)
    if manager.latest_checkpoint:
      checkpoint.restore(manager.latest_checkpoint).expect_partial()
      config.log(f"Resumed from {manager.latest_checkpoint} at epoch "
                 f"{int(counters.epoch.numpy())}, step {int(optimizer.iterations.numpy())}.")
  writers = {}
  if save_path:
    writers = {split: tf.summary.create_file_writer(str(save_path / split))
               for split in ("train", "eval")}
  recorder = _MaskRecorder(save_path / MASK_RECORDS_FILE if save_path else pathlib.Path(),
                           config.mask_record_frequency if save_path else 0)

  specs = flops.layer_specs(model)
  dense_flops = flops.count(specs, {}).flops
  kernels = model_kernels(model)
  loss_object = tf_keras.losses.SparseCategoricalCrossentropy(
      from_logits=True, reduction=tf_keras.losses.Reduction.NONE)

  def replica_train_step(images, labels):
    with tf.GradientTape() as tape:
      logits = model(images, training=True)
      per_example = loss_object(labels, logits)
      loss = tf.nn.compute_average_loss(per_example,
                                        global_batch_size=config.global_batch_size)
      if config.l2_scale:
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        loss += config.l2_scale * l2_penalty(kernels) / tf.cast(replicas, loss.dtype)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return tf.reduce_sum(per_example)

  def replica_eval_step(images, labels):
    logits = model(images, training=False)
    per_example = loss_object(labels, logits)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int64),
                               tf.cast(labels, tf.int64)), tf.float32)
    return (tf.reduce_sum(per_example), tf.reduce_sum(correct),
            tf.cast(tf.size(correct), tf.float32))

  @tf.function
  def train_step(images, labels):
    loss_sum = strategy.run(replica_train_step, args=(images, labels))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None)

  @tf.function
  def eval_step(images, labels):
    sums = strategy.run(replica_eval_step, args=(images, labels))
    return [strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for value in sums]

  def evaluate():
    totals = np.zeros(3)
    for images, labels in strategy.experimental_distribute_dataset(eval_dataset):
      totals += [value.numpy() for value in eval_step(images, labels)]
    loss_sum, correct, count = totals
    return loss_sum / count, correct / count

  def sparse_flops():
    return flops.count(specs, flops.mask_sparsities(optimizer.masks)).flops

  def add_training_flops(sample, calls):
    """Counts `calls` training calls since `sample` (sparse FLOPs, step) was taken.

    Calls that took no optimizer step changed masks instead (RigL, SNIP); the sparse
    FLOPs over the stretch are the mean of those at its two ends.
    """
    now = (sparse_flops(), int(optimizer.iterations.numpy()))
    steps = now[1] - sample[1]
    mean_sparse_flops = (sample[0] + now[0]) / 2
    cost = functools.partial(flops.step_flops_per_example, config.training_method,
                             dense_flops, mean_sparse_flops)
    batch = config.global_batch_size
    counters.training_flops.assign_add(
        batch * (steps * cost() + (calls - steps) * cost(is_mask_update=True)))
    counters.dense_step_flops.assign_add(
        batch * calls * flops.step_flops_per_example("baseline", dense_flops, dense_flops))
    return now

  start_epoch = int(counters.epoch.numpy())
  test_loss = test_accuracy = float("nan")
  for epoch in range(start_epoch, config.num_epochs):
    epoch_start = time.time()
    sample = (sparse_flops(), int(optimizer.iterations.numpy()))
    calls, calls_since_sample, loss_sum, examples = 0, 0, 0.0, 0
    for images, labels in strategy.experimental_distribute_dataset(train_dataset_fn(epoch)):
      loss_sum += float(train_step(images, labels).numpy())
      calls += 1
      calls_since_sample += 1
      examples += config.global_batch_size
      if recorder.frequency:
        recorder.maybe_record(int(optimizer.iterations.numpy()), optimizer)
      if calls == 1 or calls % FLOPS_SAMPLE_CALLS == 0:
        sample = add_training_flops(sample, calls_since_sample)
        calls_since_sample = 0
    sample = add_training_flops(sample, calls_since_sample)
    test_loss, test_accuracy = evaluate()
    counters.epoch.assign(epoch + 1)
    counters.wall_time_s.assign_add(time.time() - epoch_start)
    step = int(optimizer.iterations.numpy())
    global_sparsity, per_layer = sparsity_report(model, optimizer)
    train_loss = loss_sum / max(examples, 1)
    if writers:
      _write_summaries(writers, optimizer, step, train_loss, test_loss, test_accuracy,
                       global_sparsity, per_layer, sample[0],
                       float(counters.training_flops.numpy()))
    if manager:
      manager.save(checkpoint_number=epoch + 1)
      recorder.save()
    config.log(f"epoch {epoch + 1}/{config.num_epochs}  step {step}  "
               f"train_loss {train_loss:.4f}  test_loss {test_loss:.4f}  "
               f"test_accuracy {test_accuracy:.4f}  sparsity {global_sparsity:.4f}  "
               f"train_flops {float(counters.training_flops.numpy()):.3e}  "
               f"({time.time() - epoch_start:.1f} s)")

  if start_epoch >= config.num_epochs:
    test_loss, test_accuracy = evaluate()
  global_sparsity, per_layer = sparsity_report(model, optimizer)
  dense_step_flops = float(counters.dense_step_flops.numpy())
  results = {
      "test_accuracy": float(test_accuracy),
      "test_loss": float(test_loss),
      "global_sparsity": global_sparsity,
      "per_layer_sparsity": per_layer,
      "inference_flops": sparse_flops(),
      "inference_flops_ratio": sparse_flops() / dense_flops,
      "training_flops": float(counters.training_flops.numpy()),
      # Relative to dense training on the same number of batches.
      "training_flops_ratio": (float(counters.training_flops.numpy()) / dense_step_flops
                               if dense_step_flops else float("nan")),
      "num_epochs": int(counters.epoch.numpy()),
      "steps": int(optimizer.iterations.numpy()),
      "wall_time_s": float(counters.wall_time_s.numpy()),
  }
  if extra_results:
    results.update(extra_results())
  if save_path:
    _write_json_atomically(save_path / RESULTS_FILE, results)
  return results


def sparsity_report(model: tf_keras.Model,
                    optimizer: SparseOptimizer) -> tuple[float, dict[str, float]]:
  """Global sparsity over all conv/dense kernels, and each masked layer's."""
  per_layer = {name: float(np.mean(mask.numpy() == 0))
               for name, mask in optimizer.masks.items()}
  zeros = total = 0
  for kernel in model_kernels(model):
    values = kernel.numpy()
    zeros += int(np.sum(values == 0))
    total += values.size
  return zeros / total, per_layer


def _learning_rate(optimizer: SparseOptimizer) -> float:
  rate = optimizer.learning_rate
  if isinstance(rate, tf_keras.optimizers.schedules.LearningRateSchedule):
    rate = rate(optimizer.iterations)
  return float(tf.convert_to_tensor(rate).numpy())


def _write_summaries(writers, optimizer, step, train_loss, test_loss, test_accuracy,
                     global_sparsity, per_layer, inference_flops, training_flops):
  with writers["train"].as_default(step=step):
    tf.summary.scalar("loss", train_loss)
    tf.summary.scalar("learning_rate", _learning_rate(optimizer))
    tf.summary.scalar("global_sparsity", global_sparsity)
    tf.summary.scalar("training_flops", training_flops)
    tf.summary.scalar("inference_flops", inference_flops)
    if isinstance(optimizer, DynamicSparseOptimizer):
      tf.summary.scalar("drop_fraction",
                        float(optimizer.schedule.drop_fraction_at(step).numpy()))
    for name, value in per_layer.items():
      tf.summary.scalar(f"sparsity/{name}", value)
    for name, mask in optimizer.masks.items():
      tf.summary.image(f"mask/{name}", _mask_image(mask.numpy()))
  with writers["eval"].as_default(step=step):
    tf.summary.scalar("loss", test_loss)
    tf.summary.scalar("accuracy", test_accuracy)
  for writer in writers.values():
    writer.flush()
