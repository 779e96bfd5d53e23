"""The Keras 3 implementation selects exactly the tf_keras core's masks.

From the same weights, gradients, masks and step, one mask update of each method in
Keras 3 (on the configured backend) and in the tf_keras core must give the same masks,
kernels and optimizer slots. Weights, gradients and saliencies are spaced far apart
(no near-ties), so the 1e-5 tie-breaking noise, drawn differently by the two
implementations, cannot change an order.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from keras import ops

import rigl
from rigl import sparsity as sparsity_lib

INPUT_SHAPE = (6, 6, 3)
# |weights| and saliencies are multiples of this; the drop noise has std 1e-5.
SPACING = 0.01
STEP = 50
SPARSITY = 0.8


def build(layers_module, input_layer):
  return [input_layer(INPUT_SHAPE), layers_module.Conv2D(8, 3, name="conv"),
          layers_module.Flatten(), layers_module.Dense(10, name="out")]


def tf_keras_model():
  return tf_keras.Sequential(build(tf_keras.layers, lambda s: tf_keras.Input(s)))


def keras3_model():
  return keras.Sequential(build(keras.layers, lambda s: keras.Input(s)))


def spaced(rng, shape, offset=0.0):
  """Values whose magnitudes are distinct multiples of SPACING, random signs."""
  size = int(np.prod(shape))
  magnitudes = (rng.permutation(size) + 1 + offset) * SPACING
  return (magnitudes * rng.choice([-1.0, 1.0], size)).reshape(shape).astype(np.float32)


def as_numpy(value):
  return np.asarray(ops.convert_to_numpy(value))


def paired_optimizers(method, inner, dense_block_size=1, **options):
  """The same method on a tf_keras and a Keras 3 model, in the same state."""
  config = sparsity_lib.SparsityConfig(sparsity=SPARSITY, distribution="random",
                                       dense_block_size=dense_block_size)
  core_model, k3_model = tf_keras_model(), keras3_model()
  core = rigl.sparsify(core_model, inner[0], method, config, seed=3, **options)
  k3 = rigl.sparsify(k3_model, inner[1], method, config, seed=3, **options)
  assert isinstance(k3, rigl.keras3.SparseOptimizer)
  core.build(core_model.trainable_variables)
  k3.build(k3_model.trainable_variables)
  return core, k3


def set_state(core, k3, rng, kernels=None, masks=None):
  """Assigns the same kernels (and masks) to both, then re-applies the masks."""
  for name in core.kernels:
    shape = tuple(core.kernels[name].shape)
    values = spaced(rng, shape) if kernels is None else kernels[name]
    core.kernels[name].assign(values)
    k3.kernels[name].assign(values)
    if masks is not None:
      core.masks[name].assign(masks[name])
      k3.masks[name].assign(masks[name])
  core.apply_masks()
  k3.apply_masks()
  core.iterations.assign(STEP)
  k3.iterations.assign(STEP)


def assert_same(core, k3):
  for name in core.masks:
    np.testing.assert_array_equal(as_numpy(k3.masks[name]), core.masks[name].numpy(),
                                  err_msg=f"mask {name}")
    np.testing.assert_allclose(as_numpy(k3.kernels[name]), core.kernels[name].numpy(),
                               rtol=1e-6, atol=1e-7, err_msg=f"kernel {name}")


def sgd():
  return (tf_keras.optimizers.SGD(0.1, momentum=0.9),
          keras.optimizers.SGD(0.1, momentum=0.9))


def update_both(core, k3, grads):
  core.update_masks([tf.constant(grads[name]) for name in core.kernels])
  k3.update_masks([ops.convert_to_tensor(grads[name]) for name in k3.kernels])


@pytest.mark.parametrize("method, options", [
    ("rigl", {"rigl_acc_scale": 0.5, "grow_init": "grad_scale"}),
    ("rigl", {}),
    ("momentum", {"s_momentum": 0.7}),
    ("static", {}),
])
def test_drop_and_grow_methods_select_the_core_masks(method, options):
  rng = np.random.default_rng(0)
  schedule = rigl.MaskUpdateSchedule(end_step=100, frequency=10, drop_fraction=0.3,
                                     drop_fraction_anneal="cosine")
  core, k3 = paired_optimizers(method, sgd(), schedule=schedule, **options)
  for name in core.masks:
    np.testing.assert_array_equal(as_numpy(k3.masks[name]), core.masks[name].numpy())
  set_state(core, k3, rng)
  grads = {name: spaced(rng, tuple(kernel.shape), offset=0.5)
           for name, kernel in core.kernels.items()}
  if method == "momentum":
    for name in core.kernels:
      average = spaced(rng, tuple(core.kernels[name].shape))
      core.gradient_averages[name].assign(average)
      k3.gradient_averages[name].assign(average)
  before = {name: core.masks[name].numpy() for name in core.masks}
  update_both(core, k3, grads)
  assert_same(core, k3)
  if method != "static":
    assert any(np.any(core.masks[n].numpy() != before[n]) for n in before)
  for name in core.masks:
    core_slot = core._slots[name][0].numpy()  # The momentum of each kernel.
    k3_slot = as_numpy(k3.slots[name][0])
    np.testing.assert_allclose(k3_slot, core_slot, rtol=1e-6, err_msg=name)


def test_rigl_block_masks_select_the_core_masks():
  """Blocks of 4 inputs: block means spaced apart (each block's |w| and |g| equal)."""
  block = 4
  rng = np.random.default_rng(4)
  schedule = rigl.MaskUpdateSchedule(end_step=100, frequency=10, drop_fraction=0.3)
  core, k3 = paired_optimizers("rigl", sgd(), dense_block_size=block, schedule=schedule)
  assert core.layer_blocks == k3.layer_blocks == {"conv": 1, "out": block}

  def block_spaced(shape, offset=0.0):
    if len(shape) != 2:
      return spaced(rng, shape, offset)
    return np.repeat(spaced(rng, (shape[0] // block, shape[1]), offset), block, axis=0)

  set_state(core, k3, rng, kernels={name: block_spaced(tuple(kernel.shape))
                                    for name, kernel in core.kernels.items()})
  before = core.masks["out"].numpy()
  update_both(core, k3, {name: block_spaced(tuple(kernel.shape), offset=0.5)
                         for name, kernel in core.kernels.items()})
  assert_same(core, k3)
  after = core.masks["out"].numpy()
  assert np.any(after != before)
  grouped = after.reshape(-1, block, after.shape[1])
  assert np.all(grouped == grouped[:, :1])


def test_snip_selects_the_core_masks():
  rng = np.random.default_rng(1)
  core, k3 = paired_optimizers("snip", sgd())
  weights = {name: spaced(rng, tuple(k.shape)) for name, k in core.kernels.items()}
  set_state(core, k3, rng, kernels=weights)
  # Gradients with |g * w| = distinct multiples of SPACING.
  grads = {name: spaced(rng, w.shape, offset=0.5) / w for name, w in weights.items()}
  update_both(core, k3, grads)
  assert_same(core, k3)
  for name in core.masks:
    assert core.masks[name].numpy().mean() == pytest.approx(1 - SPARSITY, abs=0.01)


def test_gradual_pruning_selects_the_core_masks():
  rng = np.random.default_rng(2)
  options = dict(pruning_begin_step=0, pruning_end_step=100, pruning_frequency=10,
                 threshold_decay=0.5)
  core, k3 = paired_optimizers("prune", sgd(), **options)
  set_state(core, k3, rng)
  weights_before = {name: core.kernels[name].numpy() for name in core.kernels}
  for name in core.kernels:
    core._thresholds[name].assign(0.2)
    k3._book.state[name]["threshold"].assign(0.2)
  update_both(core, k3, {name: np.zeros(k.shape, np.float32)
                         for name, k in core.kernels.items()})
  assert_same(core, k3)
  for name in core.kernels:
    np.testing.assert_allclose(as_numpy(k3._book.state[name]["threshold"]),
                               core._thresholds[name].numpy(), rtol=1e-6)
  # At step 50 of 0..100 the cubic ramp is at 0.8 * (1 - 0.5**3) = 0.7: the k-th
  # largest |w|, k = round(0.3 n), averaged with the old threshold 0.2.
  for name, weights in weights_before.items():
    magnitudes = np.sort(np.abs(weights).ravel())[::-1]
    threshold = 0.5 * 0.2 + 0.5 * magnitudes[int(round(0.3 * magnitudes.size)) - 1]
    np.testing.assert_array_equal(core.masks[name].numpy(),
                                  (np.abs(weights) >= threshold).astype(np.float32))


def test_set_keeps_the_counts_and_the_kept_connections():
  rng = np.random.default_rng(3)
  core, k3 = paired_optimizers("set", sgd(), schedule=rigl.MaskUpdateSchedule(
      end_step=100, frequency=10, drop_fraction=0.5))
  set_state(core, k3, rng)
  old = {name: core.masks[name].numpy() for name in core.masks}
  weights = {name: core.kernels[name].numpy() for name in core.kernels}
  update_both(core, k3, {name: np.zeros(k.shape, np.float32)
                         for name, k in core.kernels.items()})
  for name, old_mask in old.items():
    active = int(old_mask.sum())
    keep = active - int(np.float32(active) * np.float32(0.5))
    # The `keep` largest |w| among the active connections stay, in both.
    order = np.argsort(-np.abs(weights[name] * old_mask).ravel(), kind="stable")
    kept = np.zeros(old_mask.size, bool)
    kept[order[:keep]] = True
    for mask in (core.masks[name].numpy(), as_numpy(k3.masks[name])):
      assert int(mask.sum()) == active
      assert np.all(mask.ravel()[kept] == 1)
    assert np.any(as_numpy(k3.masks[name]) != old_mask)
