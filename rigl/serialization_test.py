"""Sparse optimizers round-trip through Keras serialization, with their masks.

`get_config` records the wrapped optimizer, the sparsity settings, every method option
(schedules included) and the sparsified kernels' names; `from_config` rebuilds the
optimizer, which creates its masks when `build` meets those kernels. A compiled model
saved as `.keras` therefore loads with its masks and method state, and trains on from
there exactly as the original does.
"""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras

import rigl
from rigl import methods

INPUTS, HIDDEN, OUTPUTS, EXAMPLES, BATCH = 8, 16, 4, 32, 8
# Non-default values of every option, so that a dropped option shows.
OPTIONS = dict(
    schedule=rigl.MaskUpdateSchedule(begin_step=1, end_step=30, frequency=2,
                                     drop_fraction=0.4, drop_fraction_anneal="cosine"),
    grow_init="random_normal", s_momentum=0.8, rigl_acc_scale=0.5, pruning_begin_step=1,
    pruning_end_step=5, pruning_frequency=2, threshold_decay=0.1)
SPARSITY = rigl.SparsityConfig(0.6, "erdos_renyi_kernel", erk_power_scale=0.9,
                               custom_sparsity_map={"hidden": 0.5})


def mlp() -> tf_keras.Model:
  return tf_keras.Sequential([tf_keras.Input((INPUTS,)),
                              tf_keras.layers.Dense(HIDDEN, name="hidden"),
                              tf_keras.layers.Dense(OUTPUTS, name="logits")])


def sparse_optimizer(method: str, model: tf_keras.Model) -> rigl.SparseOptimizer:
  return rigl.create_sparse_optimizer(
      method, tf_keras.optimizers.SGD(0.1, momentum=0.9), model, SPARSITY, seed=7,
      **OPTIONS)


def data():
  rng = np.random.default_rng(0)
  return (rng.normal(size=(EXAMPLES, INPUTS)).astype(np.float32),
          rng.normal(size=(EXAMPLES, OUTPUTS)).astype(np.float32))


@pytest.mark.parametrize("method", list(methods.TRAINING_METHODS))
def test_config_round_trips_every_option(method):
  optimizer = sparse_optimizer(method, mlp())
  config = optimizer.get_config()
  restored = type(optimizer).from_config(config)
  assert restored.get_config() == config
  assert restored.sparsity_config == SPARSITY
  for option in type(optimizer).options():
    assert getattr(restored, option) == getattr(optimizer, option), option
  # Every option given above reached the optimizer (not only its defaults).
  for option, value in OPTIONS.items():
    if option in type(optimizer).options():
      assert getattr(optimizer, option) == value, option


def test_restored_optimizer_refuses_another_model():
  config = sparse_optimizer("rigl", mlp()).get_config()
  other = tf_keras.Sequential([tf_keras.Input((INPUTS,)),
                               tf_keras.layers.Dense(OUTPUTS, name="other")])
  restored = rigl.RigL.from_config(config)
  with pytest.raises(ValueError, match="hidden/kernel"):
    restored.build(other.trainable_variables)


@pytest.mark.parametrize("method", ["rigl", "snip", "prune", "momentum"])
def test_saved_model_loads_with_masks_and_trains_on_identically(method, tmp_path):
  tf_keras.utils.set_random_seed(1)
  model = mlp()
  model.compile(optimizer=sparse_optimizer(method, model), loss="mse")
  features, targets = data()
  model.fit(features, targets, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = tf_keras.models.load_model(path)
  assert type(loaded.optimizer) is type(model.optimizer)
  assert loaded.optimizer.get_config() == model.optimizer.get_config()
  original_state = [v.numpy() for v in model.optimizer.variables]
  assert len(original_state) == len(loaded.optimizer.variables)
  for before, after in zip(original_state, loaded.optimizer.variables):
    np.testing.assert_array_equal(before, after.numpy())
  masks = {name: mask.numpy() for name, mask in model.optimizer.masks.items()}
  assert set(masks) == {"hidden", "logits"}
  if method != "prune":  # Pruning starts dense: its masks are all ones this early.
    assert all(mask.mean() < 1 for mask in masks.values())
  # Both go on training the same way: masks, state and slots were all restored.
  for each in (model, loaded):
    each.fit(features, targets, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
  for before, after in zip(model.variables, loaded.variables):
    np.testing.assert_array_equal(before.numpy(), after.numpy())
  for before, after in zip(model.optimizer.variables, loaded.optimizer.variables):
    np.testing.assert_array_equal(before.numpy(), after.numpy())
