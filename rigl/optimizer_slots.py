"""Finds the optimizer slots (momentum, Adam m and v, ...) that belong to a variable.

tf_keras has two optimizer families. Legacy (`OptimizerV2`) optimizers expose
`get_slot_names`/`get_slot`. Current optimizers keep each kind of slot in a list
aligned with their `_index_dict` (variable key -> position), e.g. SGD's `momentums` or
Adam's `_momentums` and `_velocities`: a slot is the entry at the variable's position
of every such list whose entries have the variable's shape (factored slots such as
Adafactor's are not elementwise and are left alone).

It also knows which optimizers leave a weight at exactly zero when its gradient and
its elementwise slots are zero, so that the sparse optimizer can skip re-masking the
kernels after every step (see `preserves_zeros`).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

# Per-variable lists that are not optimizer state of the gradient step.
_NOT_SLOTS = frozenset({"_variables", "_model_variables_moving_average"})

# Optimizers whose step moves a weight only through its gradient and its elementwise
# slots (momentum, Adam's m, ...) or by a multiple of the weight itself (decoupled
# weight decay): a zero weight with a zero gradient and zero slots stays exactly zero.
# Exact classes only, since a subclass may change the update. Adafactor (factored
# second moments) and Ftrl (l1/l2 shrinkage from accumulators) are not listed.
ZERO_PRESERVING_OPTIMIZERS = (
    tf_keras.optimizers.SGD, tf_keras.optimizers.Adam, tf_keras.optimizers.AdamW,
    tf_keras.optimizers.Adamax, tf_keras.optimizers.Nadam, tf_keras.optimizers.RMSprop,
    tf_keras.optimizers.Adagrad, tf_keras.optimizers.Adadelta, tf_keras.optimizers.Lion,
    tf_keras.optimizers.legacy.SGD, tf_keras.optimizers.legacy.Adam,
    tf_keras.optimizers.legacy.Adamax, tf_keras.optimizers.legacy.Nadam,
    tf_keras.optimizers.legacy.RMSprop, tf_keras.optimizers.legacy.Adagrad,
    tf_keras.optimizers.legacy.Adadelta)


def preserves_zeros(optimizer: tf_keras.optimizers.Optimizer) -> bool:
  """Whether `optimizer` keeps zero weights with zero gradients and slots at zero.

  True for the exact classes of `ZERO_PRESERVING_OPTIMIZERS` without a weight moving
  average (`use_ema` overwrites the weights with averages that masks never touched).
  """
  return (type(optimizer) in ZERO_PRESERVING_OPTIMIZERS
          and not getattr(optimizer, "use_ema", False))


def slots_of(optimizer: tf_keras.optimizers.Optimizer,
             variable: tf.Variable) -> list[tf.Variable]:
  """Every elementwise slot variable of a built `optimizer` for `variable`."""
  if hasattr(optimizer, "get_slot_names"):
    slots = [optimizer.get_slot(variable, name) for name in optimizer.get_slot_names()]
    return [slot for slot in slots if slot is not None]
  index_dict = getattr(optimizer, "_index_dict", {})
  index = index_dict.get(optimizer._var_key(variable))  # pylint: disable=protected-access
  if index is None:
    return []
  slots = []
  for name, value in sorted(vars(optimizer).items()):
    if name in _NOT_SLOTS or not isinstance(value, list) or len(value) != len(index_dict):
      continue
    if all(isinstance(entry, tf.Variable) for entry in value):
      slot = value[index]
      if slot.shape == variable.shape:
        slots.append(slot)
  return slots
