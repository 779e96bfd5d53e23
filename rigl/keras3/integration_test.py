"""The library's tools on Keras 3 models: `SparsitySummaries` in `fit`, FLOPs and size
accounting, and SavedModel / TFLite export, on whichever backend KERAS_BACKEND names.

Expectations come from the tf_keras code paths (a tf_keras model of the same shapes)
and from NumPy computations on masks recorded by a plain Keras 3 callback.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import keras
import tf_keras

import rigl
from rigl import callbacks_test
from rigl import export
from rigl import flops
from rigl import kernel_selection

BATCH, BATCHES_PER_EPOCH = callbacks_test.BATCH, callbacks_test.BATCHES_PER_EPOCH
LAYERS = callbacks_test.LAYERS
UPDATE_FREQUENCY = 2
WRITE_EVERY = 3
SPARSITY = 0.6
EXPORT_SPARSITY = 0.9
OUTPUT_ATOL = 1e-5
# The sparse flatbuffer must be at most this fraction of the dense one.
MAX_SPARSE_TO_DENSE_BYTES = 0.25
IMAGE_SHAPE = (6, 6, 1)
# Wide enough that TFLite's sparse encoding pays for itself.
EXPORT_INPUTS, EXPORT_HIDDEN, EXPORT_CLASSES = 64, 256, 10
TENSORFLOW_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                     reason="SavedModel and TFLite need TensorFlow")
OTHER_BACKENDS_ONLY = pytest.mark.skipif(keras.backend.backend() == "tensorflow",
                                         reason="the TensorFlow backend exports")
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")


def cnn(seed: int = 0) -> keras.Model:
  """`callbacks_test.cnn` in Keras 3: the same layers, names and shapes."""
  keras.utils.set_random_seed(seed)
  return keras.Sequential([
      keras.Input(IMAGE_SHAPE),
      keras.layers.Conv2D(4, 3, name="conv"),
      keras.layers.Flatten(),
      keras.layers.Dense(8, activation="relu", name="hidden"),
      keras.layers.Dense(3, name="out"),
  ])


def compile_rigl(model: keras.Model) -> rigl.keras3.SparseOptimizer:
  optimizer = rigl.sparsify(
      model, keras.optimizers.SGD(0.1, momentum=0.9), method="rigl", sparsity=SPARSITY,
      schedule=rigl.MaskUpdateSchedule(0, 100, UPDATE_FREQUENCY, 0.4))
  model.compile(optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return optimizer


def fit(model: keras.Model, epochs: int, callback_list) -> None:
  images, labels = callbacks_test.data()
  model.fit(images, labels, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
            callbacks=list(callback_list))


def event_tags(log_dir) -> set[str]:
  """Every tag written under `log_dir`, images included."""
  return {value.tag for path in log_dir.glob("events.out.tfevents.*")
          for event in tf.compat.v1.train.summary_iterator(str(path))
          for value in event.summary.value}


class Recorder(keras.callbacks.Callback):
  """The masks and optimizer step after every batch, read as Keras' callbacks read."""

  def __init__(self, optimizer: rigl.keras3.SparseOptimizer):
    super().__init__()
    self.masks = [self._masks(optimizer)]
    self.steps = [int(keras.ops.convert_to_numpy(optimizer.iterations))]

  @staticmethod
  def _masks(optimizer) -> dict[str, np.ndarray]:
    return {name: keras.ops.convert_to_numpy(mask) > 0
            for name, mask in optimizer.masks.items()}

  def on_train_batch_end(self, batch, logs=None):
    optimizer = self.model.optimizer  # `model` writes JAX's state back first.
    self.masks.append(self._masks(optimizer))
    self.steps.append(int(keras.ops.convert_to_numpy(optimizer.iterations)))


# ----- SparsitySummaries --------------------------------------------------------------


def test_summaries_write_the_tags_of_a_tf_keras_run(tmp_path):
  model = cnn()
  compile_rigl(model)
  fit(model, 1, [rigl.SparsitySummaries(tmp_path / "keras3", update_freq=UPDATE_FREQUENCY,
                                        batch_size=BATCH, mask_images=True)])
  reference = callbacks_test.cnn()
  callbacks_test.compile_rigl(reference)
  callbacks_test.fit(reference, epochs=1, callback_list=[rigl.SparsitySummaries(
      tmp_path / "tf_keras", update_freq=UPDATE_FREQUENCY, batch_size=BATCH,
      mask_images=True)])
  tags = event_tags(tmp_path / "keras3")
  assert tags == event_tags(tmp_path / "tf_keras")
  assert {"drop_fraction", "inference_flops", "mask/conv"} <= tags
  writes = callbacks_test.read_events(tmp_path / "keras3")
  assert len(writes) == BATCHES_PER_EPOCH // UPDATE_FREQUENCY


