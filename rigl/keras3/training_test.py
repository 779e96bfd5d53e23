"""Training Keras 3 models with every method and option, on the configured backend.

run.sh runs this file under the TensorFlow and JAX backends (and PyTorch where torch
is installed); steps are jit-compiled where the backend compiles.
"""

import keras
import numpy as np
import pytest
import tf_keras
from keras import ops

import rigl
from rigl import methods as core_methods
from rigl import schedules
from rigl import sparsity as sparsity_lib

BATCH, EXAMPLES, FEATURES, CLASSES = 16, 64, 12, 3
BATCHES_PER_EPOCH = EXAMPLES // BATCH
JIT = keras.backend.backend() in ("tensorflow", "jax")
# Dynamic methods update every UPDATE_EVERY steps in these tests.
UPDATE_EVERY = 2


def model_and_data(seed=0):
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([
      keras.Input((FEATURES,)), keras.layers.Dense(24, activation="relu", name="hidden"),
      keras.layers.Dense(16, activation="relu", name="hidden2"),
      keras.layers.Dense(CLASSES, name="out")])
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1).astype(np.int32)
  return model, x, y


def compile_and_fit(model, optimizer, x, y, epochs=2, **fit_options):
  model.compile(optimizer=optimizer, jit_compile=JIT,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=False,
                   **fit_options)


def as_numpy(value):
  return np.asarray(ops.convert_to_numpy(value))


def dynamic_schedule():
  return rigl.MaskUpdateSchedule(end_step=1000, frequency=UPDATE_EVERY, drop_fraction=0.5)


METHOD_OPTIONS = {
    "baseline": {}, "scratch": {}, "set": {"schedule": dynamic_schedule()},
    "static": {"schedule": dynamic_schedule()},
    "momentum": {"schedule": dynamic_schedule(), "s_momentum": 0.8},
    "rigl": {"schedule": dynamic_schedule()}, "snip": {}, "dnw": {},
    "prune": {"pruning_begin_step": 0, "pruning_end_step": 6, "pruning_frequency": 2},
}


def test_every_registered_method_has_a_keras3_class():
  assert set(METHOD_OPTIONS) == set(rigl.TRAINING_METHODS)
  for name, definition in rigl.TRAINING_METHODS.items():
    cls = rigl.keras3.method_class(name)
    assert cls.definition is definition and cls.flag_name == name
    assert issubclass(cls, keras.optimizers.Optimizer)


@pytest.mark.parametrize("method", sorted(METHOD_OPTIONS))
def test_each_method_trains_with_fit(method):
  model, x, y = model_and_data()
  optimizer = rigl.sparsify(model, keras.optimizers.SGD(0.05, momentum=0.9), method,
                            sparsity=0.75, distribution="random",
                            **METHOD_OPTIONS[method])
  initial = {name: as_numpy(mask) for name, mask in optimizer.masks.items()}
  history = compile_and_fit(model, optimizer, x, y)
  assert np.all(np.isfinite(history.history["loss"]))
  if method == "baseline":
    assert optimizer.masks == {}
    return
  for name, mask in optimizer.masks.items():
    mask = as_numpy(mask)
    assert mask.mean() == pytest.approx(0.25, abs=0.02), name
    kernel = as_numpy(optimizer.kernels[name])
    assert np.all(kernel[mask == 0] == 0), name
    if optimizer.slots_follow_masks:
      for slot in optimizer.slots[name]:
        assert np.all(as_numpy(slot)[mask == 0] == 0), name
  changed = any(np.any(as_numpy(optimizer.masks[n]) != initial[n]) for n in initial)
  assert changed == (method not in ("scratch", "static"))


