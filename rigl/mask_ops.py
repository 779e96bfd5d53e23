"""Small tensor and variable helpers shared by the sparse optimizers."""

from __future__ import annotations

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
                 weights: tf.Tensor | None = None) -> None:
  """Sets `mask` to `new_mask` and the kernel to `weights` (default: itself) masked."""
  weights = tf.convert_to_tensor(kernel) if weights is None else weights
  assign(kernel, weights * new_mask)
  assign(mask, new_mask)


def keep_top(scores: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  """A 0/1 tensor shaped like `scores` with ones at its `count` largest entries.

  A full-length stable sort keeps shapes static (for XLA/TPU) and breaks ties in favour
  of the lower index, as TF1's `top_k` did.
  """
  flat = tf.reshape(scores, [-1])
  size = tf.size(flat)
  order = tf.math.top_k(flat, k=size, sorted=True).indices
  ranks = tf.scatter_nd(order[:, tf.newaxis], tf.range(size), [size])
  return tf.reshape(tf.cast(ranks < count, scores.dtype), tf.shape(scores))


def keep_top_at_sparsity(scores: tf.Tensor, sparsity: float) -> tf.Tensor:
  """A mask keeping the n - floor(sparsity * n) highest scores."""
  size = scores.shape.num_elements()
  return keep_top(scores, size - sparsity_lib.get_n_zeros(size, sparsity))
