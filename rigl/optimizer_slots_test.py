"""Finding a variable's optimizer slots in current and legacy tf_keras optimizers."""

import numpy as np
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


@pytest.mark.parametrize("optimizer_class", optimizer_slots.ZERO_PRESERVING_OPTIMIZERS,
                         ids=lambda cls: f"{cls.__module__.split('.')[-2]}.{cls.__name__}")
def test_listed_optimizers_keep_zero_weights_with_zero_gradients_and_slots(
    optimizer_class):
  kwargs = {"learning_rate": 0.1}
  arguments = optimizer_class.__init__.__code__.co_varnames
  for name, value in (("weight_decay", 0.1), ("momentum", 0.9), ("amsgrad", True)):
    if name in arguments:
      kwargs[name] = value
  optimizer = optimizer_class(**kwargs)
  rng = np.random.default_rng(0)
  variable = tf.Variable(rng.standard_normal((6, 7)).astype(np.float32))
  for _ in range(3):  # Dense steps first, so that every slot entry is non-zero.
    optimizer.apply_gradients([(tf.constant(rng.standard_normal((6, 7)), tf.float32),
                                variable)])
  mask = (rng.random((6, 7)) < 0.5).astype(np.float32)
  slots = optimizer_slots.slots_of(optimizer, variable)
  assert slots
  for state in [variable] + slots:
    state.assign(state * mask)
  for _ in range(3):
    gradient = rng.standard_normal((6, 7)).astype(np.float32) * mask
    optimizer.apply_gradients([(tf.constant(gradient), variable)])
  assert np.all(variable.numpy()[mask == 0] == 0)
  assert np.any(variable.numpy()[mask == 1] != 0)
  assert optimizer_slots.preserves_zeros(optimizer)


class _SGDSubclass(tf_keras.optimizers.SGD):
  """Subclasses may change the update, so none is trusted, even an unchanged one."""


@pytest.mark.parametrize("make", [
    lambda: tf_keras.optimizers.Ftrl(0.1),
    lambda: tf_keras.optimizers.Adafactor(0.1),
    lambda: tf_keras.optimizers.SGD(0.1, momentum=0.9, use_ema=True),
    lambda: _SGDSubclass(0.1),
])
def test_other_optimizers_are_not_trusted_to_keep_zeros(make):
  assert not optimizer_slots.preserves_zeros(make())