@pytest.mark.parametrize("method", sorted(set(METHOD_OPTIONS) - {"baseline"}))
def test_each_method_keeps_whole_blocks_of_dense_block_masks(method):
  """Masks in blocks of 4 consecutive inputs stay in blocks through `fit`'s updates."""
  block = 4
  model, x, y = model_and_data()
  config = rigl.SparsityConfig(0.75, "random", dense_block_size=block)
  optimizer = rigl.sparsify(model, keras.optimizers.SGD(0.05, momentum=0.9), method,
                            config, **METHOD_OPTIONS[method])
  initial = {name: as_numpy(mask) for name, mask in optimizer.masks.items()}
  compile_and_fit(model, optimizer, x, y)
  for name, mask in optimizer.masks.items():
    mask = as_numpy(mask)
    grouped = mask.reshape(mask.shape[0] // block, block, mask.shape[1])
    assert np.all(grouped == grouped[:, :1]), f"{name}: a block is partly masked"
    blocks = grouped[:, 0]
    if method != "prune":
      assert blocks.size - blocks.sum() == np.floor(0.75 * blocks.size), name
    assert np.all(as_numpy(optimizer.kernels[name])[mask == 0] == 0), name
  changed = any(np.any(as_numpy(optimizer.masks[n]) != initial[n]) for n in initial)
  assert changed == (method not in ("scratch", "static"))


def simulated_schedule(calls: int, replaces_step: bool) -> tuple[int, int]:
  """(steps taken, last update step) by the schedule's rule, in plain Python."""
  step, last_update = 0, -UPDATE_EVERY
  for _ in range(calls):
    if replaces_step and last_update + UPDATE_EVERY <= step:
      last_update = step
      continue
    step += 1
    if not replaces_step and last_update + UPDATE_EVERY <= step:
      last_update = step
  return step, last_update


def test_rigl_updates_replace_steps_and_other_updates_follow_them():
  for method, replaces_step in (("rigl", True), ("set", False)):
    model, x, y = model_and_data()
    optimizer = rigl.sparsify(model, keras.optimizers.SGD(0.05), method, sparsity=0.75,
                              distribution="random", schedule=dynamic_schedule())
    compile_and_fit(model, optimizer, x, y)
    expected = simulated_schedule(2 * BATCHES_PER_EPOCH, replaces_step)
    assert (int(as_numpy(optimizer.iterations)),
            int(as_numpy(optimizer.schedule_state))) == expected, method


OPTIMIZERS = {
    "sgd_momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.01),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.01, momentum=0.5),
    "adagrad": lambda: keras.optimizers.Adagrad(0.05),
    "lion": lambda: keras.optimizers.Lion(0.001),
    "nadam": lambda: keras.optimizers.Nadam(0.01),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_slots_are_zeroed_at_dropped_and_new_connections(name):
  """After an update that replaced the step, no slot carries momentum into a change."""
  model, x, y = model_and_data()
  optimizer = rigl.sparsify(model, OPTIMIZERS[name](), "rigl", sparsity=0.75,
                            distribution="random", schedule=dynamic_schedule())
  # One epoch of steps gives every slot values, then one update call.
  compile_and_fit(model, optimizer, x, y, epochs=1)
  before = {n: as_numpy(m) for n, m in optimizer.masks.items()}
  slots_before = {n: [as_numpy(s) for s in optimizer.slots[n]] for n in before}
  rng = np.random.default_rng(1)
  grads = [ops.convert_to_tensor(rng.normal(size=tuple(kernel.shape)).astype(np.float32))
           for kernel in optimizer.kernels.values()]
  optimizer.update_masks(grads)
  for layer, old in before.items():
    new = as_numpy(optimizer.masks[layer])
    assert np.any(new != old), layer
    kernel = as_numpy(optimizer.kernels[layer])
    assert np.all(kernel[new == 0] == 0)
    new_connections = (new == 1) & (old == 0)
    kept = (new == 1) & (old == 1)
    for slot, slot_before in zip(optimizer.slots[layer], slots_before[layer]):
      slot = as_numpy(slot)
      assert np.all(slot[new == 0] == 0) and np.all(slot[new_connections] == 0)
      np.testing.assert_array_equal(slot[kept], slot_before[kept])


class DriftingSGD(keras.optimizers.SGD):
  """SGD that also moves every weight by a constant: zeros do not stay zero."""

  DRIFT = 1e-3

  def update_step(self, gradient, variable, learning_rate):
    super().update_step(gradient, variable, learning_rate)
    variable.assign(variable + self.DRIFT)


def test_masks_are_reapplied_after_the_step_of_an_optimizer_that_moves_zeros():
  model, x, y = model_and_data()
  optimizer = rigl.sparsify(model, DriftingSGD(0.05), "set", sparsity=0.75,
                            distribution="random", schedule=dynamic_schedule())
  compile_and_fit(model, optimizer, x, y)
  for name, mask in optimizer.masks.items():
    mask = as_numpy(mask)
    kernel = as_numpy(optimizer.kernels[name])
    assert np.all(kernel[mask == 0] == 0) and np.all(kernel[mask == 1] != 0)
  bias = as_numpy(model.get_layer("out").bias)
  assert np.all(bias != 0)  # The drift reached the unmasked variables.


@pytest.mark.parametrize("config", [
    sparsity_lib.SparsityConfig(0.8, "erdos_renyi"),
    sparsity_lib.SparsityConfig(0.8, "erdos_renyi_kernel", erk_power_scale=0.5),
    sparsity_lib.SparsityConfig(0.8, "erdos_renyi_kernel", custom_sparsity_map={
        "hidden2": 0.3}),
    sparsity_lib.SparsityConfig(0.8, "random", first_layer_sparsity=0.0,
                                last_layer_sparsity=0.5),
])
def test_distributions_and_layer_rules_match_the_core(config):
  model, _, _ = model_and_data()
  core_model = tf_keras.Sequential([
      tf_keras.Input((FEATURES,)), tf_keras.layers.Dense(24, name="hidden"),
      tf_keras.layers.Dense(16, name="hidden2"), tf_keras.layers.Dense(CLASSES,
                                                                      name="out")])
  keras3_optimizer = rigl.sparsify(model, keras.optimizers.SGD(0.1), "set", config)
  core_optimizer = rigl.sparsify(core_model, tf_keras.optimizers.SGD(0.1), "set", config)
  assert keras3_optimizer.layer_sparsities == core_optimizer.layer_sparsities
  for name, mask in core_optimizer.masks.items():
    np.testing.assert_array_equal(as_numpy(keras3_optimizer.masks[name]), mask.numpy())


@pytest.mark.parametrize("grow_init", ["zeros", "initial_dist", "random_normal_2",
                                       "random_uniform", "grad_sign_4"])
def test_grow_init_values_of_new_connections(grow_init):
  model, _, _ = model_and_data()
  # The dense kernels before sparsify (initial_dist draws from them).
  initial_kernels = {layer.name: as_numpy(layer.kernel) for layer in model.layers}
  optimizer = rigl.sparsify(model, keras.optimizers.SGD(0.1), "rigl", sparsity=0.75,
                            distribution="random", grow_init=grow_init,
                            schedule=dynamic_schedule())
  optimizer.build(model.trainable_variables)
  before = {n: as_numpy(m) for n, m in optimizer.masks.items()}
  grads = {n: np.random.default_rng(2).normal(size=tuple(k.shape)).astype(np.float32)
           for n, k in optimizer.kernels.items()}
  optimizer.update_masks([ops.convert_to_tensor(grads[n]) for n in optimizer.kernels])
  for name, old in before.items():
    new_connections = (as_numpy(optimizer.masks[name]) == 1) & (old == 0)
    values = as_numpy(optimizer.kernels[name])[new_connections]
    assert values.size > 0
    if grow_init == "zeros":
      assert np.all(values == 0)
    elif grow_init == "initial_dist":
      assert np.all(np.isin(values, initial_kernels[name]))
    elif grow_init == "grad_sign_4":
      np.testing.assert_array_equal(values, np.sign(grads[name][new_connections]) / 4)
    else:
      assert np.all(values != 0) and np.std(values) > 0


def test_rigl_rejects_no_grow_init_other_methods_reject_gradient_ones():
  model, _, _ = model_and_data()
  with pytest.raises(ValueError, match="grow_init"):
    rigl.sparsify(model, keras.optimizers.SGD(0.1), "set", grow_init="grad_scale")


@pytest.mark.parametrize("anneal", ["constant", "cosine", "exponential_3"])
def test_drop_fraction_schedules_equal_the_core_arithmetic(anneal):
  schedule = rigl.MaskUpdateSchedule(begin_step=10, end_step=110, frequency=10,
                                     drop_fraction=0.4, drop_fraction_anneal=anneal)
  for step in range(0, 130, 7):
    keras_value = as_numpy(schedule.drop_fraction_at(ops.convert_to_tensor(step), ops))
    core_value = schedule.drop_fraction_at(step).numpy()
    assert keras_value == pytest.approx(core_value, rel=1e-6), step
    assert bool(as_numpy(schedule.is_update_step(ops.convert_to_tensor(step),
                                                 ops.convert_to_tensor(step - 10), ops))) \
        == bool(schedule.is_update_step(step, step - 10).numpy())
  ramp = schedules.PolynomialSparsity(0, 100, 10)
  for step in range(0, 120, 9):
    assert as_numpy(ramp.sparsity_at(ops.convert_to_tensor(step), 0.9, ops)) == \
        pytest.approx(ramp.sparsity_at(step, 0.9).numpy(), rel=1e-6)


# ----- bad input ------------------------------------------------------------------------


def test_a_tf_keras_optimizer_with_a_keras3_model_is_refused():
  model, _, _ = model_and_data()
  with pytest.raises(TypeError, match="tf_keras .* optimizer of the model's Keras"):
    rigl.sparsify(model, tf_keras.optimizers.SGD(0.1))


def test_a_keras3_optimizer_with_a_tf_keras_model_is_refused():
  core_model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3)])
  with pytest.raises(TypeError, match="Keras 3 one: use the optimizer of the model's"):
    rigl.sparsify(core_model, keras.optimizers.SGD(0.1))


