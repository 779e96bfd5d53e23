"""Behaviour of every training method, ported from the original TF1 tests and extended.

Each test builds a one- or two-layer Dense model, computes gradients eagerly (so the
test knows them exactly), and applies them with the sparse optimizer inside a
`tf.function`, as a training step would.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import rigl
from rigl import mask_ops
from rigl import optimizer_slots
from rigl import methods

LAYER = "layer"


def dense_model(n_in: int = 15, n_out: int = 25, seed: int = 0,
                hidden: int | None = None, dtype: str = "float32") -> tf_keras.Model:
  tf_keras.utils.set_random_seed(seed)
  layers = [tf_keras.Input((n_in,), dtype=dtype)]
  if hidden:
    layers.append(tf_keras.layers.Dense(hidden, activation="tanh", name="hidden",
                                        dtype=dtype))
  layers.append(tf_keras.layers.Dense(n_out, name=LAYER, dtype=dtype))
  return tf_keras.Sequential(layers)


class Harness:
  """Eager gradients of a fixed quadratic-ish loss, applied by a traced step."""

  def __init__(self, model, optimizer, seed: int = 0):
    self.model, self.optimizer = model, optimizer
    self.rng = np.random.default_rng(seed)
    self._apply = tf.function(
        lambda grads: optimizer.apply_gradients(zip(grads, model.trainable_variables)))

  def gradients(self, x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(self.model(x) - 1.0))
    return tape.gradient(loss, self.model.trainable_variables)

  def batch(self):
    return self.rng.standard_normal((8, self.model.input_shape[-1])).astype(
        self.model.inputs[0].dtype.as_numpy_dtype)

  def step(self, x=None):
    """One `apply_gradients` call; returns the gradients it used."""
    grads = self.gradients(self.batch() if x is None else x)
    self._apply(grads)
    return grads

  def mask(self, name=LAYER):
    return self.optimizer.masks[name].numpy()

  def kernel(self, name=LAYER):
    return self.optimizer.kernels[name].numpy()


def sgd(momentum=0.0, learning_rate=0.1):
  return tf_keras.optimizers.SGD(learning_rate, momentum=momentum)


def schedule(begin=0, end=100, frequency=1, drop_fraction=0.3, anneal="constant"):
  return rigl.MaskUpdateSchedule(begin, end, frequency, drop_fraction, anneal)


# ----- SET ------------------------------------------------------------------------------


@pytest.mark.parametrize("n_in,n_out,drop_fraction", [(15, 25, 0.5), (15, 25, 0.2),
                                                      (3, 5, 0.2)])
def test_set_mask_changes_only_at_update_iterations(n_in, n_out, drop_fraction):
  """begin 1, end 4, frequency 2: updates after the steps that reach 1 and 3."""
  model = dense_model(n_in, n_out)
  optimizer = rigl.SET(sgd(), model, rigl.SparsityConfig(0.5),
                             schedule=schedule(1, 4, 2, drop_fraction))
  harness = Harness(model, optimizer)
  changed_at = []
  for _ in range(8):
    before = harness.mask()
    harness.step()
    if not np.array_equal(before, harness.mask()):
      changed_at.append(int(optimizer.iterations.numpy()))
  assert changed_at == [1, 3]


@pytest.mark.parametrize("n_in,n_out,drop_fraction", [(15, 25, 0.5), (15, 25, 0.7),
                                                      (30, 10, 0.9)])
def test_set_update_keeps_count_and_changes_mask(n_in, n_out, drop_fraction):
  model = dense_model(n_in, n_out)
  optimizer = rigl.SET(sgd(), model, rigl.SparsityConfig(0.5),
                             schedule=schedule(drop_fraction=drop_fraction))
  harness = Harness(model, optimizer)
  n_ones = harness.mask().sum()
  for _ in range(3):
    before = harness.mask()
    harness.step()
    assert harness.mask().sum() == n_ones
    assert not np.array_equal(before, harness.mask())


@pytest.mark.parametrize("begin,end,frequency", [(0, 5, 1), (1, 7, 2), (0, -1, 3)])
def test_no_drop_never_changes_mask(begin, end, frequency):
  model = dense_model()
  optimizer = rigl.SET(sgd(), model, rigl.SparsityConfig(0.5),
                             schedule=schedule(begin, end, frequency, drop_fraction=0.0))
  harness = Harness(model, optimizer)
  initial = harness.mask()
  for _ in range(6):
    harness.step()
    np.testing.assert_array_equal(harness.mask(), initial)


def test_set_new_connections_start_at_zero_with_zero_slots():
  model = dense_model()
  optimizer = rigl.SET(sgd(momentum=0.9), model, rigl.SparsityConfig(0.5),
                             schedule=schedule(1, 100, 2, 0.5))
  harness = Harness(model, optimizer)
  harness.step()  # The step reaching 1 updates the masks (after momentum built up).
  harness.step()
  before = harness.mask()
  harness.step()  # Step 3: an update.
  new = (harness.mask() == 1) & (before == 0)
  assert new.any()
  momentum = optimizer.inner_optimizer.momentums[0].numpy()
  # The update ran after the step: new weights and their momentum are exactly 0.
  assert np.all(harness.kernel()[new] == 0)
  assert np.all(momentum[new] == 0)
  assert np.any(momentum[harness.mask() == 1] != 0)


def test_masked_weights_stay_zero_under_momentum():
  """Momentum of a dropped weight must not revive it between mask updates."""
  model = dense_model()
  optimizer = rigl.SET(sgd(momentum=0.9), model, rigl.SparsityConfig(0.7),
                             schedule=schedule(1, 100, 3, 0.5))
  harness = Harness(model, optimizer)
  for _ in range(7):
    harness.step()
    assert np.all(harness.kernel()[harness.mask() == 0] == 0)


class _DriftingSGD(tf_keras.optimizers.SGD):
  """Moves every weight by a constant each step, zero gradient or not."""

  def update_step(self, gradient, variable):
    super().update_step(gradient, variable)
    variable.assign_add(tf.fill(tf.shape(variable), 0.01))


@pytest.mark.parametrize("method", ["scratch", "set", "rigl"])
def test_masks_are_reapplied_after_steps_of_untrusted_optimizers(method):
  model = dense_model()
  optimizer = rigl.create_sparse_optimizer(method, _DriftingSGD(0.1), model,
                                           rigl.SparsityConfig(0.7),
                                           schedule=schedule(1, 100, 3, 0.5))
  harness = Harness(model, optimizer)
  for _ in range(5):
    harness.step()
    assert np.all(harness.kernel()[harness.mask() == 0] == 0)
  assert np.all(harness.kernel()[harness.mask() == 1] != 0)


# ----- static ---------------------------------------------------------------------------


def test_static_keeps_mask_and_reinitialises_weakest():
  model = dense_model()
  # A zero learning rate keeps the post-step weights equal to the pre-step ones.
  optimizer = rigl.StaticReinit(sgd(learning_rate=0.0), model, rigl.SparsityConfig(0.5),
                                schedule=schedule(drop_fraction=0.3))
  harness = Harness(model, optimizer)
  initial = harness.mask()
  n_active = int(initial.sum())
  kernel = harness.kernel()
  harness.step()
  np.testing.assert_array_equal(harness.mask(), initial)
  magnitudes = np.abs(kernel[initial == 1])
  weakest = magnitudes <= np.sort(magnitudes)[int(n_active * 0.3) - 1]
  np.testing.assert_array_equal(harness.kernel()[initial == 1] == 0, weakest)
  for _ in range(2):
    harness.step()
    np.testing.assert_array_equal(harness.mask(), initial)


# ----- SNFS (momentum) ------------------------------------------------------------------


@pytest.mark.parametrize("s_momentum", [0.5, 0.0, 1.0])
def test_momentum_gradient_average_follows_recursion(s_momentum):
  model = dense_model()
  optimizer = rigl.SNFS(sgd(), model, rigl.SparsityConfig(0.5),
                                  schedule=schedule(0, 100, 50), s_momentum=s_momentum)
  harness = Harness(model, optimizer)
  expected = np.zeros((15, 25), np.float32)
  for _ in range(4):
    grads = harness.step()
    expected = s_momentum * expected + (1 - s_momentum) * grads[0].numpy()
    np.testing.assert_allclose(optimizer.gradient_averages[LAYER].numpy(), expected,
                               rtol=1e-6, atol=1e-7)


def test_momentum_grows_largest_gradient_average():
  model = dense_model()
  optimizer = rigl.SNFS(sgd(learning_rate=0.0), model,
                                  rigl.SparsityConfig(0.5),
                                  schedule=schedule(2, 100, 5, 0.3), s_momentum=0.0)
  harness = Harness(model, optimizer)
  harness.step()
  old = harness.mask()
  grads = harness.step()  # Reaches step 2: update with EMA == this gradient.
  kept_and_grown = harness.mask()
  candidates = np.abs(grads[0].numpy())[kept_and_grown == 0]
  grown = (kept_and_grown == 1) & (old == 0)
  assert grown.any()
  # Every grown connection has a gradient at least as large as any left out.
  assert np.abs(grads[0].numpy())[grown].min() >= candidates.max()


# ----- RigL -----------------------------------------------------------------------------


@pytest.mark.parametrize("begin,end,frequency,expected", [
    (3, 7, 2, [1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1]),
    (1, 5, 3, [1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1]),
    (0, 4, 1, [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1]),
])
def test_rigl_step_counter_skips_update_iterations(begin, end, frequency, expected):
  model = dense_model()
  optimizer = rigl.RigL(sgd(), model, rigl.SparsityConfig(0.5),
                              schedule=schedule(begin, end, frequency))
  harness = Harness(model, optimizer)
  increments = []
  for _ in expected:
    before = int(optimizer.iterations.numpy())
    harness.step()
    increments.append(int(optimizer.iterations.numpy()) - before)
  assert increments == expected


def _expected_rigl_masks(kernel, mask, grad, drop_fraction):
  """Independent numpy drop/grow for distinct |w| (noise cannot reorder them)."""
  flat_w, flat_m, flat_g = (a.reshape(-1) for a in (kernel, mask, grad))
  n_ones = int(flat_m.sum())
  n_prune = int(n_ones * drop_fraction)
  active = np.flatnonzero(flat_m)
  kept = active[np.argsort(-np.abs(flat_w[active]), kind="stable")[:n_ones - n_prune]]
  candidates = np.setdiff1d(np.arange(flat_w.size), kept)
  grown = candidates[np.argsort(-np.abs(flat_g[candidates]), kind="stable")[:n_prune]]
  new_mask = np.zeros_like(flat_m)
  new_mask[kept] = 1
  new_mask[grown] = 1
  return new_mask.reshape(mask.shape)


def test_rigl_drops_smallest_weights_and_grows_largest_gradients():
  model = dense_model()
  # Well-separated magnitudes, so the 1e-5 drop noise cannot change the order.
  values = np.random.default_rng(1).permutation(np.linspace(0.01, 3.0, 15 * 25))
  model.get_layer(LAYER).kernel.assign(values.reshape(15, 25).astype(np.float32))
  optimizer = rigl.RigL(sgd(momentum=0.9), model, rigl.SparsityConfig(0.6),
                              schedule=schedule(0, 100, 10, 0.3))
  harness = Harness(model, optimizer)
  kernel, mask = harness.kernel(), harness.mask()
  grads = harness.step()
  assert int(optimizer.iterations.numpy()) == 0  # An update step: no optimizer step.
  expected = _expected_rigl_masks(kernel, mask, grads[0].numpy(), 0.3)
  np.testing.assert_array_equal(harness.mask(), expected)
  kept = (expected == 1) & (mask == 1)
  np.testing.assert_array_equal(harness.kernel()[kept], kernel[kept])
  new = (expected == 1) & (mask == 0)
  assert np.all(harness.kernel()[new] == 0)


def test_update_masks_runs_one_update_off_schedule_on_a_large_kernel():
  """`update_masks` (for tools) on a kernel big enough for the compiled selection."""
  n_in, n_out = 128, 160
  assert n_in * n_out >= mask_ops.SEARCH_MIN_SIZE
  model = dense_model(n_in, n_out)
  values = np.random.default_rng(2).permutation(np.linspace(0.01, 3.0, n_in * n_out))
  model.get_layer(LAYER).kernel.assign(values.reshape(n_in, n_out).astype(np.float32))
  optimizer = rigl.RigL(sgd(), model, rigl.SparsityConfig(0.8),
                              schedule=schedule(50, 100, 10, 0.3))  # Not due at step 0.
  kernel, mask = (v.numpy() for v in (model.get_layer(LAYER).kernel,
                                      optimizer.masks[LAYER]))
  # Ties among gradients too: the grow order must fall back to the lower index.
  grad = np.round(np.random.default_rng(3).normal(size=(n_in, n_out)), 1).astype(np.float32)
  with pytest.raises(ValueError, match="build"):
    optimizer.update_masks([tf.constant(grad)])
  optimizer.build(model.trainable_variables)
  tf.function(optimizer.update_masks)([tf.constant(grad)])
  np.testing.assert_array_equal(optimizer.masks[LAYER].numpy(),
                                _expected_rigl_masks(kernel, mask, grad, 0.3))
  assert int(optimizer.iterations.numpy()) == 0
  scratch = rigl.Static(sgd(), dense_model(n_in, n_out), rigl.SparsityConfig(0.8))
  before = scratch.masks[LAYER].numpy()
  scratch.update_masks([tf.constant(grad)])
  np.testing.assert_array_equal(scratch.masks[LAYER].numpy(), before)


def test_rigl_regrown_connections_keep_weights_and_slots():
  """A connection dropped and regrown in one update is not new."""
  model = dense_model(n_in=4, n_out=5)
  optimizer = rigl.RigL(sgd(momentum=0.9), model, rigl.SparsityConfig(0.5),
                              schedule=schedule(1, 100, 1, 1.0))
  harness = Harness(model, optimizer)
  harness.step()  # Step 0 -> 1 with momentum.
  kernel, mask = harness.kernel(), harness.mask()
  momentum = optimizer.inner_optimizer.momentums[0].numpy().copy()
  harness.step()  # Update at step 1 dropping every active weight.
  regrown = (harness.mask() == 1) & (mask == 1)
  # With drop fraction 1 every active weight is dropped; those regrown keep their state.
  np.testing.assert_array_equal(harness.kernel()[regrown], kernel[regrown])
  np.testing.assert_array_equal(
      optimizer.inner_optimizer.momentums[0].numpy()[regrown], momentum[regrown])


@pytest.mark.parametrize("inner", ["sgd", "adam", "legacy_adam"])
def test_rigl_new_slots_are_gradient_times_acc_scale(inner):
  make = {"sgd": lambda: sgd(momentum=0.9),
          "adam": lambda: tf_keras.optimizers.Adam(0.01),
          "legacy_adam": lambda: tf_keras.optimizers.legacy.Adam(0.01)}[inner]
  model = dense_model()
  optimizer = rigl.RigL(make(), model, rigl.SparsityConfig(0.5),
                              schedule=schedule(2, 100, 10, 0.3), rigl_acc_scale=0.5,
                              grow_init="grad_scale_2")
  harness = Harness(model, optimizer)
  harness.step()
  harness.step()
  mask = harness.mask()
  grads = harness.step()  # Update at step 2.
  new = (harness.mask() == 1) & (mask == 0)
  assert new.any()
  grad = grads[0].numpy()
  slots = optimizer_slots.slots_of(
      optimizer.inner_optimizer, optimizer.kernels[LAYER])
  assert len(slots) == (1 if inner == "sgd" else 2)
  for slot in slots:
    np.testing.assert_allclose(slot.numpy()[new], 0.5 * grad[new], rtol=1e-6)
  np.testing.assert_allclose(harness.kernel()[new], grad[new] / 2, rtol=1e-6)


# ----- SNIP -----------------------------------------------------------------------------


def test_snip_prunes_by_saliency_on_first_batch_without_a_step():
  model = dense_model()
  optimizer = rigl.SNIP(sgd(), model, rigl.SparsityConfig(0.7))
  harness = Harness(model, optimizer)
  assert np.all(harness.mask() == 1)
  kernel = harness.kernel()
  grads = harness.step()
  mask = harness.mask()
  assert int(optimizer.iterations.numpy()) == 0
  assert bool(optimizer.is_snipped.numpy())
  assert int(np.sum(mask == 0)) == int(np.floor(0.7 * mask.size))
  saliency = np.abs(grads[0].numpy() * kernel)
  assert saliency[mask == 1].min() >= saliency[mask == 0].max()
  np.testing.assert_array_equal(harness.kernel(), kernel * mask)
  for _ in range(3):
    harness.step()
    np.testing.assert_array_equal(harness.mask(), mask)
  assert int(optimizer.iterations.numpy()) == 3


# ----- DNW ------------------------------------------------------------------------------


def test_dnw_keeps_top_weights_of_dense_copy_updated_by_dense_gradient():
  model = dense_model()
  optimizer = rigl.DNW(sgd(learning_rate=0.1), model, rigl.SparsityConfig(0.8))
  harness = Harness(model, optimizer)
  dense = optimizer._dense_kernels[LAYER]  # pylint: disable=protected-access
  for _ in range(3):
    before = dense.numpy()
    grads = harness.step()
    # Straight-through: the dense copy moved by the full (dense) gradient.
    np.testing.assert_allclose(dense.numpy(), before - 0.1 * grads[0].numpy(),
                               rtol=1e-5, atol=1e-6)
    mask = harness.mask()
    assert int(np.sum(mask == 0)) == int(np.floor(0.8 * mask.size))
    magnitudes = np.abs(dense.numpy())
    assert magnitudes[mask == 1].min() >= magnitudes[mask == 0].max()
    np.testing.assert_array_equal(harness.kernel(), dense.numpy() * mask)


# ----- gradual magnitude pruning --------------------------------------------------------


def test_prune_masks_equal_tfmot_prune_low_magnitude():
  """Our GMP and tfmot's `prune_low_magnitude` give the same masks after every batch.

  tfmot counts pruning steps from 1 in the forward pass, the original (and this
  project) count optimizer steps after the step, so tfmot's step s is our step s - 1.
  A small learning rate keeps tfmot's pruned-but-updated weights below the kept ones,
  where the two libraries are equivalent.
  """
  import tensorflow_model_optimization as tfmot  # pylint: disable=import-outside-toplevel
  begin, end, frequency, target = 3, 11, 2, 0.8
  data = np.random.default_rng(0).standard_normal((120, 12)).astype(np.float32)
  labels = np.random.default_rng(1).integers(0, 4, 120)

  def fit_recording_masks(model, optimizer, read_masks, callbacks=()):
    history = []
    record = tf_keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: history.append(read_masks()))
    model.compile(optimizer=optimizer, loss=tf_keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    model.fit(data, labels, batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=list(callbacks) + [record])
    return history

  pruned = tfmot.sparsity.keras.prune_low_magnitude(
      dense_model(12, 4, hidden=16), pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
          0.0, target, begin, end, power=3, frequency=frequency))
  reference = fit_recording_masks(
      pruned, sgd(learning_rate=0.01),
      lambda: {w.layer.name: w.pruning_vars[0][1].numpy() for w in pruned.layers},
      [tfmot.sparsity.keras.UpdatePruningStep()])
  model = dense_model(12, 4, hidden=16)
  optimizer = rigl.GradualPruning(sgd(learning_rate=0.01), model, rigl.SparsityConfig(target),
                               pruning_begin_step=begin - 1, pruning_end_step=end - 1,
                               pruning_frequency=frequency)
  ours = fit_recording_masks(
      model, optimizer, lambda: {n: m.numpy() for n, m in optimizer.masks.items()})
  # tfmot updates in the forward pass of the batch, we after its step: compare our
  # masks after batch b with tfmot's after batch b + 1.
  sparsities = []
  for our_masks, their_masks in zip(ours[:-1], reference[1:]):
    for name, mask in their_masks.items():
      np.testing.assert_array_equal(our_masks[name], mask)
    sparsities.append(float(np.mean(their_masks[LAYER] == 0)))
  assert len(set(np.round(sparsities, 3))) >= 4  # The schedule was really followed.
  assert sparsities[-1] == pytest.approx(target, abs=0.02)


# ----- invariants over many updates -----------------------------------------------------


@pytest.mark.parametrize("method", sorted(set(rigl.TRAINING_METHODS) - {"baseline"}))
def test_invariants_after_many_updates(method):
  """Active counts fixed (or as scheduled), masked weights zero, new slots zero."""
  model = dense_model(n_in=10, n_out=12, hidden=9)
  optimizer = rigl.create_sparse_optimizer(
      method, sgd(momentum=0.9), model,
      rigl.SparsityConfig(0.6, "erdos_renyi_kernel"),
      schedule=schedule(0, 100, 2, 0.4, "cosine"), pruning_begin_step=0,
      pruning_end_step=6, pruning_frequency=2)
  harness = Harness(model, optimizer)
  counts = {name: m.numpy().sum() for name, m in optimizer.masks.items()}
  for _ in range(9):
    old_masks = {name: m.numpy() for name, m in optimizer.masks.items()}
    harness.step()
    for name, mask in optimizer.masks.items():
      mask = mask.numpy()
      kernel = optimizer.kernels[name].numpy()
      assert set(np.unique(mask)) <= {0.0, 1.0}
      assert np.all(kernel[mask == 0] == 0)
      if method not in ("snip", "dnw", "prune"):
        assert mask.sum() == counts[name]
      new = (mask == 1) & (old_masks[name] == 0)
      for slot in optimizer_slots.slots_of(optimizer.inner_optimizer,
                                           optimizer.kernels[name]):
        if isinstance(optimizer, rigl.DynamicSparseOptimizer):
          assert np.all(slot.numpy()[new] == 0)
        if optimizer.slots_follow_masks:  # What keeps removed weights from reviving.
          assert np.all(slot.numpy()[mask == 0] == 0)
  expected = optimizer.layer_sparsities
  for name, mask in optimizer.masks.items():
    assert mask.numpy().sum() == mask.numpy().size - int(
        np.floor(expected[name] * mask.numpy().size)) or method == "prune"


@pytest.mark.parametrize("method", ["rigl", "momentum", "prune", "dnw", "snip"])
def test_float64_models(method):
  model = dense_model(hidden=9, dtype="float64")
  optimizer = rigl.create_sparse_optimizer(
      method, sgd(momentum=0.9), model, rigl.SparsityConfig(0.5),
      schedule=schedule(0, 100, 1, 0.3), grow_init="random_normal",
      pruning_begin_step=0, pruning_end_step=2, pruning_frequency=1)
  harness = Harness(model, optimizer)
  for _ in range(3):
    harness.step()
  for name, mask in optimizer.masks.items():
    assert mask.dtype == tf.float64
    assert np.all(optimizer.kernels[name].numpy()[mask.numpy() == 0] == 0)
    assert np.mean(mask.numpy() == 0) >= 0.45


@settings(max_examples=12, deadline=None)
@given(method=st.sampled_from(["set", "static", "momentum", "rigl"]),
       sparsity=st.floats(0.05, 0.95), drop_fraction=st.floats(0.0, 1.0),
       frequency=st.integers(1, 3), steps=st.integers(1, 6),
       inner=st.sampled_from(["momentum", "adam"]), seed=st.integers(0, 1000))
def test_dynamic_methods_keep_their_invariants(method, sparsity, drop_fraction, frequency,
                                              steps, inner, seed):
  """After any updates: counts kept, masked weights zero, slots of new connections 0."""
  model = dense_model(n_in=6, n_out=7, hidden=5, seed=seed)
  make = sgd(momentum=0.9) if inner == "momentum" else tf_keras.optimizers.Adam(0.01)
  optimizer = rigl.create_sparse_optimizer(
      method, make, model, rigl.SparsityConfig(sparsity, "erdos_renyi"),
      schedule=schedule(0, 100, frequency, drop_fraction), seed=seed)
  harness = Harness(model, optimizer, seed=seed)
  counts = {name: mask.numpy().sum() for name, mask in optimizer.masks.items()}
  for _ in range(steps):
    old_masks = {name: mask.numpy() for name, mask in optimizer.masks.items()}
    harness.step()
    for name, mask in optimizer.masks.items():
      mask = mask.numpy()
      assert mask.sum() == counts[name]
      assert np.all(optimizer.kernels[name].numpy()[mask == 0] == 0)
      new = (mask == 1) & (old_masks[name] == 0)
      for slot in optimizer_slots.slots_of(optimizer.inner_optimizer,
                                           optimizer.kernels[name]):
        assert np.all(slot.numpy()[new] == 0)


# ----- set-up, checkpoints and errors ---------------------------------------------------


def test_initial_masks_are_exact_seeded_and_zero_the_kernels():
  model = dense_model(n_in=30, n_out=40, hidden=20)
  config = rigl.SparsityConfig(0.9, "erdos_renyi_kernel")
  first = rigl.Static(sgd(), model, config, seed=5)
  second = rigl.Static(sgd(), dense_model(30, 40, hidden=20), config, seed=5)
  for name, mask in first.masks.items():
    n = mask.numpy().size
    assert np.sum(mask.numpy() == 0) == int(np.floor(first.layer_sparsities[name] * n))
    np.testing.assert_array_equal(mask.numpy(), second.masks[name].numpy())
    assert np.all(first.kernels[name].numpy()[mask.numpy() == 0] == 0)


def test_layer_selection_rules():
  tf_keras.utils.set_random_seed(0)
  inputs = tf_keras.Input((8, 8, 3))
  x = tf_keras.layers.Conv2D(4, 3, name="first")(inputs)
  x = tf_keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
  x = tf_keras.layers.Conv2D(6, 1, name="pointwise")(x)
  x = tf_keras.layers.Flatten()(x)
  outputs = tf_keras.layers.Dense(3, name="last")(x)
  model = tf_keras.Model(inputs, outputs)
  optimizer = rigl.Static(sgd(), model, rigl.SparsityConfig(
      0.5, first_layer_sparsity=0.0, last_layer_sparsity=0.25))
  assert list(optimizer.masks) == ["pointwise", "last"]
  assert optimizer.layer_sparsities == {"pointwise": 0.5, "last": 0.25}
  with pytest.raises(ValueError, match="nowhere"):
    rigl.Static(sgd(), model, rigl.SparsityConfig(
        0.5, custom_sparsity_map={"nowhere": 0.5}))


def test_checkpoint_restores_masks_schedule_state_and_slots(tmp_path):
  def build():
    model = dense_model(hidden=9)
    optimizer = rigl.RigL(sgd(momentum=0.9), model, rigl.SparsityConfig(0.5),
                                schedule=schedule(0, 100, 3, 0.3))
    return model, optimizer

  model, optimizer = build()
  harness = Harness(model, optimizer)
  for _ in range(5):
    harness.step()
  path = tf.train.Checkpoint(model=model, optimizer=optimizer).save(str(tmp_path / "ckpt"))
  restored_model, restored = build()
  Harness(restored_model, restored).step()  # Builds the slots, then overwritten.
  tf.train.Checkpoint(model=restored_model, optimizer=restored).restore(
      path).assert_existing_objects_matched()
  assert int(restored.last_update_step.numpy()) == int(optimizer.last_update_step.numpy())
  assert int(restored.iterations.numpy()) == int(optimizer.iterations.numpy())
  for name in optimizer.masks:
    np.testing.assert_array_equal(restored.masks[name].numpy(),
                                  optimizer.masks[name].numpy())
  for ours, theirs in zip(restored.inner_optimizer.momentums,
                          optimizer.inner_optimizer.momentums):
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_works_with_model_fit_and_eager_calls():
  model = dense_model(hidden=9)
  optimizer = rigl.SET(tf_keras.optimizers.Adam(0.01), model,
                             rigl.SparsityConfig(0.5), schedule=schedule(0, 100, 2))
  model.compile(optimizer=optimizer, loss="mse")
  data = np.random.default_rng(0).standard_normal((32, 15)).astype(np.float32)
  model.fit(data, np.zeros((32, 25), np.float32), batch_size=8, epochs=1, verbose=0)
  assert int(optimizer.iterations.numpy()) == 4
  # An eager (untraced) call works too.
  grads = Harness(model, optimizer).gradients(data[:4])
  optimizer.apply_gradients(zip(grads, model.trainable_variables))
  assert int(optimizer.iterations.numpy()) == 5


@pytest.mark.parametrize("kwargs,message", [
    ({"training_method": "lottery"}, "training_method"),
    ({"grow_init": "ones"}, "grow_init"),
    ({"grow_init": "grad_scale", "training_method": "set"}, "grow_init"),
    ({"s_momentum": 1.5, "training_method": "momentum"}, "s_momentum"),
])
def test_bad_method_settings_raise(kwargs, message):
  kwargs = dict({"training_method": "rigl"}, **kwargs)
  with pytest.raises(ValueError, match=message):
    rigl.create_sparse_optimizer(optimizer=sgd(), model=dense_model(),
                                 sparsity=rigl.SparsityConfig(0.5), **kwargs)


def test_rejects_non_keras_optimizer():
  with pytest.raises(TypeError, match="tf_keras optimizer"):
    rigl.Static(object(), dense_model())


def test_dense_baseline_matches_plain_optimizer():
  plain_model, sparse_model = dense_model(seed=3), dense_model(seed=3)
  plain, dense = sgd(momentum=0.9), rigl.DenseTraining(sgd(momentum=0.9), sparse_model)
  assert not dense.masks
  x = np.ones((4, 15), np.float32)
  for model, optimizer in ((plain_model, plain), (sparse_model, dense)):
    harness = Harness(model, optimizer)
    for _ in range(3):
      harness.step(x)
  for a, b in zip(plain_model.get_weights(), sparse_model.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_training_method_registry_covers_the_original_methods():
  assert set(methods.TRAINING_METHODS) == {
      "baseline", "scratch", "set", "static", "momentum", "rigl", "snip", "dnw", "prune"}


def test_rigl_update_on_a_convolution_matches_numpy_reference():
  tf_keras.utils.set_random_seed(4)
  model = tf_keras.Sequential([tf_keras.Input((6, 6, 3)),
                               tf_keras.layers.Conv2D(5, 3, name=LAYER),
                               tf_keras.layers.Flatten()])
  kernel = model.get_layer(LAYER).kernel
  values = np.random.default_rng(2).permutation(np.linspace(0.01, 3.0, 3 * 3 * 3 * 5))
  kernel.assign(values.reshape(3, 3, 3, 5).astype(np.float32))
  optimizer = rigl.RigL(sgd(), model, rigl.SparsityConfig(0.7),
                              schedule=schedule(0, 100, 10, 0.4))
  harness = Harness(model, optimizer)
  before_kernel, before_mask = harness.kernel(), harness.mask()
  x = np.random.default_rng(3).standard_normal((4, 6, 6, 3)).astype(np.float32)
  grads = harness.step(x)
  expected = _expected_rigl_masks(before_kernel, before_mask, grads[0].numpy(), 0.4)
  np.testing.assert_array_equal(harness.mask(), expected)
  assert harness.mask().sum() == before_mask.sum()
