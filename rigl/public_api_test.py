"""The public API on user models: `rigl.sparsify`, kernel selection, `model.fit` and
restarts through `BackupAndRestore`, and the example script."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import rigl
from rigl import kernel_selection

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "train_cnn_with_rigl.py"
FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
N_IN, N_OUT, EXAMPLES, BATCH = 6, 3, 32, 4


class Block(tf_keras.layers.Layer):
  """A custom layer holding a Dense layer."""

  def __init__(self, units: int, **kwargs):
    super().__init__(**kwargs)
    self.inner = tf_keras.layers.Dense(units, activation="relu", name=f"{self.name}_dense")

  def call(self, inputs):
    return self.inner(inputs)


class Subclassed(tf_keras.Model):

  def __init__(self):
    super().__init__()
    self.hidden = tf_keras.layers.Dense(8, activation="relu", name="hidden")
    self.out = tf_keras.layers.Dense(N_OUT, name="out")

  def call(self, inputs):
    return self.out(self.hidden(inputs))


def build(kind: str, seed: int = 0) -> tf_keras.Model:
  """A built model of `kind`; its masked layers are `MASKED[kind]`."""
  tf_keras.utils.set_random_seed(seed)
  if kind == "sequential":
    return tf_keras.Sequential([
        tf_keras.Input((N_IN,)), tf_keras.layers.Dense(8, activation="relu", name="hidden"),
        tf_keras.layers.Dense(N_OUT, name="out")])
  if kind == "functional":
    inputs = tf_keras.Input((N_IN,))
    x = tf_keras.layers.Reshape((N_IN, 1, 1))(inputs)
    x = tf_keras.layers.Conv2D(4, (3, 1), activation="relu", name="conv")(x)
    x = tf_keras.layers.Flatten()(x)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(N_OUT, name="out")(x))
  if kind == "subclassed":
    model = Subclassed()
  else:
    model = tf_keras.Sequential([Block(8, name="block"),
                                 tf_keras.layers.Dense(N_OUT, name="out")])
  model(np.zeros((1, N_IN), np.float32))
  return model


MASKED = {"sequential": ["hidden", "out"], "functional": ["conv", "out"],
          "subclassed": ["hidden", "out"], "custom_layer": ["block_dense", "out"]}


def data():
  rng = np.random.default_rng(0)
  return (rng.standard_normal((EXAMPLES, N_IN)).astype(np.float32),
          rng.integers(0, N_OUT, EXAMPLES))


def compile_rigl(model, inner=None, **kwargs):
  optimizer = rigl.sparsify(
      model, inner or tf_keras.optimizers.SGD(0.1, momentum=0.9), method="rigl",
      sparsity=0.5, schedule=rigl.MaskUpdateSchedule(0, 1000, 3, 0.4), **kwargs)
  model.compile(optimizer=optimizer, loss=tf_keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  return optimizer


def fit(model, epochs=2, callbacks=()):
  model.fit(*data(), batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
            callbacks=list(callbacks))


# ----- training through model.fit -------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(MASKED))
def test_rigl_trains_any_kind_of_model_through_fit(kind):
  model = build(kind)
  optimizer = compile_rigl(model)
  assert list(optimizer.masks) == MASKED[kind]
  initial = {name: mask.numpy() for name, mask in optimizer.masks.items()}
  fit(model)
  batches = 2 * EXAMPLES // BATCH
  # Mask-update batches took no optimizer step.
  assert 0 < int(optimizer.iterations.numpy()) < batches
  changed = False
  for name, mask in optimizer.masks.items():
    mask = mask.numpy()
    assert mask.sum() == initial[name].sum()
    assert np.all(optimizer.kernels[name].numpy()[mask == 0] == 0)
    changed |= not np.array_equal(mask, initial[name])
  assert changed


def test_sparsify_builds_the_method_with_its_settings():
  model = build("sequential")
  optimizer = rigl.sparsify(model, tf_keras.optimizers.SGD(0.1), sparsity=0.8,
                            distribution="random", rigl_acc_scale=0.5, seed=3)
  assert isinstance(optimizer, rigl.RigL)
  assert optimizer.sparsity_config == rigl.SparsityConfig(0.8, "random")
  assert optimizer.layer_sparsities == {"hidden": 0.8, "out": 0.8}
  assert (optimizer.rigl_acc_scale, optimizer.seed) == (0.5, 3)
  config = rigl.SparsityConfig(0.5, "erdos_renyi", last_layer_sparsity=0.0)
  scratch = rigl.sparsify(build("sequential"), tf_keras.optimizers.SGD(0.1),
                          method="scratch", sparsity=config)
  assert type(scratch) is rigl.Static  # pylint: disable=unidiomatic-typecheck
  assert list(scratch.masks) == ["hidden"]
  with pytest.raises(ValueError, match="training_method"):
    rigl.sparsify(build("sequential"), tf_keras.optimizers.SGD(0.1), method="lottery")


# ----- choosing the kernels -------------------------------------------------------------


def mixed_model() -> tf_keras.Model:
  tf_keras.utils.set_random_seed(0)
  inputs = tf_keras.Input((8, 8, 3))
  x = tf_keras.layers.Conv2D(4, 3, name="stem")(inputs)
  x = tf_keras.layers.DepthwiseConv2D(3, name="block1_depthwise")(x)
  x = tf_keras.layers.Conv2D(6, 1, name="block1_pointwise")(x)
  x = tf_keras.layers.Flatten()(x)
  x = tf_keras.layers.Dense(5, name="block2_dense")(x)
  return tf_keras.Model(inputs, tf_keras.layers.Dense(3, name="head")(x))


@pytest.mark.parametrize("select,expected", [
    (None, ["stem", "block1_pointwise", "block2_dense", "head"]),
    (tf_keras.layers.Dense, ["block2_dense", "head"]),
    ((tf_keras.layers.Conv2D,), ["stem", "block1_pointwise"]),
    (rigl.KernelSelector(name_pattern=r"^block"), ["block1_pointwise", "block2_dense"]),
    (rigl.KernelSelector(layer_types=(tf_keras.layers.Dense,), name_pattern="dense"),
     ["block2_dense"]),
    (lambda layer: layer.kernel.shape[-1] > 4, ["block1_pointwise", "block2_dense"]),
    (rigl.KernelSelector(predicate=lambda layer: layer.name != "head"),
     ["stem", "block1_pointwise", "block2_dense"]),
    # Depthwise kernels are never selected.
    (tf_keras.layers.DepthwiseConv2D, []),
])
def test_kernels_are_selected_by_type_name_pattern_or_predicate(select, expected):
  model = mixed_model()
  assert [k.name for k in kernel_selection.find_kernels(model, select)] == expected
  optimizer = rigl.sparsify(model, tf_keras.optimizers.SGD(0.1), method="set",
                            sparsity=0.5, select=select)
  assert list(optimizer.masks) == expected
  by_flags = rigl.create_sparse_optimizer("scratch", tf_keras.optimizers.SGD(0.1),
                                          mixed_model(), rigl.SparsityConfig(0.5),
                                          select=select)
  assert list(by_flags.masks) == expected
  unmasked = {layer.name for layer in model.layers} - set(expected)
  for layer in model.layers:
    if layer.name in unmasked and getattr(layer, "kernel", None) is not None:
      assert np.all(layer.kernel.numpy() != 0)


def test_default_selection_is_unchanged():
  model = mixed_model()
  assert (kernel_selection.find_kernels(model) ==
          kernel_selection.find_kernels(model, kernel_selection.DEFAULT_LAYER_TYPES) ==
          kernel_selection.find_kernels(model, rigl.KernelSelector()))


def test_custom_layer_types_with_their_own_kernel_can_be_selected():

  class Scale(tf_keras.layers.Layer):

    def build(self, input_shape):
      self.kernel = self.add_weight("kernel", (input_shape[-1], input_shape[-1]))

    def call(self, inputs):
      return tf.matmul(inputs, self.kernel)

  tf_keras.utils.set_random_seed(0)
  model = tf_keras.Sequential([tf_keras.Input((N_IN,)), Scale(name="scale"),
                               tf_keras.layers.Dense(N_OUT, name="out")])
  optimizer = compile_rigl(model, select=(Scale, tf_keras.layers.Dense))
  assert list(optimizer.masks) == ["scale", "out"]
  fit(model, epochs=1)
  assert np.all(model.layers[0].kernel.numpy()[optimizer.masks["scale"].numpy() == 0] == 0)


@pytest.mark.parametrize("select,error,message", [
    (["Dense"], TypeError, "select"),
    (rigl.KernelSelector(layer_types=(tf_keras.layers.Flatten,)), ValueError, "kernel"),
])
def test_bad_selections_raise(select, error, message):
  with pytest.raises(error, match=message):
    rigl.sparsify(mixed_model(), tf_keras.optimizers.SGD(0.1), select=select)
  with pytest.raises(Exception, match="unterminated"):
    rigl.KernelSelector(name_pattern="(")


# ----- restarts -------------------------------------------------------------------------


class Interrupt(tf_keras.callbacks.Callback):

  def __init__(self, epoch: int):
    super().__init__()
    self.epoch = epoch

  def on_epoch_begin(self, epoch, logs=None):
    if epoch == self.epoch:
      raise RuntimeError("interrupted")


@pytest.mark.parametrize("inner", [
    lambda: tf_keras.optimizers.SGD(0.1, momentum=0.9),
    lambda: tf_keras.optimizers.legacy.Adam(0.01),
], ids=["sgd_momentum", "legacy_adam"])
def test_backup_and_restore_resumes_exactly(tmp_path, inner):
  """An interrupted, restarted `fit` ends where an uninterrupted one does."""
  epochs, interrupted_at = 4, 2

  def state(model, optimizer):
    return ({name: mask.numpy() for name, mask in optimizer.masks.items()},
            [variable.numpy() for variable in model.weights],
            [np.asarray(variable.numpy()) for variable in optimizer.variables])

  model = build("sequential")
  optimizer = compile_rigl(model, inner())
  fit(model, epochs)
  reference = state(model, optimizer)

  backup = str(tmp_path / "backup")
  model = build("sequential")
  optimizer = compile_rigl(model, inner())
  with pytest.raises(RuntimeError, match="interrupted"):
    fit(model, epochs, [tf_keras.callbacks.BackupAndRestore(backup),
                        Interrupt(interrupted_at)])
  masks_at_interruption = {name: mask.numpy() for name, mask in optimizer.masks.items()}
  # A new process: other initial weights, the masks the optimizer starts from.
  model = build("sequential", seed=1)
  optimizer = compile_rigl(model, inner())
  assert any(not np.array_equal(masks_at_interruption[name], mask.numpy())
             for name, mask in optimizer.masks.items())
  fit(model, epochs, [tf_keras.callbacks.BackupAndRestore(backup)])
  resumed = state(model, optimizer)
  for name, mask in reference[0].items():
    np.testing.assert_array_equal(resumed[0][name], mask)
  for ours, theirs in zip(resumed[1], reference[1]):
    np.testing.assert_array_equal(ours, theirs)
  # Step counter, last mask-update step and slots of the wrapped optimizer.
  assert len(resumed[2]) == len(reference[2])
  for ours, theirs in zip(resumed[2], reference[2]):
    np.testing.assert_array_equal(ours, theirs)


# ----- the example ----------------------------------------------------------------------


@pytest.mark.skipif(not FASHION_MNIST_DIR.exists(), reason="needs Fashion-MNIST files")
def test_example_script_trains_a_few_steps(tmp_path):
  result = subprocess.run(
      [sys.executable, str(EXAMPLE), "--steps=4", "--batch_size=16",
       "--mask_update_frequency=2", "--summary_freq=2", f"--log_dir={tmp_path}"],
      capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "test_accuracy" in result.stdout
  assert "masked_sparsity 0.9" in result.stdout
  assert list((tmp_path / "sparsity").glob("events.out.tfevents.*"))
