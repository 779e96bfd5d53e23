"""Small tensor and variable helpers shared by the sparse optimizers."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from rigl import sparsity as sparsity_lib


def state_variable(initial_value, name: str, dtype=None) -> tf.Variable:
  """A non-trainable bookkeeping variable that every replica updates identically."""
  return tf.Variable(initial_value, name=name, dtype=dtype, trainable=False,
                     synchronization=tf.VariableSynchronization.ON_WRITE,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def assign(variable: tf.Variable, value: tf.Tensor) -> None:
  """Assigns `value`, cast to the variable's dtype."""
  variable.assign(tf.cast(value, variable.dtype))


def install_mask(mask: tf.Variable, kernel: tf.Variable, new_mask: tf.Tensor,
                 weights: tf.Tensor | None = None,
                 slots: Sequence[tf.Variable] = ()) -> None:
  """Sets `mask` to `new_mask`, the kernel to `weights` (default: itself) masked.

  The kernel's optimizer `slots` are masked too, so that removed connections keep no
  momentum that could revive them.
  """
  weights = tf.convert_to_tensor(kernel) if weights is None else weights
  assign(kernel, weights * new_mask)
  for slot in slots:
    assign(slot, slot * tf.cast(new_mask, slot.dtype))
  assign(mask, new_mask)


def _ordered_keys(flat: tf.Tensor) -> tf.Tensor:
  """Integer keys that order like the float values (-0.0 counts as 0.0).

  float64 maps to int64 keys; every other float type to int32 (through float32,
  which represents float16 and bfloat16 exactly).
  """
  if flat.dtype != tf.float64:
    flat = tf.cast(flat, tf.float32)
  key_dtype = tf.int64 if flat.dtype == tf.float64 else tf.int32
  flat = tf.where(tf.equal(flat, 0.0), tf.zeros_like(flat), flat)
  bits = tf.bitcast(flat, key_dtype)
  # Negative floats order backwards as integers; flipping their magnitude bits fixes it.
  magnitude_bits = tf.constant(key_dtype.max, key_dtype)
  return tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, magnitude_bits), bits)


def _threshold_key(keys: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  """A key t with count(keys > t) < count <= count(keys >= t), by bisection.

  Counting passes instead of a sort: at most one per key bit, fewer when some t has
  exactly `count` keys at or above it; O(n) memory and static shapes.
  """
  count = tf.cast(count, tf.int32)

  def halve(low, high):
    # floor((low + high + 1) / 2) without overflow.
    halves = tf.bitwise.right_shift(low, 1) + tf.bitwise.right_shift(high, 1)
    odd_bits = tf.bitwise.bitwise_and(low, 1) + tf.bitwise.bitwise_and(high, 1)
    middle = halves + tf.bitwise.right_shift(odd_bits + 1, 1)
    at_or_above = tf.reduce_sum(tf.cast(keys >= middle, tf.int32))
    enough = at_or_above >= count
    exact = tf.equal(at_or_above, count)
    return (tf.where(enough, middle, low),
            tf.where(exact, middle, tf.where(enough, high, middle - 1)))

  lowest, highest = (tf.constant(limit, keys.dtype)
                     for limit in (keys.dtype.min, keys.dtype.max))
  low, _ = tf.while_loop(lambda low, high: low < high, halve, (lowest, highest))
  return low


def _keep_top_by_bisection(flat: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  keys = _ordered_keys(flat)
  threshold = _threshold_key(keys, count)
  above = keys > threshold
  # Of the entries equal to the threshold, the first ones in index order fill the rest.
  at_threshold = tf.cast(tf.equal(keys, threshold), tf.int32)
  places_left = count - tf.reduce_sum(tf.cast(above, tf.int32))
  tied_kept = tf.logical_and(at_threshold > 0, tf.cumsum(at_threshold) <= places_left)
  return tf.cast(tf.logical_or(above, tied_kept), flat.dtype)


def _kth_largest_by_bisection(flat: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  keys = _ordered_keys(flat)
  at_or_above = keys >= _threshold_key(keys, count)
  infinity = tf.fill(tf.shape(flat), tf.constant(np.inf, flat.dtype))
  return tf.reduce_min(tf.where(at_or_above, flat, infinity))


def _descending_order(flat: tf.Tensor) -> tf.TopKV2:
  """A full stable sort; `top_k` puts equal values in index order."""
  return tf.math.top_k(flat, k=flat.shape.num_elements(), sorted=True)


def _keep_top_by_sorting(flat: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  size = flat.shape.num_elements()
  ranks = tf.scatter_nd(_descending_order(flat).indices[:, tf.newaxis], tf.range(size),
                        [size])
  return tf.cast(ranks < count, flat.dtype)


def _kth_largest_by_sorting(flat: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  return tf.gather(_descending_order(flat).values, count - 1)


# Kernels from this size up select by bisection, XLA-compiled (one program per shape,
# about 0.4 s to compile on CPU): fusing its counting passes makes it 3-6x faster than
# a sort there. Smaller ones sort, which is as fast and compiles nothing.
BISECTION_MIN_SIZE = 2**14
_keep_top_compiled = tf.function(_keep_top_by_bisection, jit_compile=True,
                                 reduce_retracing=True)
_kth_largest_compiled = tf.function(_kth_largest_by_bisection, jit_compile=True,
                                    reduce_retracing=True)


def _uses_bisection(flat: tf.Tensor) -> bool:
  size = flat.shape.num_elements()
  return size is None or size >= BISECTION_MIN_SIZE


def keep_top(scores: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  """A 0/1 tensor shaped like `scores` with ones at its `count` largest entries.

  Ties are broken in favour of the lower (row-major) index, as a stable sort and TF1's
  `top_k` do. Shapes stay static (XLA, TPU).
  """
  flat = tf.reshape(scores, [-1])
  count = tf.clip_by_value(tf.cast(count, tf.int32), 0, tf.size(flat))
  select = _keep_top_compiled if _uses_bisection(flat) else _keep_top_by_sorting
  return tf.reshape(select(flat, count), tf.shape(scores))


def kth_largest(scores: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  """The `count`-th largest entry of `scores` (1-based; clipped to [1, size])."""
  flat = tf.reshape(scores, [-1])
  count = tf.clip_by_value(tf.cast(count, tf.int32), 1, tf.size(flat))
  select = _kth_largest_compiled if _uses_bisection(flat) else _kth_largest_by_sorting
  return select(flat, count)


def keep_top_at_sparsity(scores: tf.Tensor, sparsity: float) -> tf.Tensor:
  """A mask keeping the n - floor(sparsity * n) highest scores."""
  size = scores.shape.num_elements()
  return keep_top(scores, size - sparsity_lib.get_n_zeros(size, sparsity))
