"""Tests for rigl.grow_init: parsing `grow_init` and values of new connections."""

import numpy as np
import pytest
import tensorflow as tf

from rigl import array_ops
from rigl import grow_init


def fixed_seed_fn(offset=0):
  """Random draws of a fixed layer and step; `offset` changes every draw."""
  return array_ops.TensorFlowRandom("layer", offset, tf.constant(7))


def kernel_and_mask(shape, dtype, seed=0, active=0.5):
  rng = np.random.default_rng(seed)
  kernel = rng.normal(0.0, 1.0, size=shape).astype(dtype)
  mask = (rng.uniform(size=shape) < active).astype(dtype)
  return kernel, mask


# ----------------------------------------------------------------------------------
# parse


@pytest.mark.parametrize("bad", ["ones", "zero", None, 0, "grad_scale", "grad_sign_2",
                                 "initial_value", "random_normal_", "random_normal_x",
                                 "random_normal_0", "zeros_2"])
def test_parse_invalid_raises(bad):
  with pytest.raises(ValueError):
    grow_init.parse(bad)


def test_parse_message_lists_allowed_values():
  with pytest.raises(ValueError) as info:
    grow_init.parse("ones")
  message = str(info.value)
  assert "ones" in message and "zeros" in message and "random_normal" in message


@pytest.mark.parametrize("text, kind, divisor", [
    ("zeros", "zeros", 1.0),
    ("random_normal", "random_normal", 1.0),
    ("random_normal_2", "random_normal", 2.0),
    ("random_uniform_.5", "random_uniform", 0.5),
    ("initial_dist_4", "initial_dist", 4.0),
])
def test_parse_valid(text, kind, divisor):
  parsed = grow_init.parse(text)
  assert (parsed.kind, parsed.divisor) == (kind, divisor)
  assert not parsed.uses_gradient


@pytest.mark.parametrize("text, kind, divisor", [
    ("grad_sign_.5", "grad_sign", 0.5),
    ("grad_scale", "grad_scale", 1.0),
    ("grad_scale_10", "grad_scale", 10.0),
])
def test_parse_gradient_kinds_need_allow_gradient(text, kind, divisor):
  parsed = grow_init.parse(text, allow_gradient=True)
  assert (parsed.kind, parsed.divisor) == (kind, divisor)
  assert parsed.uses_gradient
  with pytest.raises(ValueError):
    grow_init.parse(text)


# ----------------------------------------------------------------------------------
# grow_values


@pytest.mark.parametrize("name", ["zeros", "random_normal", "random_uniform",
                                  "random_normal_2", "random_uniform_3"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_and_dtype_kept(name, dtype):
  kernel, mask = kernel_and_mask((4, 5, 6), dtype)
  values = grow_init.grow_values(grow_init.parse(name), tf.constant(kernel),
                                 tf.constant(mask), fixed_seed_fn())
  assert values.shape == (4, 5, 6)
  assert values.dtype == tf.as_dtype(dtype)
  assert np.all(np.isfinite(values.numpy()))


def test_zeros_are_zero():
  kernel, mask = kernel_and_mask((3, 7), np.float32)
  values = grow_init.grow_values(grow_init.parse("zeros"), tf.constant(kernel),
                                 tf.constant(mask), fixed_seed_fn())
  np.testing.assert_array_equal(values.numpy(), np.zeros((3, 7)))


def test_random_uniform_bounded_by_mean_abs_of_active_weights():
  kernel, mask = kernel_and_mask((200, 50), np.float32, seed=1)
  kernel[mask == 0] *= 100.0  # Inactive weights must not influence the bound.
  bound = np.abs(kernel[mask == 1]).mean()
  values = grow_init.grow_values(grow_init.parse("random_uniform"), tf.constant(kernel),
                                 tf.constant(mask), fixed_seed_fn()).numpy()
  assert np.all(np.abs(values) <= bound * (1 + 1e-6))
  # The draws fill the interval: both ends are approached.
  assert values.max() > 0.95 * bound and values.min() < -0.95 * bound
  halved = grow_init.grow_values(grow_init.parse("random_uniform_2"), tf.constant(kernel),
                                 tf.constant(mask), fixed_seed_fn()).numpy()
  np.testing.assert_allclose(halved, values / 2, rtol=1e-6)


def test_random_normal_deterministic_and_std_of_active_weights():
  kernel, mask = kernel_and_mask((300, 200), np.float64, seed=2)
  kernel *= 0.05
  kernel[mask == 0] = 10.0  # Inactive weights must not influence the std.
  init = grow_init.parse("random_normal")
  first = grow_init.grow_values(init, tf.constant(kernel), tf.constant(mask),
                                fixed_seed_fn()).numpy()
  second = grow_init.grow_values(init, tf.constant(kernel), tf.constant(mask),
                                 fixed_seed_fn()).numpy()
  np.testing.assert_array_equal(first, second)
  other = grow_init.grow_values(init, tf.constant(kernel), tf.constant(mask),
                                fixed_seed_fn(offset=1)).numpy()
  assert not np.array_equal(first, other)
  target = kernel[mask == 1].std()
  assert first.std() == pytest.approx(target, rel=0.02)
  assert abs(first.mean()) < 0.02 * target
  divided = grow_init.grow_values(grow_init.parse("random_normal_4"), tf.constant(kernel),
                                  tf.constant(mask), fixed_seed_fn()).numpy()
  np.testing.assert_allclose(divided, first / 4, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_kinds(dtype):
  kernel, mask = kernel_and_mask((6, 8), dtype, seed=3)
  gradient = np.random.default_rng(4).normal(size=(6, 8)).astype(dtype)
  gradient[0, :3] = 0.0
  scale = grow_init.grow_values(grow_init.parse("grad_scale_2", allow_gradient=True),
                                tf.constant(kernel), tf.constant(mask), fixed_seed_fn(),
                                gradient=tf.constant(gradient))
  np.testing.assert_allclose(scale.numpy(), gradient / 2, rtol=1e-6)
  sign = grow_init.grow_values(grow_init.parse("grad_sign_.5", allow_gradient=True),
                               tf.constant(kernel), tf.constant(mask), fixed_seed_fn(),
                               gradient=tf.constant(gradient))
  np.testing.assert_array_equal(sign.numpy(), np.sign(gradient) / 0.5)
  assert sign.dtype == tf.as_dtype(dtype)


def test_initial_dist_is_permutation_of_initial_kernel():
  kernel, mask = kernel_and_mask((10, 12), np.float32, seed=5)
  initial = np.random.default_rng(6).normal(size=(10, 12)).astype(np.float32)
  values = grow_init.grow_values(grow_init.parse("initial_dist"), tf.constant(kernel),
                                 tf.constant(mask), fixed_seed_fn(),
                                 initial_kernel=tf.constant(initial)).numpy()
  assert values.shape == (10, 12)
  np.testing.assert_array_equal(np.sort(values.ravel()), np.sort(initial.ravel()))
  assert not np.array_equal(values, initial)  # Actually shuffled.
  divided = grow_init.grow_values(grow_init.parse("initial_dist_2"), tf.constant(kernel),
                                  tf.constant(mask), fixed_seed_fn(),
                                  initial_kernel=tf.constant(initial)).numpy()
  np.testing.assert_allclose(divided, values / 2, rtol=1e-6)