def test_summaries_equal_a_numpy_computation_from_recorded_masks(tmp_path):
  model = cnn()
  optimizer = compile_rigl(model)
  recorder = Recorder(optimizer)
  initial = recorder.masks[0]
  fit(model, 2, [recorder, rigl.SparsitySummaries(tmp_path, update_freq=WRITE_EVERY,
                                                  batch_size=BATCH)])
  writes = callbacks_test.read_events(tmp_path)
  assert len(writes) == 2 * BATCHES_PER_EPOCH // WRITE_EVERY
  # FLOPs as the tf_keras path counts the same-shaped tf_keras model.
  specs = flops.layer_specs(callbacks_test.cnn())
  dense_flops = flops.count(specs, {}).flops
  training_flops = 0.0
  for batch in range(1, len(recorder.masks)):
    now = recorder.masks[batch]
    sparse_flops = flops.count(
        specs, {name: 1 - float(np.mean(mask)) for name, mask in now.items()}).flops
    stepped = recorder.steps[batch] > recorder.steps[batch - 1]
    training_flops += 3 * sparse_flops if stepped else 2 * sparse_flops + dense_flops
    if batch % WRITE_EVERY:
      continue
    step, scalars = writes[batch // WRITE_EVERY - 1]
    before = recorder.masks[batch - WRITE_EVERY]
    assert step == recorder.steps[batch]
    total_grown = total_new = total_active = 0
    for layer in LAYERS:
      grown = int(np.sum(now[layer] & ~before[layer]))
      new = int(np.sum(now[layer] & ~initial[layer]))
      active = int(np.sum(now[layer]))
      assert scalars[f"grown/{layer}"] == grown
      assert scalars[f"dropped/{layer}"] == int(np.sum(before[layer] & ~now[layer]))
      assert scalars[f"mask_churn/{layer}"] == pytest.approx(new / active)
      assert scalars[f"density/{layer}"] == pytest.approx(np.mean(now[layer]))
      assert scalars[f"sparsity/{layer}"] == pytest.approx(1 - np.mean(now[layer]))
      total_grown += grown
      total_new += new
      total_active += active
    assert scalars["grown"] == scalars["dropped"] == total_grown
    assert scalars["mask_churn"] == pytest.approx(total_new / total_active)
    size = sum(mask.size for mask in now.values())
    assert scalars["global_sparsity"] == pytest.approx(1 - total_active / size)
    assert scalars["drop_fraction"] == pytest.approx(
        float(optimizer.schedule.drop_fraction_at(step)))
    assert scalars["inference_flops"] == pytest.approx(sparse_flops)
    assert scalars["training_flops_per_example"] == pytest.approx(training_flops)
    assert scalars["training_flops"] == pytest.approx(BATCH * training_flops)
  # RigL really rewired, and its update batches took no optimizer step.
  assert writes[-1][1]["mask_churn"] > 0
  assert recorder.steps[-1] < len(recorder.masks) - 1


def test_summaries_write_at_epoch_ends_by_default(tmp_path):
  model = cnn()
  compile_rigl(model)
  fit(model, 2, [rigl.SparsitySummaries(tmp_path)])
  writes = callbacks_test.read_events(tmp_path)
  assert len(writes) == 2
  assert writes[-1][0] == int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def test_summaries_need_a_sparse_optimizer(tmp_path):
  model = cnn()
  model.compile(optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  with pytest.raises(TypeError, match="sparse optimizer"):
    fit(model, 1, [rigl.SparsitySummaries(tmp_path)])


# ----- FLOPs and size accounting ------------------------------------------------------


def _mobile_block(layers):
  """Layers of a small MobileNet-like model in the Keras module `layers`."""
  return [layers.Conv2D(8, 3, strides=2, padding="same", name="stem"),
          layers.DepthwiseConv2D(3, padding="same", name="depthwise"),
          layers.Conv2D(16, 1, name="pointwise"),
          layers.Conv2D(8, 3, padding="valid", name="valid"),
          layers.GlobalAveragePooling2D(),
          layers.Dense(10, name="logits")]


def twin_models(seed: int = 0) -> tuple[keras.Model, tf_keras.Model]:
  """The same model in Keras 3 and in tf_keras (same names, shapes and weights).

  The Keras 3 model nests its body in an inner model, which must be searched too.
  """
  shape = (15, 15, 3)
  keras.utils.set_random_seed(seed)
  inner = keras.Sequential([keras.Input(shape)] + _mobile_block(keras.layers),
                           name="body")
  model = keras.Sequential([keras.Input(shape), inner])
  twin = tf_keras.Sequential([tf_keras.Input(shape)] + _mobile_block(tf_keras.layers))
  twin.set_weights(model.get_weights())
  return model, twin


def test_layer_specs_equal_those_of_the_same_tf_keras_model():
  model, twin = twin_models()
  specs = flops.layer_specs(model)
  assert specs == flops.layer_specs(twin)
  assert [spec.kind for spec in specs] == [flops.CONV, flops.DEPTHWISE, flops.CONV,
                                           flops.CONV, flops.DENSE]
  # Model order, which the first- and last-layer sparsity rules rely on.
  assert ([layer.name for layer in kernel_selection.find_kernels(model)]
          == [layer.name for layer in kernel_selection.find_kernels(twin)])
  config = rigl.SparsityConfig(0.8, "erdos_renyi_kernel")
  assert (flops.account(specs, config, flops.DENSE_GRADIENT_ON_UPDATES).as_dict()
          == flops.account(flops.layer_specs(twin), config,
                           flops.DENSE_GRADIENT_ON_UPDATES).as_dict())


def test_size_accounting_and_global_sparsity_of_a_sparsified_model():
  model, twin = twin_models()
  optimizer = rigl.sparsify(model, keras.optimizers.SGD(0.1), method="static",
                            sparsity=SPARSITY, distribution="random")
  twin.set_weights(model.get_weights())
  dense, sparse = export.size_accounting(model)
  twin_dense, twin_sparse = export.size_accounting(twin)
  assert dense == twin_dense and sparse == twin_sparse
  assert sparse.sparsity > 0
  masks = {name: keras.ops.convert_to_numpy(mask) for name, mask in optimizer.masks.items()}
  zeros = sum(int(np.sum(mask == 0)) for mask in masks.values())
  assert kernel_selection.global_sparsity(model, optimizer.kernels, optimizer.masks) == (
      pytest.approx(zeros / sum(mask.size for mask in masks.values())))
  assert export.kernel_sparsities(model) == pytest.approx(
      {name: float(np.mean(mask == 0)) for name, mask in masks.items()})


# ----- export -------------------------------------------------------------------------


def sparse_mlp() -> keras.Model:
  """An MLP sparsified by `scratch`, with non-zero biases as trained ones are."""
  keras.utils.set_random_seed(0)
  model = keras.Sequential([
      keras.Input((EXPORT_INPUTS,)),
      keras.layers.Dense(EXPORT_HIDDEN, activation="relu", name="hidden"),
      keras.layers.Dense(EXPORT_CLASSES, name="logits")])
  rigl.sparsify(model, keras.optimizers.SGD(0.1), method="static",
                sparsity=EXPORT_SPARSITY, distribution="random")
  rng = np.random.default_rng(0)
  for layer in model.layers:
    layer.bias.assign(rng.standard_normal(layer.bias.shape).astype(np.float32))
  return model


def _inputs() -> np.ndarray:
  return np.random.default_rng(1).random((BATCH, EXPORT_INPUTS), dtype=np.float32)


@TENSORFLOW_ONLY
def test_saved_model_serves_the_keras3_model(tmp_path):
  model = sparse_mlp()
  size = export.export_saved_model(model, str(tmp_path / "saved"))
  assert size > 0
  serve = tf.saved_model.load(str(tmp_path / "saved")).signatures[export.SIGNATURE_KEY]
  inputs = _inputs()
  np.testing.assert_allclose(
      serve(**{export.INPUT_NAME: tf.constant(inputs)})[export.OUTPUT_NAME].numpy(),
      keras.ops.convert_to_numpy(model(inputs, training=False)), atol=OUTPUT_ATOL)


@TENSORFLOW_ONLY
def test_tflite_of_the_keras3_model_is_sparse_and_matches_it(tmp_path):
  model = sparse_mlp()
  sparse_path, dense_path = tmp_path / "sparse.tflite", tmp_path / "dense.tflite"
  sparse_bytes = export.export_tflite(model, str(sparse_path))
  dense_bytes = export.export_tflite(model, str(dense_path), sparse=False)
  assert sparse_bytes == sparse_path.stat().st_size
  assert sparse_bytes <= MAX_SPARSE_TO_DENSE_BYTES * dense_bytes, (sparse_bytes,
                                                                    dense_bytes)
  assert export.tflite_flatbuffer(model) == sparse_path.read_bytes()
  inputs = _inputs()
  expected = keras.ops.convert_to_numpy(model(inputs, training=False))
  for path in (sparse_path, dense_path):
    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=1)
    logits = interpreter.get_signature_runner()(**{export.INPUT_NAME: inputs})
    np.testing.assert_allclose(logits[export.OUTPUT_NAME], expected, atol=OUTPUT_ATOL)


@OTHER_BACKENDS_ONLY
@pytest.mark.parametrize("write", [
    lambda model, path: export.export_saved_model(model, str(path)),
    lambda model, path: export.export_tflite(model, str(path)),
    lambda model, path: export.tflite_flatbuffer(model),
], ids=["saved_model", "tflite", "flatbuffer"])
def test_export_on_another_backend_says_what_to_do(tmp_path, write):
  backend = keras.backend.backend()
  with pytest.raises(ValueError, match=rf"(?s)'{backend}'.*model\.save\(.*tensorflow"):
    write(sparse_mlp(), tmp_path / "model")
  assert not list(tmp_path.iterdir())
