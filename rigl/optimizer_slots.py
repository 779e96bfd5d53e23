"""Finds the optimizer slots (momentum, Adam m and v, ...) that belong to a variable.

tf_keras has two optimizer families. Legacy (`OptimizerV2`) optimizers expose
`get_slot_names`/`get_slot`. Current optimizers keep each kind of slot in a list
aligned with their `_index_dict` (variable key -> position), e.g. SGD's `momentums` or
Adam's `_momentums` and `_velocities`: a slot is the entry at the variable's position
of every such list whose entries have the variable's shape (factored slots such as
Adafactor's are not elementwise and are left alone).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

# Per-variable lists that are not optimizer state of the gradient step.
_NOT_SLOTS = frozenset({"_variables", "_model_variables_moving_average"})


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
