"""Exporting a run: a 90%-sparse MNIST FC network saved by the training loop, loaded
back from its run directory and written as a SavedModel and as TFLite flatbuffers."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import rigl
from rigl import tf1_checkpoints_test
from rigl import export
from rigl import flops
from rigl import models
from rigl import run_directory
from rigl import training

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SPARSITY = 0.9
STEP = 7
BATCH = 4
OUTPUT_ATOL = 1e-5
# The sparse flatbuffer must be at most this fraction of the dense one.
MAX_SPARSE_TO_DENSE_BYTES = 0.25
IDENTITY = {"dataset": "mnist", "network_type": "fc", "training_method": "scratch",
            "end_sparsity": SPARSITY, "mask_init_method": "random", "seed": 0}
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(run directory, model): a checkpoint at step STEP written by `Trainer`."""
  directory = tmp_path_factory.mktemp("run")
  tf_keras.utils.set_random_seed(0)
  model = models.mnist_fc()
  optimizer = rigl.create_sparse_optimizer(
      "scratch", tf_keras.optimizers.SGD(0.1), model,
      rigl.SparsityConfig(SPARSITY, "random"))
  rng = np.random.default_rng(0)
  # Non-zero biases, as trained ones are (the converter drops all-zero biases).
  for layer in model.layers[1:]:
    layer.bias.assign(rng.standard_normal(layer.bias.shape).astype(np.float32))
  trainer = training.Trainer(model, optimizer, training.RunConfig(
      train_steps=10, global_batch_size=BATCH, steps_per_epoch=10,
      save_path=str(directory), identity=IDENTITY,
      log=lambda line: None))
  optimizer.iterations.assign(STEP)
  trainer.save()
  return directory, model


def _inputs(model, seed=1):
  shape = (BATCH,) + tuple(model.input_shape[1:])
  return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _copy_checkpoint(directory, destination):
  """Copies the run's checkpoint files (not its run_config.json) to `destination`."""
  for name in os.listdir(directory):
    if name.startswith(training.CHECKPOINT_NAME):
      shutil.copy(directory / name, destination / name)


def _tflite_logits(path, inputs):
  interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=1)
  return interpreter.get_signature_runner()(inputs=inputs)[export.OUTPUT_NAME]


def test_load_run_model_restores_the_weights(run):
  directory, model = run
  loaded, settings = export.load_run_model(str(directory))
  assert settings == IDENTITY
  assert len(loaded.variables) == len(model.variables)
  for restored, original in zip(loaded.variables, model.variables):
    np.testing.assert_array_equal(restored.numpy(), original.numpy())
  sparsities = export.kernel_sparsities(loaded)
  assert sparsities == pytest.approx({"layer1": SPARSITY, "layer2": SPARSITY,
                                      "layer3": SPARSITY}, abs=1e-3)


def test_tflite_matches_keras_and_sparse_encoding_is_small(run, tmp_path):
  directory, model = run
  loaded, _ = export.load_run_model(str(directory))
  sparse_bytes = export.export_tflite(loaded, str(tmp_path / "sparse.tflite"))
  dense_bytes = export.export_tflite(loaded, str(tmp_path / "dense.tflite"), sparse=False)
  assert sparse_bytes == os.path.getsize(tmp_path / "sparse.tflite")
  assert sparse_bytes <= MAX_SPARSE_TO_DENSE_BYTES * dense_bytes, (sparse_bytes,
                                                                    dense_bytes)
  inputs = _inputs(model)
  expected = model(inputs, training=False).numpy()
  for name in ("sparse.tflite", "dense.tflite"):
    np.testing.assert_allclose(_tflite_logits(tmp_path / name, inputs), expected,
                               atol=OUTPUT_ATOL)


