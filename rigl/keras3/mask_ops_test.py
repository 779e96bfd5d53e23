"""Tests of the Keras 3 selection and random numbers, on the configured backend."""

import zlib

import numpy as np
import pytest
from keras import ops

from rigl.keras3 import mask_ops


def numpy_keep_top(scores: np.ndarray, count: int) -> np.ndarray:
  """The reference: a stable descending sort (ties to the lower index)."""
  flat = scores.ravel()
  order = np.argsort(-flat.astype(np.float64), kind="stable")
  mask = np.zeros(flat.size, scores.dtype)
  mask[order[:count]] = 1
  return mask.reshape(scores.shape)


def as_numpy(value) -> np.ndarray:
  return np.asarray(ops.convert_to_numpy(value))


@pytest.mark.parametrize("shape", [(7,), (5, 9), (3, 3, 4, 6)])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.93, 1.0])
def test_keep_top_matches_a_stable_sort(shape, fraction):
  rng = np.random.default_rng(len(shape))
  scores = rng.normal(size=shape).astype(np.float32)
  count = int(round(scores.size * fraction))
  got = as_numpy(mask_ops.keep_top(ops.convert_to_tensor(scores), count))
  np.testing.assert_array_equal(got, numpy_keep_top(scores, count))


def test_keep_top_breaks_ties_by_index_and_orders_signs_and_infinities():
  scores = np.array([0.5, -np.inf, 2.0, 0.5, -0.0, 0.0, -3.0, 0.5, np.inf, -1e-30],
                    np.float32)
  for count in range(scores.size + 1):
    got = as_numpy(mask_ops.keep_top(ops.convert_to_tensor(scores), count))
    np.testing.assert_array_equal(got, numpy_keep_top(scores, count), err_msg=str(count))


def test_keep_top_on_large_kernels_with_many_equal_scores():
  rng = np.random.default_rng(3)
  # A sparse layer's drop scores: most entries -inf, the rest few distinct values.
  scores = np.where(rng.uniform(size=(64, 300)) < 0.1,
                    rng.integers(0, 5, size=(64, 300)).astype(np.float32), -np.inf)
  for count in (0, 1, 700, int(np.isfinite(scores).sum()), 5000):
    got = as_numpy(mask_ops.keep_top(ops.convert_to_tensor(scores.astype(np.float32)),
                                     count))
    np.testing.assert_array_equal(got, numpy_keep_top(scores, count))


def test_kth_largest():
  rng = np.random.default_rng(4)
  scores = rng.normal(size=(40, 25)).astype(np.float32)
  ordered = np.sort(scores.ravel())[::-1]
  for count in (1, 2, 500, 1000):
    assert float(as_numpy(mask_ops.kth_largest(ops.convert_to_tensor(scores), count))) \
        == ordered[count - 1]


def test_drop_and_grow_keeps_then_grows_elsewhere():
  rng = np.random.default_rng(5)
  drop = rng.normal(size=(30, 20)).astype(np.float32)
  grow = rng.normal(size=(30, 20)).astype(np.float32)
  kept, grown = (as_numpy(t) for t in mask_ops.drop_and_grow(
      ops.convert_to_tensor(drop), ops.convert_to_tensor(grow), 100, 50))
  np.testing.assert_array_equal(kept, numpy_keep_top(drop, 100))
  expected_grown = numpy_keep_top(np.where(kept > 0, -np.inf, grow), 50)
  np.testing.assert_array_equal(grown, expected_grown)
  assert not np.any(kept * grown)


def test_hash_random_is_deterministic_and_depends_on_tag_layer_and_step():
  shape = (64, 64)

  def draw(layer="a", tag="t", step=3, offset=0):
    return as_numpy(mask_ops.HashRandom(layer, offset, ops.convert_to_tensor(step))
                    .uniform(tag, shape, "float32"))

  first = draw()
  np.testing.assert_array_equal(first, draw())
  for other in (draw(layer="b"), draw(tag="u"), draw(step=4), draw(offset=1)):
    assert np.mean(first == other) < 0.01


def test_hash_random_distributions():
  random = mask_ops.HashRandom("layer", 0, ops.convert_to_tensor(0))
  size = 200_000
  uniform = as_numpy(random.uniform("u", (size,), "float32", minval=-2.0, maxval=4.0))
  assert uniform.min() >= -2.0 and uniform.max() < 4.0
  # Mean and spread of U(-2, 4): 1 and 6 / sqrt(12), within a few standard errors.
  assert uniform.mean() == pytest.approx(1.0, abs=0.02)
  assert uniform.std() == pytest.approx(6 / np.sqrt(12), abs=0.02)
  normal = as_numpy(random.normal("n", (size,), "float32", stddev=3.0))
  assert normal.mean() == pytest.approx(0.0, abs=0.03)
  assert normal.std() == pytest.approx(3.0, abs=0.03)
  assert np.mean(np.abs(normal) > 2 * 3.0) == pytest.approx(0.0455, abs=0.003)


def numpy_uniform(layer: str, tag: str, offset: int, step: int, size: int) -> np.ndarray:
  """The hash recipe in numpy uint32 arithmetic, written from its description."""

  def mix(value):
    value = value ^ (value >> np.uint32(16))
    value = value * np.uint32(0x85EBCA6B)
    value = value ^ (value >> np.uint32(13))
    value = value * np.uint32(0xC2B2AE35)
    return value ^ (value >> np.uint32(16))

  with np.errstate(over="ignore"):
    stream = (zlib.crc32((layer + tag).encode()) % 2**31 + offset) % 2**31
    key = mix(mix(np.uint32(step)) ^ np.uint32(stream))
    index = np.arange(size, dtype=np.uint32) * np.uint32(0x9E3779B9)
    bits = mix(index + key)
  return (bits >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)


def test_hash_random_matches_a_numpy_reference_on_every_backend():
  """Integer ops only, which every backend wraps alike: the same numbers everywhere."""
  values = as_numpy(mask_ops.HashRandom("layer", 7, ops.convert_to_tensor(11))
                    .uniform("grow", (1000,), "float32"))
  np.testing.assert_array_equal(values, numpy_uniform("layer", "grow", 7, 11, 1000))
