"""Block masks (`SparsityConfig.dense_block_size`): every method keeps whole blocks.

A Dense kernel (inputs, units) masked in blocks of B rows: every group of B consecutive
inputs of one unit is all kept or all masked, at creation and after any update, and a
layer at sparsity s keeps n_blocks - floor(s * n_blocks) blocks.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import rigl
from rigl import array_ops
from rigl import kernel_selection
from rigl import mask_updates
from rigl import sparsity as sparsity_lib
from rigl.methods_test import Harness
from rigl.methods_test import schedule
from rigl.methods_test import sgd

BLOCK = 4
OPS = array_ops.TENSORFLOW


def blocks_of(mask: np.ndarray, block: int = BLOCK) -> np.ndarray:
  """(n_blocks, units) view of a (inputs, units) mask; raises if a block is mixed."""
  grouped = mask.reshape(mask.shape[0] // block, block, mask.shape[1])
  assert np.all(grouped == grouped[:, :1, :]), "a block is partly masked"
  return grouped[:, 0, :]


def mlp(seed: int = 0) -> tf_keras.Model:
  """Conv (elementwise masks) then two Dense layers (block masks); 8 and 12 inputs."""
  tf_keras.utils.set_random_seed(seed)
  return tf_keras.Sequential([
      tf_keras.Input((16,)), tf_keras.layers.Reshape((4, 4, 1)),
      tf_keras.layers.Conv2D(2, 3, name="conv"),
      tf_keras.layers.Flatten(), tf_keras.layers.Dense(12, activation="tanh",
                                                       name="hidden"),
      tf_keras.layers.Dense(5, name="layer")])


def test_pool_and_expand_blocks_match_numpy():
  values = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
  pooled = mask_updates.pool_blocks(OPS, tf.constant(values), 3).numpy()
  np.testing.assert_allclose(pooled, values.reshape(4, 3, 5).mean(axis=1), rtol=1e-6)
  expanded = mask_updates.expand_blocks(OPS, tf.constant(pooled), 3).numpy()
  np.testing.assert_array_equal(expanded, np.repeat(pooled, 3, axis=0))
  assert mask_updates.pool_blocks(OPS, values, 1) is values


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9, 0.99])
def test_random_block_mask_has_exact_block_count(sparsity):
  mask = sparsity_lib.random_mask((16, 7), sparsity, np.random.default_rng(1),
                                  block_size=BLOCK)
  blocks = blocks_of(mask)
  assert blocks.size - blocks.sum() == np.floor(sparsity * blocks.size)


def test_block_size_applies_to_dense_kernels_only_and_must_divide_inputs():
  config = rigl.SparsityConfig(0.9, dense_block_size=BLOCK)
  assert config.block_size("dense", (8, 3)) == BLOCK
  assert config.block_size("conv", (3, 3, 8, 4)) == 1
  assert rigl.SparsityConfig(0.9).block_size("dense", (8, 3)) == 1
  with pytest.raises(ValueError, match="does not divide the 10 inputs of layer 'odd'"):
    config.block_size("odd", (10, 3))
  for bad in (0, -4, 2.5):
    with pytest.raises(ValueError, match="dense_block_size"):
      rigl.SparsityConfig(0.9, dense_block_size=bad)


def test_non_dividing_block_is_refused_before_training():
  model = tf_keras.Sequential([tf_keras.Input((10,)),
                               tf_keras.layers.Dense(3, name="odd")])
  with pytest.raises(ValueError, match="layer 'odd'"):
    rigl.sparsify(model, sgd(), "rigl", rigl.SparsityConfig(0.5, dense_block_size=4))


@pytest.mark.parametrize("method", sorted(set(rigl.TRAINING_METHODS) - {"baseline"}))
def test_every_method_keeps_whole_blocks(method):
  model = mlp()
  optimizer = rigl.create_sparse_optimizer(
      method, sgd(momentum=0.9), model,
      rigl.SparsityConfig(0.6, "erdos_renyi_kernel", dense_block_size=BLOCK),
      schedule=schedule(0, 100, 2, 0.4), pruning_begin_step=0, pruning_end_step=6,
      pruning_frequency=2)
  assert optimizer.layer_blocks == {"conv": 1, "hidden": BLOCK, "layer": BLOCK}
  harness = Harness(model, optimizer)
  first = {name: mask.numpy() for name, mask in optimizer.masks.items()}
  changed = set()
  for _ in range(9):
    harness.step()
    for name in ("hidden", "layer"):
      mask = optimizer.masks[name].numpy()
      blocks = blocks_of(mask)
      assert np.all(optimizer.kernels[name].numpy()[mask == 0] == 0)
      if method != "prune":
        expected = blocks.size - np.floor(optimizer.layer_sparsities[name] * blocks.size)
        assert blocks.sum() == expected
      if np.any(mask != first[name]):
        changed.add(name)
  if method in ("set", "rigl", "momentum", "prune", "snip", "dnw"):
    assert changed, "the masks never changed: the test exercised no update"


def test_rigl_block_update_matches_numpy():
  """Drop the active blocks of lowest mean |w|, grow the others of highest mean |g|."""
  model = tf_keras.Sequential([tf_keras.Input((16,)),
                               tf_keras.layers.Dense(6, name="layer")])
  rng = np.random.default_rng(2)
  # Distinct block means far apart, so the 1e-5 drop noise cannot reorder them.
  kernel = (rng.permutation(16 * 6).reshape(16, 6) + 1.0) * 0.01 * rng.choice([-1, 1],
                                                                              (16, 6))
  model.get_layer("layer").kernel.assign(kernel.astype(np.float32))
  optimizer = rigl.RigL(sgd(), model, rigl.SparsityConfig(0.5, dense_block_size=BLOCK),
                        schedule=schedule(0, 100, 10, 0.5))
  harness = Harness(model, optimizer)
  kernel, mask = harness.kernel(), harness.mask()
  grads = harness.step()[0].numpy()

  def block_mean(values):
    return np.abs(values).reshape(4, BLOCK, 6).mean(axis=1).reshape(-1)

  old = blocks_of(mask).reshape(-1)
  active = np.flatnonzero(old)
  n_prune = int(active.size * 0.5)
  kept = active[np.argsort(-block_mean(kernel * mask)[active], kind="stable")[
      :active.size - n_prune]]
  candidates = np.setdiff1d(np.arange(old.size), kept)
  grown = candidates[np.argsort(-block_mean(grads)[candidates], kind="stable")[:n_prune]]
  expected = np.zeros(old.size)
  expected[np.concatenate([kept, grown])] = 1
  np.testing.assert_array_equal(blocks_of(harness.mask()).reshape(-1), expected)


def test_initial_block_masks_are_seeded_per_layer():
  one = kernel_selection.initial_mask("layer", (12, 5), 0.5, seed=3, block_size=BLOCK)
  two = kernel_selection.initial_mask("layer", (12, 5), 0.5, seed=3, block_size=BLOCK)
  other = kernel_selection.initial_mask("layer", (12, 5), 0.5, seed=4, block_size=BLOCK)
  np.testing.assert_array_equal(one, two)
  assert np.any(one != other)
  blocks_of(one)
