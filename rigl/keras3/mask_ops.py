"""Mask selection and stateless random numbers in `keras.ops`, for every backend.

`keep_top` chooses the `count` largest scores of a kernel without sorting: it searches
the threshold over the scores' order-preserving integer keys by counting passes, which
keeps shapes static (a jit-compiled step on JAX and TensorFlow needs a `count` that is
only known at run time) and costs O(n) memory. Ties go to the lower row-major index,
as in the tf_keras core (`rigl.mask_ops.keep_top`).

`HashRandom` draws numbers from a counter-based hash of (seed, layer, tag, step,
element index): the same numbers on every replica and every backend, with no random
state to carry through a stateless step.
"""

from __future__ import annotations

import math

from keras import ops

from rigl import stateless_random

_INT32_MAX = 2**31 - 1
# The murmur3 32-bit finalizer's multipliers, as two's-complement int32 values.
_MIX_1 = 0x85EBCA6B - 2**32
_MIX_2 = 0xC2B2AE35 - 2**32
# Spreads consecutive element indices over the hash input (2**32 / golden ratio).
_GOLDEN = 0x9E3779B9 - 2**32
_UNIFORM_BITS = 24
_FLOAT32_LOWEST = -3.4028234663852886e38
# The largest float32 below 2**31 (2**31 - 1 itself rounds up to 2**31).
_LARGEST_INT32_FLOAT = 2.0**31 - 128


def _shift_right(value, bits: int):
  """Logical right shift of int32 values (arithmetic shift, sign bits cleared)."""
  return ops.bitwise_and(ops.right_shift(value, bits), (1 << (32 - bits)) - 1)


def _mix(value):
  """murmur3's avalanche finalizer on int32 values (multiplications wrap around)."""
  value = ops.bitwise_xor(value, _shift_right(value, 16))
  value = ops.multiply(value, ops.cast(_MIX_1, "int32"))
  value = ops.bitwise_xor(value, _shift_right(value, 13))
  value = ops.multiply(value, ops.cast(_MIX_2, "int32"))
  return ops.bitwise_xor(value, _shift_right(value, 16))


class HashRandom:
  """`rigl.array_ops.Random` for one layer at one step, on any Keras 3 backend."""

  def __init__(self, layer_name: str, offset: int, step):
    self._layer_name = layer_name
    self._offset = int(offset)
    self._step = ops.cast(step, "int32")

  def _bits(self, tag: str, shape):
    size = math.prod(int(d) for d in shape)
    stream = stateless_random.stable_hash(self._layer_name + tag)
    stream = (stream + self._offset) % 2**31
    key = _mix(ops.bitwise_xor(_mix(self._step), ops.cast(stream, "int32")))
    index = ops.multiply(ops.arange(size, dtype="int32"), ops.cast(_GOLDEN, "int32"))
    return ops.reshape(_mix(ops.add(index, key)), shape)

  def _unit(self, tag: str, shape):
    """Uniform float32 numbers in [0, 1) with 24 random bits."""
    bits = _shift_right(self._bits(tag, shape), 32 - _UNIFORM_BITS)
    return ops.cast(bits, "float32") * (2.0**-_UNIFORM_BITS)

  def uniform(self, tag, shape, dtype, minval=0.0, maxval=1.0):
    return ops.cast(self._unit(tag, shape) * (maxval - minval) + minval, dtype)

  def normal(self, tag, shape, dtype, stddev=1.0):
    """Box-Muller on two uniform streams."""
    radius = ops.sqrt(-2.0 * ops.log(1.0 - self._unit(tag + "/r", shape)))
    angle = (2.0 * math.pi) * self._unit(tag + "/a", shape)
    return ops.cast(radius * ops.cos(angle) * stddev, dtype)


def _ordered_keys(flat):
  """int32 keys that order like the float values (-0.0 counts as 0.0)."""
  flat = ops.cast(flat, "float32")
  flat = ops.where(ops.equal(flat, 0.0), ops.zeros_like(flat), flat)
  bits = ops.view(flat, "int32")
  # Negative floats order backwards as integers; flipping their magnitude bits fixes it.
  return ops.where(bits < 0, ops.bitwise_xor(bits, _INT32_MAX), bits)


def _midpoint(low, high):
  """ceil((low + high) / 2) of int32 values, without overflow."""
  halves = ops.right_shift(low, 1) + ops.right_shift(high, 1)
  odd_bits = ops.bitwise_and(low, 1) + ops.bitwise_and(high, 1)
  return halves + ops.right_shift(odd_bits + 1, 1)


