"""Small tensor and variable helpers shared by the sparse optimizers."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf



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
  mask_in_place(slots, new_mask)
  assign(mask, new_mask)


def mask_in_place(variables: Sequence[tf.Variable], mask: tf.Tensor) -> None:
  """Multiplies every variable by `mask` (cast to its dtype): zero where it is 0."""
  for variable in variables:
    assign(variable, variable * tf.cast(mask, variable.dtype))


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


def _search_threshold(keys: tf.Tensor, count: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """A key t with count(keys > t) < count <= count(keys >= t), and the passes it took.

  Each pass counts the keys at or above one probe key. The bracket [low, high] starts
  at the keys' range; a probe goes where the straight line through the counts at the
  bracket's ends crosses `count` (interpolation search: a handful of passes on smooth
  score distributions), and a probe that fails to halve the bracket is followed by a
  bisection probe, so no search takes more than two passes per key bit. The search
  stops as soon as a probe has exactly `count` keys at or above it. No sort, O(n)
  memory, static shapes.
  """
  count = tf.cast(count, tf.int32)
  # Interpolation runs in float32 for int32 keys (TPUs have no float64).
  float_type = tf.float64 if keys.dtype == tf.int64 else tf.float32
  largest_probe = float(np.nextafter(np.array(keys.dtype.max, float_type.as_numpy_dtype),
                                     0))

  def to_float(value):
    return tf.cast(value, float_type)

  def midpoint(low, high):
    # floor((low + high + 1) / 2) without overflow.
    halves = tf.bitwise.right_shift(low, 1) + tf.bitwise.right_shift(high, 1)
    odd_bits = tf.bitwise.bitwise_and(low, 1) + tf.bitwise.bitwise_and(high, 1)
    return halves + tf.bitwise.right_shift(odd_bits + 1, 1)

  def interpolated(low, high, count_low, count_above):
    fraction = (to_float(count_low - count) /
                to_float(tf.maximum(count_low - count_above, 1)))
    # high - low wraps around when the bracket spans more than the key type's range;
    # such a bracket is wide enough to take its offset in floating point.
    wraps = tf.logical_and(low < 0, high > keys.dtype.max + tf.minimum(low, 0))
    width = tf.where(wraps, to_float(high) - to_float(low), to_float(high - low))
    offset = (width + 1) * fraction
    from_float = tf.cast(tf.clip_by_value(to_float(low) + offset, keys.dtype.min,
                                          largest_probe), keys.dtype)
    # Exact integer arithmetic otherwise, which narrow brackets need.
    from_low = low + tf.cast(tf.clip_by_value(offset, 0, largest_probe), keys.dtype)
    return tf.clip_by_value(tf.where(wraps, from_float, from_low), low + 1, high)

  def search_step(low, high, count_low, count_above, bisect, passes):
    # Invariant: count(keys >= low) = count_low >= count > count_above
    # = count(keys > high).
    probe = tf.where(bisect, midpoint(low, high),
                     interpolated(low, high, count_low, count_above))
    at_or_above = tf.reduce_sum(tf.cast(keys >= probe, tf.int32))
    enough = at_or_above >= count
    exact = tf.equal(at_or_above, count)
    new_low = tf.where(enough, probe, low)
    new_high = tf.where(exact, probe, tf.where(enough, high, probe - 1))
    width, new_width = (to_float(high) - to_float(low),
                        to_float(new_high) - to_float(new_low))
    halved = new_width <= width / 2
    return (new_low, new_high, tf.where(enough, at_or_above, count_low),
            tf.where(enough, count_above, at_or_above),
            tf.logical_and(tf.logical_not(bisect), tf.logical_not(halved)), passes + 1)

  low = tf.reduce_min(keys)
  size = tf.size(keys)
  # Every key is at or above the lowest one: when all are wanted, it is the answer.
  high = tf.where(tf.equal(count, size), low, tf.reduce_max(keys))
  low, _, _, _, _, passes = tf.while_loop(
      lambda low, high, *_: low < high, search_step,
      (low, high, size, tf.constant(0), tf.constant(False), tf.constant(0)))
  return low, passes


def _keep_top_by_search(flat: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  keys = _ordered_keys(flat)
  threshold, _ = _search_threshold(keys, count)
  above = keys > threshold
  # Of the entries equal to the threshold, the first ones in index order fill the rest
  # (a running count, skipped in the usual case that all of them fit).
  at_threshold = tf.cast(tf.equal(keys, threshold), tf.int32)
  places_left = count - tf.reduce_sum(tf.cast(above, tf.int32))
  tied = at_threshold > 0
  tied_kept = tf.cond(
      tf.reduce_sum(at_threshold) <= places_left, lambda: tied,
      lambda: tf.logical_and(tied, tf.cumsum(at_threshold) <= places_left))
  return tf.cast(tf.logical_or(above, tied_kept), flat.dtype)


def _kth_largest_by_search(flat: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  keys = _ordered_keys(flat)
  threshold, _ = _search_threshold(keys, count)
  infinity = tf.fill(tf.shape(flat), tf.constant(np.inf, flat.dtype))
  return tf.reduce_min(tf.where(keys >= threshold, flat, infinity))


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


# Kernels from this size up select by counting search, XLA-compiled (one program per
# shape, about 0.4 s to compile on CPU): fusing its counting passes makes it many times
# faster than a sort there. Smaller ones sort, which is as fast and compiles nothing.
SEARCH_MIN_SIZE = 2**14
_keep_top_compiled = tf.function(_keep_top_by_search, jit_compile=True,
                                 reduce_retracing=True)
_kth_largest_compiled = tf.function(_kth_largest_by_search, jit_compile=True,
                                    reduce_retracing=True)


def _drop_and_grow_by(keep_top_fn):
  def drop_and_grow(drop_scores, grow_scores, n_keep, n_grow):
    kept = keep_top_fn(drop_scores, n_keep)
    # Kept connections rank strictly below every other candidate for growth (-inf
    # grow scores count as the lowest finite one), so none of them is grown.
    lowest = tf.constant(grow_scores.dtype.min, grow_scores.dtype)
    grow_scores = tf.where(kept > 0, tf.constant(-np.inf, grow_scores.dtype),
                           tf.maximum(grow_scores, lowest))
    return kept, keep_top_fn(grow_scores, n_grow)
  return drop_and_grow


_drop_and_grow_by_sorting = _drop_and_grow_by(_keep_top_by_sorting)
_drop_and_grow_compiled = tf.function(_drop_and_grow_by(_keep_top_by_search),
                                      jit_compile=True, reduce_retracing=True)


def _uses_search(flat: tf.Tensor) -> bool:
  size = flat.shape.num_elements()
  return size is None or size >= SEARCH_MIN_SIZE


def keep_top(scores: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  """A 0/1 tensor shaped like `scores` with ones at its `count` largest entries.

  Ties are broken in favour of the lower (row-major) index, as a stable sort and TF1's
  `top_k` do. Shapes stay static (XLA, TPU).
  """
  flat = tf.reshape(scores, [-1])
  count = tf.clip_by_value(tf.cast(count, tf.int32), 0, tf.size(flat))
  select = _keep_top_compiled if _uses_search(flat) else _keep_top_by_sorting
  return tf.reshape(select(flat, count), tf.shape(scores))


def kth_largest(scores: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  """The `count`-th largest entry of `scores` (1-based; clipped to [1, size])."""
  flat = tf.reshape(scores, [-1])
  count = tf.clip_by_value(tf.cast(count, tf.int32), 1, tf.size(flat))
  select = _kth_largest_compiled if _uses_search(flat) else _kth_largest_by_sorting
  return select(flat, count)


def drop_and_grow(drop_scores: tf.Tensor, grow_scores: tf.Tensor, n_keep: tf.Tensor,
                  n_grow: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """0/1 masks of the kept and the grown connections of one mask update.

  Kept: the `n_keep` highest `drop_scores`; grown: the `n_grow` highest `grow_scores`
  among the others (`keep_top`'s tie-breaking), so the two never overlap. Both
  selections run in one compiled program on large kernels.
  """
  flat_drop = tf.reshape(drop_scores, [-1])
  flat_grow = tf.reshape(grow_scores, [-1])
  size = tf.size(flat_drop)
  n_keep = tf.clip_by_value(tf.cast(n_keep, tf.int32), 0, size)
  n_grow = tf.clip_by_value(tf.cast(n_grow, tf.int32), 0, size - n_keep)
  select = (_drop_and_grow_compiled if _uses_search(flat_drop)
            else _drop_and_grow_by_sorting)
  kept, grown = select(flat_drop, flat_grow, n_keep, n_grow)
  return (tf.reshape(kept, tf.shape(drop_scores)),
          tf.reshape(grown, tf.shape(grow_scores)))

