"""Finds the optimizer slots (momentum, Adam m and v, ...) that belong to a variable.

tf_keras has two optimizer families. Legacy (`OptimizerV2`) optimizers expose
`get_slot_names`/`get_slot`. Current optimizers keep each kind of state in a list
aligned with their variable index (SGD's momentums, Adam's first and second moments;
read through `keras_compat.per_variable_state`): a slot is a variable's entry of such a
list that has the variable's shape (factored state such as Adafactor's is not
elementwise and is left alone).

It also knows which optimizers leave a weight at exactly zero when its gradient and
its elementwise slots are zero, so that the sparse optimizer can skip re-masking the
kernels after every step (see `preserves_zeros`).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from rigl import keras_compat

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
  return [state for state in keras_compat.per_variable_state(optimizer, variable)
          if state.shape == variable.shape]
