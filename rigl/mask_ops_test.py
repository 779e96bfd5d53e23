"""Top-k masks: exact counts and ties broken towards the lower index."""

import numpy as np
import tensorflow as tf

from rigl import mask_ops


def test_keep_top_counts_and_ties():
  scores = tf.constant([[0.5, 0.1, 0.5], [0.9, 0.5, 0.0]])
  mask = mask_ops.keep_top(scores, 3).numpy()
  # 0.9 first, then the three tied 0.5s in index order: (0,0) and (0,2) win.
  np.testing.assert_array_equal(mask, [[1, 0, 1], [1, 0, 0]])
  assert mask_ops.keep_top(scores, 0).numpy().sum() == 0
  assert mask_ops.keep_top(scores, 6).numpy().sum() == 6


def test_keep_top_at_sparsity_keeps_exact_count():
  scores = tf.random.stateless_uniform([7, 9], seed=[1, 2])
  mask = mask_ops.keep_top_at_sparsity(scores, 0.7).numpy()
  assert mask.sum() == 63 - int(np.floor(0.7 * 63))
  assert scores.numpy()[mask == 1].min() > scores.numpy()[mask == 0].max()
