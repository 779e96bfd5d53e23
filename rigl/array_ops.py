"""The array functions that method code shared by both Keras implementations uses.

Scores, schedules and grow initialisations are written once, against a namespace `ops`
with `keras.ops` names: the tf_keras core passes `TENSORFLOW` (those names on plain
TensorFlow, whatever Keras backend is configured), the Keras 3 implementation passes
`keras.ops` itself. Random numbers come from a `Random` object, so that each
implementation keeps its own replica-consistent stateless draws.
"""

from __future__ import annotations

import types
from typing import Any, Callable, Protocol

import numpy as np
import tensorflow as tf

from rigl import stateless_random

TENSORFLOW = types.SimpleNamespace(
    abs=tf.abs, add=tf.add, argsort=tf.argsort, cast=tf.cast, cos=tf.cos,
    divide=tf.math.divide, equal=tf.equal, greater_equal=tf.greater_equal,
    less_equal=tf.less_equal, less=tf.less, logical_and=tf.logical_and,
    logical_not=tf.logical_not, logical_or=tf.logical_or, maximum=tf.maximum,
    mean=tf.reduce_mean, minimum=tf.minimum, mod=tf.math.floormod, multiply=tf.multiply,
    power=tf.pow, repeat=tf.repeat, reshape=tf.reshape, round=tf.round, shape=tf.shape,
    sign=tf.sign, sqrt=tf.sqrt, square=tf.square, sum=tf.reduce_sum, take=tf.gather,
    where=tf.where, zeros_like=tf.zeros_like, ones_like=tf.ones_like,
    convert_to_tensor=tf.convert_to_tensor,
)

# The names schedules use, on NumPy: for deciding on the host whether a step updates
# masks (`rigl.sparse_optimizer.HostUpdatePlan`).
NUMPY = types.SimpleNamespace(
    cast=lambda value, dtype: np.asarray(value).astype(dtype), convert_to_tensor=np.asarray,
    equal=np.equal, greater_equal=np.greater_equal, less_equal=np.less_equal,
    logical_and=np.logical_and, logical_not=np.logical_not, logical_or=np.logical_or,
    mod=np.mod,
)


class Random(Protocol):
  """Stateless random draws of one layer at one step, told apart by a tag."""

  def uniform(self, tag: str, shape: Any, dtype: Any, minval: float = 0.0,
              maxval: float = 1.0) -> Any: ...

  def normal(self, tag: str, shape: Any, dtype: Any, stddev: Any = 1.0) -> Any: ...


class TensorFlowRandom:
  """`Random` on TensorFlow's stateless ops, seeded by (layer, tag, offset, step)."""

  def __init__(self, layer_name: str, offset: int, step: tf.Tensor):
    self._seed: Callable[[str], tf.Tensor] = (
        lambda tag: stateless_random.seed(layer_name, tag, offset, step))

  def uniform(self, tag, shape, dtype, minval=0.0, maxval=1.0):
    return tf.random.stateless_uniform(shape, self._seed(tag), dtype=dtype,
                                       minval=minval, maxval=maxval)

  def normal(self, tag, shape, dtype, stddev=1.0):
    return tf.random.stateless_normal(shape, self._seed(tag), stddev=stddev, dtype=dtype)