def _interpolated(low, high, count_low, count_above, count):
  """Where the line through the bracket's counts crosses `count` (in (low, high])."""
  fraction = (ops.cast(count_low - count, "float32") /
              ops.cast(ops.maximum(count_low - count_above, 1), "float32"))
  # The width is taken in float32: high - low overflows int32 on a wide bracket.
  width = ops.cast(high, "float32") - ops.cast(low, "float32")
  probe = ops.cast(low, "float32") + (width + 1.0) * fraction
  # Rounded into the int32 range before the cast (float32 has no exact 2**31 - 1).
  probe = ops.cast(ops.clip(probe, -2.0**31, _LARGEST_INT32_FLOAT), "int32")
  return ops.clip(probe, low + 1, high)


def _threshold_key(keys, count):
  """The largest key t with at least `count` keys at or above it.

  Each pass counts the keys at or above one probe. A probe goes where the straight line
  through the counts at the bracket's ends crosses `count` (interpolation); a probe
  that fails to halve the bracket is followed by a bisection probe, so no search takes
  more than 64 passes. On a sparse layer's scores (most of them at the lowest value)
  interpolation gains little: 20 to 40 passes on a 2.4M-weight kernel. It stops as
  soon as a probe has exactly `count` keys at or above it. No sort, O(n) memory,
  static shapes (as the tf_keras core's search).
  """
  size = keys.shape[0]

  def not_found(low, high, count_low, count_above, bisect):
    del count_low, count_above, bisect
    return low < high

  def narrow(low, high, count_low, count_above, bisect):
    # Invariant: count(keys >= low) = count_low >= count > count_above
    # = count(keys > high).
    probe = ops.where(bisect, _midpoint(low, high),
                      _interpolated(low, high, count_low, count_above, count))
    at_or_above = ops.sum(ops.cast(keys >= probe, "int32"))
    enough = at_or_above >= count
    exact = ops.equal(at_or_above, count)
    new_low = ops.where(enough, probe, low)
    new_high = ops.where(exact, probe, ops.where(enough, high, probe - 1))
    width = ops.cast(high, "float32") - ops.cast(low, "float32")
    new_width = ops.cast(new_high, "float32") - ops.cast(new_low, "float32")
    halved = new_width <= width / 2
    return (new_low, new_high, ops.where(enough, at_or_above, count_low),
            ops.where(enough, count_above, at_or_above),
            ops.logical_and(ops.logical_not(bisect), ops.logical_not(halved)))

  low = ops.min(keys)
  # Every key is at or above the lowest one: when all are wanted, it is the answer.
  high = ops.where(ops.equal(count, size), low, ops.max(keys))
  start = (low, high, ops.cast(size, "int32"), ops.cast(0, "int32"),
           ops.convert_to_tensor(False))
  return ops.while_loop(not_found, narrow, start)[0]


def keep_top(scores, count):
  """A 0/1 tensor shaped like `scores` with ones at its `count` largest entries."""
  flat = ops.reshape(scores, [-1])
  size = flat.shape[0]
  count = ops.clip(ops.cast(count, "int32"), 0, size)
  keys = _ordered_keys(flat)
  threshold = _threshold_key(keys, count)
  above = keys > threshold
  # Of the entries equal to the threshold, the first ones in index order fill the rest.
  at_threshold = ops.cast(ops.equal(keys, threshold), "int32")
  places_left = count - ops.sum(ops.cast(above, "int32"))
  tied_kept = ops.logical_and(at_threshold > 0, ops.cumsum(at_threshold) <= places_left)
  return ops.reshape(ops.cast(ops.logical_or(above, tied_kept), scores.dtype),
                     ops.shape(scores))


def kth_largest(scores, count):
  """The `count`-th largest entry of `scores` (1-based; clipped to [1, size])."""
  flat = ops.reshape(scores, [-1])
  count = ops.clip(ops.cast(count, "int32"), 1, flat.shape[0])
  keys = _ordered_keys(flat)
  threshold = _threshold_key(keys, count)
  return ops.min(ops.where(keys >= threshold, flat, ops.cast(math.inf, flat.dtype)))


def drop_and_grow(drop_scores, grow_scores, n_keep, n_grow):
  """0/1 masks of the kept and the grown connections of one mask update.

  Kept: the `n_keep` highest `drop_scores`; grown: the `n_grow` highest `grow_scores`
  among the others, so that the two never overlap (as `rigl.mask_ops.drop_and_grow`).
  """
  size = math.prod(drop_scores.shape)
  n_keep = ops.clip(ops.cast(n_keep, "int32"), 0, size)
  n_grow = ops.clip(ops.cast(n_grow, "int32"), 0, size - n_keep)
  kept = keep_top(drop_scores, n_keep)
  # Kept connections rank strictly below every other candidate for growth (-inf grow
  # scores count as the lowest finite one), so none of them is grown.
  grow_scores = ops.cast(grow_scores, "float32")
  grow_scores = ops.where(kept > 0, -math.inf, ops.maximum(grow_scores, _FLOAT32_LOWEST))
  return kept, ops.cast(keep_top(grow_scores, n_grow), drop_scores.dtype)
