"""Starting a run from another run's masks or weights (`--load_mask_dir`,
`--initial_value_checkpoint`), from TF1 checkpoints of the original or TF2 ones of ours.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from rigl import run_directory
from rigl import tf1_checkpoints
from rigl.sparse_optimizer import SparseOptimizer


def load_masks(path: str, model: tf_keras.Model, optimizer: SparseOptimizer) -> None:
  """Replaces the optimizer's masks by a checkpoint's and re-masks the kernels."""
  prefix = run_directory.resolve_checkpoint(path, "load_mask_dir")
  if tf1_checkpoints.is_tf1_checkpoint(prefix):
    tf1_checkpoints.restore_tf1_checkpoint(prefix, model, optimizer,
                                       include=tf1_checkpoints.INCLUDE_MASKS)
    return
  reader = tf.train.load_checkpoint(prefix)
  found = run_directory.mask_keys(reader)
  masks = optimizer.masks
  missing = sorted(set(masks) - set(found))
  if missing:
    raise ValueError(f"--load_mask_dir={path}: {prefix} has no mask for {missing}.")
  values = {name: reader.get_tensor(found[name]) for name in masks}
  wrong = sorted(name for name, value in values.items()
                 if tuple(value.shape) != tuple(masks[name].shape))
  if wrong:
    raise ValueError(f"--load_mask_dir={path}: mask shapes differ for {wrong}.")
  for name, value in values.items():
    masks[name].assign(value)
  optimizer.apply_masks()


def load_initial_values(path: str, model: tf_keras.Model,
                        optimizer: SparseOptimizer) -> None:
  """Loads a checkpoint's weights (not its optimizer state), keeping masked weights 0.

  TF1 checkpoints load gamma, beta, weights and biases, as the original did; our own
  checkpoints load every model variable.
  """
  prefix = run_directory.resolve_checkpoint(path, "initial_value_checkpoint")
  if tf1_checkpoints.is_tf1_checkpoint(prefix):
    tf1_checkpoints.restore_tf1_checkpoint(prefix, model, optimizer,
                                       include=tf1_checkpoints.INCLUDE_INITIAL_VALUES)
    return
  status = tf.train.Checkpoint(model=model).restore(prefix)
  status.expect_partial().assert_existing_objects_matched()
  optimizer.apply_masks()


def start_new_run(save_path: str, model: tf_keras.Model, optimizer: SparseOptimizer, *,
                  load_mask_dir: str = "", initial_value_checkpoint: str = "",
                  uses_mask_dir: bool = True) -> None:
  """Applies --load_mask_dir and --initial_value_checkpoint to a run not yet started.

  As the original, both only act while the run directory holds no checkpoint (a
  resumed run continues from its own); `uses_mask_dir` False ignores --load_mask_dir
  (methods that choose their own masks).
  """
  if run_directory.latest_checkpoint(save_path):
    return
  if load_mask_dir and uses_mask_dir:
    load_masks(load_mask_dir, model, optimizer)
  if initial_value_checkpoint:
    load_initial_values(initial_value_checkpoint, model, optimizer)