def test_the_tf_keras_classes_refuse_a_keras3_model():
  model, _, _ = model_and_data()
  with pytest.raises(TypeError, match="rigl.keras3.RigL"):
    core_methods.RigL(tf_keras.optimizers.SGD(0.1), model)


def test_a_layer_without_a_kernel_cannot_be_selected():
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((5, 4)), keras.layers.LSTM(3, name="lstm"),
                            keras.layers.Dense(2, name="out")])
  with pytest.raises(ValueError, match="'lstm' was selected .* no `kernel`"):
    rigl.sparsify(model, keras.optimizers.SGD(0.1), select=keras.layers.LSTM)


def test_unknown_options_and_backends_are_refused(monkeypatch):
  model, _, _ = model_and_data()
  with pytest.raises(ValueError, match="Unknown method options"):
    rigl.sparsify(model, keras.optimizers.SGD(0.1), "rigl", drop_fractoin=0.3)
  with pytest.raises(TypeError, match="takes no option"):
    rigl.keras3.SET(keras.optimizers.SGD(0.1), model, s_momentum=0.9)
  with pytest.raises(ValueError, match="s_momentum"):
    rigl.sparsify(model, keras.optimizers.SGD(0.1), "momentum", s_momentum=2.0)
  monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
  with pytest.raises(ValueError, match="KERAS_BACKEND to one of tensorflow, jax, torch"):
    rigl.sparsify(model, keras.optimizers.SGD(0.1))
