"""Finds the optimizer slots (momentum, Adam m and v, ...) that belong to a variable.

tf_keras has two optimizer families. Legacy (`OptimizerV2`) optimizers expose
`get_slot_names`/`get_slot`. Current optimizers create each slot with
`add_variable_from_reference(variable, prefix)`, which names it
`<prefix>/<variable name>`: a slot is found by that name.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras


def _name(variable: tf.Variable) -> str:
  return variable.name.split(":")[0]


def slots_of(optimizer: tf_keras.optimizers.Optimizer,
             variable: tf.Variable) -> list[tf.Variable]:
  """Every slot variable of `optimizer` that has `variable`'s shape and follows it."""
  if hasattr(optimizer, "get_slot_names"):
    slots = [optimizer.get_slot(variable, name) for name in optimizer.get_slot_names()]
    return [slot for slot in slots if slot is not None]
  target = _name(variable)
  slots = []
  for candidate in optimizer.variables:
    prefix, _, rest = _name(candidate).partition("/")
    if prefix and rest == target and candidate.shape == variable.shape:
      slots.append(candidate)
  return slots
