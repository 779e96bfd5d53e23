"""Finding a variable's optimizer slots in current and legacy tf_keras optimizers."""

import pytest
import tensorflow as tf
import tf_keras

from rigl import optimizer_slots


def _variables():
  # "xa/kernel" must not be mistaken for a slot owner of "a/kernel".
  return [tf.Variable(tf.ones([2, 3]), name="a/kernel"),
          tf.Variable(tf.ones([2, 3]), name="xa/kernel"),
          tf.Variable(tf.ones([3]), name="a/bias")]


@pytest.mark.parametrize("make,expected", [
    (lambda: tf_keras.optimizers.SGD(0.1, momentum=0.9), 1),
    (lambda: tf_keras.optimizers.Adam(0.1), 2),
    (lambda: tf_keras.optimizers.legacy.SGD(0.1, momentum=0.9), 1),
    (lambda: tf_keras.optimizers.legacy.Adam(0.1), 2),
    (lambda: tf_keras.optimizers.RMSprop(0.1, momentum=0.9), 2),
    (lambda: tf_keras.optimizers.Adagrad(0.1), 1),
])
def test_slots_of_each_variable(make, expected):
  optimizer = make()
  variables = _variables()
  optimizer.apply_gradients(zip([tf.ones_like(v) for v in variables], variables))
  for variable in variables:
    slots = optimizer_slots.slots_of(optimizer, variable)
    assert len(slots) == expected
    assert all(slot.shape == variable.shape for slot in slots)
  first = {id(s) for s in optimizer_slots.slots_of(optimizer, variables[0])}
  second = {id(s) for s in optimizer_slots.slots_of(optimizer, variables[1])}
  assert not first & second
