"""Masks and schedule state travel with the model: `.keras`, weights files, backups."""

import keras
import numpy as np
import pytest
from keras import ops

import rigl

BATCH, EXAMPLES, FEATURES, CLASSES = 16, 64, 10, 3
EPOCHS, INTERRUPTED_AFTER = 4, 2
JIT = keras.backend.backend() in ("tensorflow", "jax")


def data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32)
  return x, (x[:, 0] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)


def sparse_model(method="rigl"):
  """A compiled model with a sparse optimizer, built the same way every time."""
  keras.utils.set_random_seed(0)
  model = keras.Sequential([
      keras.Input((FEATURES,)), keras.layers.Dense(20, activation="relu", name="hidden"),
      keras.layers.Dense(CLASSES, name="out")])
  optimizer = rigl.sparsify(
      model, keras.optimizers.Adam(0.01), method, sparsity=0.7, distribution="random",
      schedule=rigl.MaskUpdateSchedule(end_step=1000, frequency=3, drop_fraction=0.4))
  model.compile(optimizer=optimizer, jit_compile=JIT,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model, optimizer


def fit(model, epochs, **options):
  x, y = data()
  model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=False, **options)


def state_of(model) -> dict[str, np.ndarray]:
  """Every model and optimizer value, by a stable name."""
  optimizer = model.optimizer
  state = {"model/" + "/".join(v.path.split("/")[-2:]): v for v in model.weights}
  state.update({f"mask/{n}": m for n, m in optimizer.masks.items()})
  state.update({f"slot{i}/{n}": s for n, slots in optimizer.slots.items()
                for i, s in enumerate(slots)})
  state["last_update"] = optimizer.schedule_state
  state["iterations"] = optimizer.iterations
  return {name: np.asarray(ops.convert_to_numpy(value)) for name, value in state.items()}


def assert_same_state(first, second):
  assert first.keys() == second.keys()
  for name in first:
    np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_keras_file_round_trip_restores_masks_schedule_and_slots(tmp_path):
  model, optimizer = sparse_model()
  fit(model, 2)
  path = str(tmp_path / "sparse.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  assert type(loaded.optimizer) is type(optimizer)
  assert loaded.optimizer.get_config() == optimizer.get_config()
  assert_same_state(state_of(model), state_of(loaded))
  # Training on from the file is training on in the same process.
  fit(model, 1)
  fit(loaded, 1)
  assert_same_state(state_of(model), state_of(loaded))
  masks = state_of(model)
  assert any(np.any(masks[f"mask/{n}"] != m)
             for n, m in optimizer.initial_masks().items())


def test_weights_files_carry_the_optimizer_state(tmp_path):
  model, _ = sparse_model("momentum")
  fit(model, 2)
  path = str(tmp_path / "sparse.weights.h5")
  model.save_weights(path)
  restored, _ = sparse_model("momentum")
  restored.optimizer.build(restored.trainable_variables)
  restored.load_weights(path)
  assert_same_state(state_of(model), state_of(restored))
  np.testing.assert_array_equal(
      ops.convert_to_numpy(model.optimizer.gradient_averages["hidden"]),
      ops.convert_to_numpy(restored.optimizer.gradient_averages["hidden"]))


class StopAfterEpoch(keras.callbacks.Callback):
  """Interrupts training at an epoch boundary, as a killed job would be."""

  def __init__(self, epoch: int):
    super().__init__()
    self.epoch = epoch

  def on_epoch_end(self, epoch, logs=None):
    if epoch + 1 == self.epoch:
      raise KeyboardInterrupt


def test_backup_and_restore_resumes_to_the_uninterrupted_run_bitwise(tmp_path):
  uninterrupted, _ = sparse_model()
  fit(uninterrupted, EPOCHS)

  backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
  first_try, _ = sparse_model()
  with pytest.raises(KeyboardInterrupt):
    fit(first_try, EPOCHS, callbacks=[backup, StopAfterEpoch(INTERRUPTED_AFTER)])
  resumed, _ = sparse_model()
  fit(resumed, EPOCHS, callbacks=[keras.callbacks.BackupAndRestore(
      str(tmp_path / "backup"))])
  assert_same_state(state_of(uninterrupted), state_of(resumed))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="tf.train.Checkpoint needs the TensorFlow backend")
def test_tensorflow_checkpoints_carry_masks(tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  model, optimizer = sparse_model()
  fit(model, 1)
  prefix = tf.train.Checkpoint(model=model, optimizer=optimizer).save(
      str(tmp_path / "ckpt"))
  restored, restored_optimizer = sparse_model()
  restored_optimizer.build(restored.trainable_variables)
  tf.train.Checkpoint(model=restored, optimizer=restored_optimizer).restore(
      prefix).assert_existing_objects_matched()
  assert_same_state(state_of(model), state_of(restored))