def test_tflite_weight_storage_of_elementwise_and_block_masks(tmp_path):
  """Elementwise masks are densified at load; 1x4 block masks run sparse, no DENSIFY."""
  tf_keras.utils.set_random_seed(0)
  model = models.mnist_fc()
  rigl.create_sparse_optimizer(
      "scratch", tf_keras.optimizers.SGD(0.1), model,
      rigl.SparsityConfig(SPARSITY, "random", custom_sparsity_map={"layer3": 0.0}))
  block_model = models.mnist_fc()
  block_model.set_weights(model.get_weights())
  rigl.create_sparse_optimizer(
      "scratch", tf_keras.optimizers.SGD(0.1), block_model,
      rigl.SparsityConfig(SPARSITY, "random", custom_sparsity_map={"layer3": 0.0},
                          dense_block_size=4))
  inputs = _inputs(model)
  for keras_model, masked_storage in ((model, export.DENSIFIED_STORAGE),
                                      (block_model, export.BLOCK_STORAGE)):
    path = tmp_path / "model.tflite"
    export.export_tflite(keras_model, str(path))
    storage = export.tflite_weight_storage(path.read_bytes())
    assert [(w.op, w.shape, w.storage) for w in storage] == [
        ("FULLY_CONNECTED", (300, 784), masked_storage),
        ("FULLY_CONNECTED", (100, 300), masked_storage),
        ("FULLY_CONNECTED", (10, 100), export.DENSE_STORAGE)]
    np.testing.assert_allclose(_tflite_logits(path, inputs), keras_model(inputs).numpy(),
                               atol=OUTPUT_ATOL)


def test_saved_model_matches_keras(run, tmp_path):
  directory, model = run
  loaded, _ = export.load_run_model(str(directory))
  size = export.export_saved_model(loaded, str(tmp_path / "saved"))
  assert size > 0
  serve = tf.saved_model.load(str(tmp_path / "saved")).signatures[export.SIGNATURE_KEY]
  inputs = _inputs(model)
  np.testing.assert_allclose(
      serve(**{export.INPUT_NAME: tf.constant(inputs)})[export.OUTPUT_NAME].numpy(),
      model(inputs, training=False).numpy(), atol=OUTPUT_ATOL)


def test_export_reports_file_and_analytic_sizes(run, tmp_path):
  directory, _ = run
  output = tmp_path / "model.tflite"
  report = export.export(str(directory), export.TFLITE, str(output))
  assert report.file_bytes == os.path.getsize(output)
  weights = 784 * 300 + 300 * 100 + 100 * 10
  bias_bytes = (300 + 100 + 10) * flops.BITS_PER_BIAS / 8
  assert report.dense_bytes == weights * flops.BITS_PER_WEIGHT / 8 + bias_bytes
  zeros = sum(int(SPARSITY * n) for n in (784 * 300, 300 * 100, 100 * 10))
  assert report.sparsity == pytest.approx(zeros / weights, abs=1e-6)
  assert report.sparse_bytes == pytest.approx(
      (weights - zeros) * flops.BITS_PER_WEIGHT / 8
      + weights * flops.BITS_PER_MASK_ENTRY / 8 + bias_bytes, rel=1e-6)
  assert any("analytic sparse size" in line for line in report.lines())
  # Elementwise masks: every weight is stored sparse and densified at load.
  assert report.weight_storage == {export.DENSIFIED_STORAGE: 3}
  assert f"  weights, {export.DENSIFIED_STORAGE}: 3" in report.lines()


def test_load_run_model_from_the_recorded_model_description(run, tmp_path):
  """A run_config.json of today: the model key, no flag that names the network."""
  directory, model = run
  _copy_checkpoint(directory, tmp_path)
  (tmp_path / run_directory.RUN_CONFIG_FILE).write_text(json.dumps(
      {run_directory.MODEL_KEY: models.describe("mnist_fc"), "seed": 0}))
  loaded, _ = export.load_run_model(str(tmp_path))
  for restored, original in zip(loaded.variables, model.variables):
    np.testing.assert_array_equal(restored.numpy(), original.numpy())


def test_trainer_exports_with_the_serving_signature(tmp_path):
  model = models.mnist_fc()
  optimizer = rigl.create_sparse_optimizer(
      "scratch", tf_keras.optimizers.SGD(0.1), model,
      rigl.SparsityConfig(SPARSITY, "random"))
  trainer = training.Trainer(model, optimizer, training.RunConfig(
      train_steps=1, global_batch_size=BATCH, steps_per_epoch=1,
      save_path=str(tmp_path), log=lambda line: None))
  directory = trainer.export()
  assert directory == str(tmp_path / run_directory.EXPORT_DIR / "0")
  serve = tf.saved_model.load(directory).signatures[export.SIGNATURE_KEY]
  inputs = _inputs(model)
  np.testing.assert_allclose(
      serve(**{export.INPUT_NAME: tf.constant(inputs)})[export.OUTPUT_NAME].numpy(),
      model(inputs, training=False).numpy(), atol=OUTPUT_ATOL)


