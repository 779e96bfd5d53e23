"""`SparsitySummaries`: TensorBoard summaries of a sparse model trained with `model.fit`.

Every `update_freq` batches (or at the end of every epoch) the callback writes, at the
sparse optimizer's step:

| tag                               | value                                              |
| global_sparsity                   | share of zero weights in all sparsified, Conv2D  |
|                                   | and Dense kernels (masked weights are zeros)       |
| sparsity/<layer>, density/<layer> | share of the layer's mask that is 0, and 1         |
| drop_fraction                     | the schedule's drop fraction (dynamic methods)     |
| grown[/<layer>]                   | connections activated since the previous write     |
| dropped[/<layer>]                 | connections deactivated since the previous write   |
| mask_churn[/<layer>]              | share of the active connections that were not      |
|                                   | active in the initial mask (0: none rewired)       |
| inference_flops                   | FLOPs of one sparse forward pass (`rigl.flops`)    |
| training_flops_per_example        | training FLOPs per example since training began    |
| training_flops                    | the same times `batch_size`, when it is given      |

A connection dropped and regrown in the same update leaves the mask unchanged and is
counted in neither `grown` nor `dropped`. Training FLOPs follow `rigl.flops`: batches on
which the optimizer changed masks instead of stepping (RigL, SNIP) cost a dense weight
gradient. They are counted from the batches this callback saw, so they restart from 0
in a new process (every other value is derived from the optimizer's checkpointed state).

One class serves both Kerases: `model.fit` of a tf_keras model, and of a Keras 3 model
(`import keras`) on the TensorFlow, JAX or PyTorch backend, calls the same hooks. With
Keras 3 the batches are counted by the callback (Keras 3 keeps no batch counter), and
on JAX the training state is written back to the variables before they are read.
"""

from __future__ import annotations

import dataclasses

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from rigl import flops
from rigl import keras_compat
from rigl import keras3
from rigl import kernel_selection
from rigl import methods
from rigl import summaries
from rigl.sparse_optimizer import SparseOptimizer

EPOCH = "epoch"
# Batches between two samples of the sparse FLOPs (each reads every mask).
FLOPS_SAMPLE_BATCHES = 100

Masks = dict[str, np.ndarray]
AnySparseOptimizer = SparseOptimizer | keras3.SparseOptimizer


def read_masks(optimizer: AnySparseOptimizer) -> Masks:
  """The optimizer's masks as boolean arrays (True: active), keyed by layer name."""
  return {name: keras_compat.to_numpy(mask) > 0 for name, mask in optimizer.masks.items()}


def mask_changes(before: Masks, after: Masks) -> tuple[dict[str, int], dict[str, int]]:
  """Per layer, the connections (grown, dropped) from the masks `before` to `after`."""
  grown = {name: int(np.sum(after[name] & ~before[name])) for name in after}
  dropped = {name: int(np.sum(before[name] & ~after[name])) for name in after}
  return grown, dropped


def mask_churn(initial: Masks, current: Masks) -> tuple[float, dict[str, float]]:
  """The share of active connections not active initially: overall and per layer."""
  new = {name: int(np.sum(current[name] & ~initial[name])) for name in current}
  active = {name: int(np.sum(current[name])) for name in current}
  per_layer = {name: new[name] / max(active[name], 1) for name in current}
  return sum(new.values()) / max(sum(active.values()), 1), per_layer


@dataclasses.dataclass(frozen=True)
class _Sample:
  """Where training stood when the sparse FLOPs were last read."""
  batches: int
  step: int
  sparse_flops: float


