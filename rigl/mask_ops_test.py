"""Top-k masks: exact counts, ties broken towards the lower index, any float type."""

import numpy as np
import pytest
import tensorflow as tf

from rigl import array_ops
from rigl import mask_ops
from rigl import mask_updates


def numpy_keep_top(scores: np.ndarray, count: int) -> np.ndarray:
  """The oracle: a stable descending sort (equal scores keep index order)."""
  flat = scores.reshape(-1).astype(np.float64)
  order = np.argsort(-flat, kind="stable")
  mask = np.zeros(flat.size)
  mask[order[:count]] = 1
  return mask.reshape(scores.shape)


def random_scores(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
  if kind == "normal":
    return rng.normal(size=size)
  if kind == "few_values":  # Many ties, negatives included.
    return rng.integers(-3, 3, size=size).astype(np.float64)
  if kind == "signed_zeros_and_infinities":
    values = rng.normal(size=size)
    values[rng.random(size) < 0.3] = -np.inf
    values[rng.random(size) < 0.2] = -0.0
    values[rng.random(size) < 0.2] = 0.0
    values[rng.random(size) < 0.05] = np.inf
    return values
  return np.abs(rng.normal(size=size)) * (rng.random(size) < 0.3)  # Sparse gradients.


def test_keep_top_counts_and_ties():
  scores = tf.constant([[0.5, 0.1, 0.5], [0.9, 0.5, 0.0]])
  mask = mask_ops.keep_top(scores, 3).numpy()
  # 0.9 first, then the three tied 0.5s in index order: (0,0) and (0,2) win.
  np.testing.assert_array_equal(mask, [[1, 0, 1], [1, 0, 0]])
  assert mask_ops.keep_top(scores, 0).numpy().sum() == 0
  assert mask_ops.keep_top(scores, 6).numpy().sum() == 6


SELECTIONS = {
    "sorting": (mask_ops._keep_top_by_sorting, mask_ops._kth_largest_by_sorting),
    "search": (mask_ops._keep_top_by_search, mask_ops._kth_largest_by_search),
}


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("kind", ["normal", "few_values", "signed_zeros_and_infinities",
                                  "sparse"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.float16])
def test_selection_matches_a_stable_sort(selection, kind, dtype):
  keep_top, kth_largest = SELECTIONS[selection]
  rng = np.random.default_rng(abs(hash((kind, dtype.name))) % 2**32)
  for _ in range(3):
    size = int(rng.integers(1, 200))
    scores = tf.constant(random_scores(rng, kind, size), dtype)
    exact = scores.numpy().astype(np.float64)
    for count in {0, 1, size, int(rng.integers(0, size + 1))}:
      np.testing.assert_array_equal(keep_top(scores, tf.constant(count)).numpy(),
                                    numpy_keep_top(exact, count))
      if count:
        assert (kth_largest(scores, tf.constant(count)).numpy() ==
                np.sort(exact)[::-1][count - 1])


def test_large_kernels_select_by_compiled_search():
  rng = np.random.default_rng(0)
  size = mask_ops.SEARCH_MIN_SIZE
  # Few distinct values: ties at the threshold in every case.
  scores = tf.constant(rng.integers(0, 50, size=(size // 8, 8)).astype(np.float32))
  for count in (0, 1, 1000, size - 1, size):
    np.testing.assert_array_equal(mask_ops.keep_top(scores, count).numpy(),
                                  numpy_keep_top(scores.numpy(), count))
  assert (mask_ops.kth_largest(scores, 1000).numpy() ==
          np.sort(scores.numpy().reshape(-1))[::-1][999])


def adversarial_scores(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
  """Score distributions on which a straight-line guess is far off."""
  if kind == "spike_below":  # Drop scores: most entries -inf, the rest spread out.
    values = np.full(size, -np.inf)
    active = rng.random(size) < 0.1
    values[active] = np.abs(rng.normal(size=active.sum()))
    return values
  if kind == "spike_above":
    values = rng.normal(size=size)
    values[rng.random(size) < 0.5] = 1e30
    return values
  if kind == "heavy_tailed":
    return np.exp(rng.normal(size=size) * 20)
  return np.geomspace(1e-30, 1e30, size)  # "geometric": equal steps in the exponent.


@pytest.mark.parametrize("kind", ["spike_below", "spike_above", "heavy_tailed",
                                  "geometric"])
def test_search_is_exact_and_needs_at_most_two_passes_per_key_bit(kind):
  rng = np.random.default_rng(7)
  size = 5000
  scores = tf.constant(adversarial_scores(rng, kind, size), tf.float32)
  search = tf.function(mask_ops._search_threshold, jit_compile=True)
  for count in (1, 17, 500, 4999):
    np.testing.assert_array_equal(mask_ops._keep_top_by_search(scores, count).numpy(),
                                  numpy_keep_top(scores.numpy(), count))
    _, passes = search(mask_ops._ordered_keys(scores), tf.constant(count))
    assert 1 <= passes.numpy() <= 2 * 32


def bisection_passes(keys: np.ndarray, count: int) -> int:
  """Counting passes that plain bisection over the int32 key range takes."""
  low, high, passes = np.iinfo(np.int32).min, np.iinfo(np.int32).max, 0
  while low < high:
    middle = (low + high + 1) // 2
    at_or_above = int(np.sum(keys >= middle))
    passes += 1
    if at_or_above == count:
      break
    low, high = (middle, high) if at_or_above > count else (low, middle - 1)
  return passes


@pytest.mark.parametrize("kind", ["uniform", "half_normal"])
def test_search_needs_fewer_passes_than_bisection_on_smooth_scores(kind):
  rng = np.random.default_rng(5)
  values = rng.random(100_000) if kind == "uniform" else np.abs(rng.normal(size=100_000))
  keys = mask_ops._ordered_keys(tf.constant(values, tf.float32))
  for count in (1000, 30_000, 90_000):
    threshold, passes = mask_ops._search_threshold(keys, tf.constant(count))
    assert np.sum(keys.numpy() >= threshold.numpy()) == count
    assert passes.numpy() < bisection_passes(keys.numpy().astype(np.int64), count)


def test_keep_top_is_exact_when_nearby_floats_differ_in_the_last_bit():
  base = np.float32(1.0)
  neighbours = np.array([np.nextafter(base, np.float32(0)), base,
                         np.nextafter(base, np.float32(2))], np.float32)
  scores = tf.constant(np.tile(neighbours, 5))
  np.testing.assert_array_equal(mask_ops.keep_top(scores, 6).numpy(),
                                numpy_keep_top(scores.numpy(), 6))


def numpy_drop_and_grow(drop: np.ndarray, grow: np.ndarray, n_keep: int,
                        n_grow: int) -> tuple[np.ndarray, np.ndarray]:
  kept = numpy_keep_top(drop, n_keep)
  others = np.flatnonzero(kept.reshape(-1) == 0)
  order = others[np.argsort(-grow.reshape(-1)[others], kind="stable")]
  grown = np.zeros(grow.size)
  grown[order[:n_grow]] = 1
  return kept, grown.reshape(grow.shape)


@pytest.mark.parametrize("size", [120, mask_ops.SEARCH_MIN_SIZE])
def test_drop_and_grow_keeps_then_grows_among_the_others(size):
  rng = np.random.default_rng(11)
  drop = np.where(rng.random(size) < 0.3, rng.random(size), -np.inf).astype(np.float32)
  # Huge equal grow scores: "the lowest one minus 1" would tie with them.
  grow = np.where(rng.random(size) < 0.9, -1e30, rng.normal(size=size) * 1e30)
  grow = grow.astype(np.float32)
  n_keep = int(np.isfinite(drop).sum() * 0.7)
  for n_grow in (0, 5, size // 2, size):
    kept, grown = mask_ops.drop_and_grow(tf.constant(drop), tf.constant(grow), n_keep,
                                         n_grow)
    expected_kept, expected_grown = numpy_drop_and_grow(drop, grow, n_keep,
                                                        min(n_grow, size - n_keep))
    np.testing.assert_array_equal(kept.numpy(), expected_kept)
    np.testing.assert_array_equal(grown.numpy(), expected_grown)
    assert not np.any(kept.numpy() * grown.numpy())


def test_keep_top_at_sparsity_keeps_exact_count():
  scores = tf.random.stateless_uniform([7, 9], seed=[1, 2])
  mask = mask_updates.keep_top_at_sparsity(array_ops.TENSORFLOW, mask_ops, scores, 0.7).numpy()
  assert mask.sum() == 63 - int(np.floor(0.7 * 63))
  assert scores.numpy()[mask == 1].min() > scores.numpy()[mask == 0].max()