def test_model_architecture_overrides_the_run_config(run, tmp_path):
  directory, model = run
  _copy_checkpoint(directory, tmp_path)
  prefix = str(tmp_path / f"{training.CHECKPOINT_NAME}-{STEP}")
  with pytest.raises(ValueError, match="--checkpoint.*run_config.json.*--model_arch"):
    export.load_run_model(prefix)
  loaded, settings = export.load_run_model(prefix, "mnist_fc")
  assert settings == {"model_architecture": "mnist_fc"}
  np.testing.assert_array_equal(loaded.get_layer("layer1").kernel.numpy(),
                                model.get_layer("layer1").kernel.numpy())
  with pytest.raises(ValueError, match="--checkpoint.*does not hold this model"):
    export.load_run_model(prefix, "lenet5")
  with pytest.raises(ValueError, match="--model_architecture"):
    export.load_run_model(prefix, "vgg")


def test_tf1_checkpoint_of_the_original(tmp_path):
  ckpt = tf1_checkpoints_test.write_mnist_fc(tmp_path)
  loaded, _ = export.load_run_model(ckpt.prefix, "mnist_fc")
  for name, kernel in ckpt.kernels.items():
    np.testing.assert_array_equal(loaded.get_layer(name).kernel.numpy(), kernel)


def test_export_errors(run, tmp_path):
  directory, _ = run
  with pytest.raises(ValueError, match="--format"):
    export.export(str(directory), "onnx", str(tmp_path / "model"))
  with pytest.raises(ValueError, match="--checkpoint.*holds no checkpoint"):
    export.export(str(tmp_path), export.TFLITE, str(tmp_path / "model.tflite"))
  with pytest.raises(ValueError, match="--checkpoint.*no .*missing.index"):
    export.export(str(tmp_path / "missing"), export.TFLITE, str(tmp_path / "m.tflite"))
  _copy_checkpoint(directory, tmp_path)
  (tmp_path / run_directory.RUN_CONFIG_FILE).write_text("{network_type: fc")
  with pytest.raises(ValueError, match="--checkpoint.*run_config.json is not JSON"):
    export.export(str(tmp_path), export.TFLITE, str(tmp_path / "m.tflite"))


def _command_line(*args):
  environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "rigl.export", *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, check=False, env=environment)


def test_command_line_writes_a_tflite_file(run, tmp_path):
  directory, model = run
  output = tmp_path / "out" / "model.tflite"
  result = _command_line(f"--checkpoint={directory}", "--format=tflite",
                         f"--output={output}")
  assert result.returncode == 0, result.stderr
  assert f"{os.path.getsize(output):,} bytes" in result.stdout
  assert "analytic dense size" in result.stdout
  inputs = _inputs(model)
  np.testing.assert_allclose(_tflite_logits(output, inputs),
                             model(inputs, training=False).numpy(), atol=OUTPUT_ATOL)


def test_command_line_error_is_one_line(run, tmp_path):
  directory, _ = run
  _copy_checkpoint(directory, tmp_path)
  output = tmp_path / "model.tflite"
  result = _command_line(f"--checkpoint={tmp_path}", "--format=tflite",
                         f"--output={output}")
  assert result.returncode != 0
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert lines[-1].startswith("python -m rigl.export: error: --checkpoint="), lines
  assert "run_config.json" in lines[-1]
  assert not output.exists()


@pytest.mark.parametrize("arguments, flag", [
    (["--format=onnx"], "--format"),
    (["--checkpoint=/nonexistent/run"], "--checkpoint"),
    (["--output="], "--output"),
    (["--model_architecture=vgg"], "--model_architecture"),
    (["--dense_weights"], "--dense_weights"),
])
def test_main_errors_are_one_line(run, tmp_path, capsys, arguments, flag):
  directory, _ = run
  output = tmp_path / "model"
  code = export.main([f"--checkpoint={directory}", "--format=saved_model",
                      f"--output={output}", *arguments])
  assert code != 0
  error = capsys.readouterr().err
  assert error.count("\n") == 1 and error.startswith("python -m rigl.export: error:")
  assert flag in error
  assert not output.exists()


def test_main_usage_error_is_one_line(capsys):
  with pytest.raises(SystemExit) as exit_info:
    export.main(["--format=tflite"])
  assert exit_info.value.code != 0
  error = capsys.readouterr().err
  assert error.count("\n") == 1 and "--checkpoint" in error