class SparsitySummaries(tf_keras.callbacks.Callback):
  """Writes the masks' sparsity, churn and FLOPs of a sparse run to TensorBoard.

  The model must be compiled with a sparse optimizer of its Keras (`rigl.sparsify`;
  see the module docstring for the tags). It may come before or after
  `BackupAndRestore` in the callback list: it first reads the optimizer once every
  callback's `on_train_begin` has run.

  Args:
    log_dir: directory of the event files.
    update_freq: `"epoch"`, or write every this many batches (and at the end).
    batch_size: examples per batch; when given, total `training_flops` are written too.
    mask_images: also write every mask as an image.
  """

  def __init__(self, log_dir: str, update_freq: int | str = EPOCH,
               batch_size: int | None = None, mask_images: bool = False):
    super().__init__()
    if update_freq != EPOCH and (not isinstance(update_freq, int) or update_freq <= 0):
      raise ValueError(f"`update_freq` must be 'epoch' or a positive number of batches; "
                       f"got {update_freq!r}.")
    self.log_dir = str(log_dir)
    self.update_freq = update_freq
    self.batch_size = batch_size
    self.mask_images = mask_images
    self.training_flops_per_example = 0.0
    self._writer = None
    self._started = False
    self._keras3 = False
    self._batches_run = self._epoch_start = 0

  # ----- Keras hooks ------------------------------------------------------------------

  def on_train_begin(self, logs=None):
    self._keras3 = methods.is_keras3_model(self.model)
    self._batches_run = 0
    optimizer = self._optimizer()
    if not isinstance(optimizer, summaries.SPARSE_OPTIMIZERS):
      raise TypeError("SparsitySummaries needs a model compiled with a rigl sparse "
                      f"optimizer; got {type(optimizer).__name__}.")
    self._writer = tf.summary.create_file_writer(self.log_dir)
    self._initial = {name: mask > 0 for name, mask in optimizer.initial_masks().items()}
    self._flops = self._flops_meter(optimizer)
    self._started = False

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_start = self._batches_run
    if not self._started:  # Every on_train_begin has run: restored state is in place.
      self._started = True
      self._previous = read_masks(self._optimizer())
      self._last_write = self._batches()
      self._sample = self._flops_sample(self._previous)

  def on_train_batch_end(self, batch, logs=None):
    # `batch` is the last batch of the call (several with `steps_per_execution`).
    self._batches_run = self._epoch_start + batch + 1
    batches = self._batches()
    if self.update_freq != EPOCH and batches - self._last_write >= self.update_freq:
      self._write()
    elif batches - self._sample.batches >= FLOPS_SAMPLE_BATCHES:
      self._add_training_flops(read_masks(self._optimizer()))

  def on_epoch_end(self, epoch, logs=None):
    if self.update_freq == EPOCH:
      self._write()

  def on_train_end(self, logs=None):
    if self._started and self._batches() > self._last_write:
      self._write()
    self._writer.close()

  # ----- summaries --------------------------------------------------------------------

  def _optimizer(self) -> AnySparseOptimizer:
    """The model's optimizer, its variables up to date (see the module docstring)."""
    if self._keras3:
      return keras_compat.keras3_synced_model(self.model).optimizer
    return self.model.optimizer

  def _batches(self) -> int:
    """Training batches of this `fit`.

    tf_keras counts them (and BackupAndRestore restores the count with the model);
    Keras 3 keeps no count, so the callback counts them itself.
    """
    if self._keras3:
      return self._batches_run
    return int(keras_compat.train_counter(self.model).numpy())

  def _write(self) -> None:
    optimizer = self._optimizer()
    masks = read_masks(optimizer)
    self._add_training_flops(masks)
    step = self._sample.step
    per_layer = flops.mask_sparsities(masks)
    summaries.write_sparsity(
        self._writer, step, optimizer,
        kernel_selection.global_sparsity(self.model, optimizer.kernels, optimizer.masks),
        per_layer,
        mask_images=self.mask_images)
    grown, dropped = mask_changes(self._previous, masks)
    churn, churn_per_layer = mask_churn(self._initial, masks)
    scalars = {"grown": sum(grown.values()), "dropped": sum(dropped.values()),
               "mask_churn": churn}
    for name in masks:
      scalars.update({f"density/{name}": 1.0 - per_layer[name], f"grown/{name}": grown[name],
                      f"dropped/{name}": dropped[name],
                      f"mask_churn/{name}": churn_per_layer[name]})
    if self._flops is not None:
      scalars.update(inference_flops=self._sample.sparse_flops,
                     training_flops_per_example=self.training_flops_per_example)
      if self.batch_size:
        scalars["training_flops"] = self.batch_size * self.training_flops_per_example
    summaries.write_scalars(self._writer, step, scalars)
    self._previous = masks
    self._last_write = self._sample.batches

  # ----- FLOPs ------------------------------------------------------------------------

  def _flops_meter(self, optimizer: AnySparseOptimizer) -> flops.TrainingFlopsMeter | None:
    try:
      specs = flops.layer_specs(self.model)
    except (AttributeError, RuntimeError) as error:
      # Convolutions of subclassed models have no recorded output size.
      logging.warning("SparsitySummaries writes no FLOPs for this model: %s", error)
      return None
    return flops.TrainingFlopsMeter(tuple(specs), type(optimizer).flops_rule)

  def _flops_sample(self, masks: Masks) -> _Sample:
    sparse_flops = self._flops.sparse_flops(masks) if self._flops else 0.0
    return _Sample(self._batches(),
                   int(keras_compat.to_numpy(self._optimizer().iterations)), sparse_flops)

  def _add_training_flops(self, masks: Masks) -> None:
    """Counts the batches since the last sample, at the mean of its two sparse FLOPs.

    Batches that took no optimizer step changed the masks instead.
    """
    now = self._flops_sample(masks)
    if self._flops is not None:
      self.training_flops_per_example += self._flops.stretch(
          now.batches - self._sample.batches, now.step - self._sample.step,
          self._sample.sparse_flops, now.sparse_flops)
    self._sample = now

