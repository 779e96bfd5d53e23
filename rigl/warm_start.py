"""Starting a run from another run's masks or weights (`--load_mask_dir`,
`--initial_value_checkpoint`), from TF1 checkpoints of the original or TF2 ones of ours.
"""

from __future__ import annotations

import re

import tensorflow as tf
import tf_keras

from rigl import tf1_checkpoints
from rigl.sparse_optimizer import SparseOptimizer

# Our object-based checkpoints keep the mask of layer L under this path component.
_TF2_MASK_KEY = re.compile(r"(?:^|/)_masks/([^/]+)/\.ATTRIBUTES/VARIABLE_VALUE$")


def resolve_checkpoint(path: str, flag: str) -> str:
  """A checkpoint prefix: `path` itself, or the latest checkpoint in directory `path`."""
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if not latest:
      raise ValueError(f"--{flag}={path}: the directory holds no checkpoint.")
    return latest
  if not tf.io.gfile.glob(path + ".index") and not tf.io.gfile.glob(path + "*"):
    raise ValueError(f"--{flag}={path}: no such checkpoint or directory.")
  return path


def load_masks(path: str, model: tf_keras.Model, optimizer: SparseOptimizer) -> None:
  """Replaces the optimizer's masks by a checkpoint's and re-masks the kernels."""
  prefix = resolve_checkpoint(path, "load_mask_dir")
  if tf1_checkpoints.is_tf1_checkpoint(prefix):
    tf1_checkpoints.restore_tf1_checkpoint(prefix, model, optimizer,
                                       include=tf1_checkpoints.INCLUDE_MASKS)
    return
  reader = tf.train.load_checkpoint(prefix)
  found = {}
  for key in reader.get_variable_to_shape_map():
    match = _TF2_MASK_KEY.search(key)
    if match and "OPTIMIZER_SLOT" not in key:
      found[match.group(1)] = key
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
  prefix = resolve_checkpoint(path, "initial_value_checkpoint")
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
  if tf.train.latest_checkpoint(save_path):
    return
  if load_mask_dir and uses_mask_dir:
    load_masks(load_mask_dir, model, optimizer)
  if initial_value_checkpoint:
    load_initial_values(initial_value_checkpoint, model, optimizer)
