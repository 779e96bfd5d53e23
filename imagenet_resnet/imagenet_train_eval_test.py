"""The ImageNet script end to end on tiny TFRecord files the tests write themselves."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from imagenet_resnet import imagenet_train_eval
from rigl import methods
from rigl import script_flags
from rigl import run_directory
from rigl import training
from rigl.testing import fake_imagenet

FLAGS = imagenet_train_eval.FLAGS
REPO = pathlib.Path(__file__).resolve().parent.parent
NUM_CLASSES, IMAGE_SIZE, BATCH = 10, 32, 4
TRAIN_FILES, IMAGES_PER_FILE, EVAL_IMAGES = 2, 6, 8


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return fake_imagenet.write_dataset(tmp_path_factory.mktemp("imagenet"), TRAIN_FILES,
                                     IMAGES_PER_FILE, EVAL_IMAGES, NUM_CLASSES)


@pytest.fixture(autouse=True)
def default_flags():
  with script_flags.values_restored(FLAGS):
    yield


TINY = dict(resnet_depth=18, width=0.25, image_size=IMAGE_SIZE,
            num_label_classes=NUM_CLASSES, train_batch_size=BATCH, eval_batch_size=BATCH,
            num_eval_images=EVAL_IMAGES, num_train_images=TRAIN_FILES * IMAGES_PER_FILE,
            train_steps=1, steps_per_eval=1, use_folder_stub=False, mode="train_and_eval",
            mask_init_method="erdos_renyi_kernel", maskupdate_frequency=1,
            sparsity_begin_step=0, sparsity_end_step=2, pruning_frequency=1,
            num_parallel_calls=2, summary_steps=1)


def run(output_dir, **overrides):
  settings = dict(TINY, output_dir=str(output_dir))
  settings.update(overrides)
  for name, value in settings.items():
    FLAGS[name].value = value
  return imagenet_train_eval.run()


@pytest.mark.parametrize("method", list(methods.TRAINING_METHODS))
def test_every_method_trains_resnet_on_tfrecords(data_dir, tmp_path, method):
  results = run(tmp_path, data_directory=str(data_dir), training_method=method,
                train_steps=2, steps_per_eval=2)
  assert results["step"] == 2 and results["eval_examples"] == EVAL_IMAGES
  for key in ("test_accuracy", "top_5_accuracy", "test_loss", "regularization_loss"):
    assert np.isfinite(results[key]), key
  per_layer = results["per_layer_sparsity"]
  if method in ("baseline", "prune"):
    # prune reaches its target at step 2, after the last training step.
    assert results["global_sparsity"] < 0.9
  else:
    assert "initial_conv" not in per_layer  # --first_layer_sparsity=0: dense.
    # Grown connections start at zero, so kernels can hold more zeros than masks.
    assert results["global_sparsity"] > 0.89
  assert json.loads((tmp_path / training.RESULTS_FILE).read_text())["step"] == 2


@pytest.mark.parametrize("architecture,method", [("mobilenet_v1", "rigl"),
                                                 ("mobilenet_v2", "snip")])
def test_mobilenets_train_on_tfds_mock_data(tmp_path, architecture, method):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  with tfds.testing.mock_data(num_examples=8):
    results = run(tmp_path, tfds_data_dir=str(tmp_path / "tfds"), num_label_classes=1000,
                  model_architecture=architecture, training_method=method)
  assert results["step"] == 1
  per_layer = results["per_layer_sparsity"]
  assert "initial_conv" not in per_layer  # Never masked in MobileNets.
  assert not any(name.startswith("depthwise") for name in per_layer)
  assert per_layer["final_dense"] > 0


def test_train_then_eval_once_on_its_checkpoint(data_dir, tmp_path):
  run(tmp_path, data_directory=str(data_dir), training_method="set", mode="train",
      train_steps=3, steps_per_checkpoint=2, export_model_freq=2)
  state = tf.train.get_checkpoint_state(str(tmp_path))
  assert [p.rsplit("-", 1)[1] for p in state.all_model_checkpoint_paths] == ["2", "3"]
  exported = tf.saved_model.load(str(tmp_path / training.EXPORT_DIR / "3"))
  images = tf.zeros([1, IMAGE_SIZE, IMAGE_SIZE, 3])
  assert exported(images, training=False).shape == (1, NUM_CLASSES)
  results = run(tmp_path, data_directory=str(data_dir), training_method="set",
                mode="eval_once", eval_once_ckpt_prefix="model.ckpt-3")
  on_disk = json.loads((tmp_path / "eval_once_model.ckpt-3.json").read_text())
  assert on_disk["step"] == results["step"] == 3
  reader = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-3"))
  saved = {key.split("_masks/")[1].split("/")[0]: reader.get_tensor(key)
           for key in reader.get_variable_to_shape_map()
           if "_masks/" in key and "OPTIMIZER_SLOT" not in key}
  assert set(saved) == set(results["per_layer_sparsity"])
  for name, mask in saved.items():
    assert results["per_layer_sparsity"][name] == pytest.approx(np.mean(mask == 0))
  followed = run(tmp_path, data_directory=str(data_dir), training_method="set",
                 mode="eval", train_steps=3)
  assert followed["step"] == 3 and followed["test_loss"] == pytest.approx(
      results["test_loss"])


def write_tf1_checkpoint(prefix: str, sparsity: float, seed: int = 0) -> dict:
  """A TF1 checkpoint of the tiny ResNet-18 with the original's names; returns masks.

  Every conv and the dense layer are masked except the first conv, which has the
  doubled scope of an unmasked layer built inside the sparse wrapper.
  """
  from rigl import models  # pylint: disable=import-outside-toplevel
  model = models.resnet(18, TINY["width"], NUM_CLASSES, (IMAGE_SIZE, IMAGE_SIZE, 3))
  rng = np.random.default_rng(seed)
  values, masks = {}, {}
  for layer in model.layers:
    scope = f"resnet_model/{layer.name}"
    if isinstance(layer, tf_keras.layers.BatchNormalization):
      for leaf, variable in zip(("gamma", "beta", "moving_mean", "moving_variance"),
                                layer.weights):
        values[f"{scope}/{leaf}"] = rng.uniform(0.5, 1.5, variable.shape)
    elif layer.name == "initial_conv":
      values[f"{scope}/initial_conv/weights"] = rng.normal(0, 0.1, layer.kernel.shape)
    elif hasattr(layer, "kernel"):
      values[f"{scope}/weights"] = rng.normal(0, 0.1, layer.kernel.shape)
      masks[layer.name] = (rng.random(layer.kernel.shape) >= sparsity).astype(np.float32)
      values[f"{scope}/mask"] = masks[layer.name]
      values[f"{scope}/threshold"] = np.zeros(())
      if layer.name == "final_dense":
        values[f"{scope}/biases"] = rng.normal(0, 0.1, layer.bias.shape)
  values["global_step"] = np.array(32000, np.int64)
  with tf.Graph().as_default():
    variables = [tf.compat.v1.Variable(np.asarray(value, dtype=np.int64 if name ==
                                                  "global_step" else np.float32),
                                       name=name) for name, value in values.items()]
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      tf.compat.v1.train.Saver(variables).save(session, prefix, write_meta_graph=False)
  return masks


def test_resume_refuses_a_changed_identity_flag_and_accepts_an_operational_one(
    data_dir, tmp_path):
  settings = dict(data_directory=str(data_dir), training_method="set")
  first = run(tmp_path, **settings)
  with pytest.raises(ValueError,
                     match=r"^--sparsity_end_step: 2 in the run directory, 3 now \("):
    run(tmp_path, **settings, sparsity_end_step=3)
  resumed = run(tmp_path, **settings, sparsity_end_step=2, summary_steps=5,
                num_parallel_calls=1)
  assert resumed["step"] == first["step"] == 1
  assert resumed["test_loss"] == pytest.approx(first["test_loss"])


def test_eval_once_on_a_tf1_checkpoint(data_dir, tmp_path):
  masks = write_tf1_checkpoint(str(tmp_path / "model.ckpt-32000"), sparsity=0.8)
  results = run(tmp_path, data_directory=str(data_dir), mode="eval_once",
                eval_once_ckpt_prefix="model.ckpt-32000", training_method="rigl",
                mask_init_method="random", first_layer_sparsity=0.0)
  assert results["checkpoint_global_step"] == results["step"] == 32000
  assert set(results["checkpoint_masked_layers"]) == set(masks)
  for name, mask in masks.items():
    assert results["per_layer_sparsity"][name] == pytest.approx(np.mean(mask == 0))
  assert results["eval_examples"] == EVAL_IMAGES and np.isfinite(results["test_loss"])
  assert (tmp_path / "eval_once_model.ckpt-32000.json").exists()
  assert not (tmp_path / run_directory.RUN_CONFIG_FILE).exists()  # Nothing to resume.


def test_rigl_under_mirrored_strategy_keeps_replicas_identical(data_dir, tmp_path):
  captured = {}
  original = training.Trainer.__init__

  def capture(self, model, optimizer, config, strategy=None):
    captured["optimizer"] = optimizer
    original(self, model, optimizer, config, strategy)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(training.Trainer, "__init__", capture)
    # Real data: each replica gets different examples, so masks agree only if the
    # gradients were all-reduced before scoring.
    results = run(tmp_path, data_directory=str(data_dir), training_method="rigl",
                  distribution_strategy="mirrored", train_steps=3, steps_per_eval=3)
  assert results["step"] == 3
  optimizer = captured["optimizer"]
  for name, mask in optimizer.masks.items():
    replicas = [component.numpy() for component in mask.values]
    assert len(replicas) == 2
    np.testing.assert_array_equal(replicas[0], replicas[1], err_msg=name)


@pytest.mark.parametrize("overrides,flag", [
    (dict(training_method="rigl", mask_init_method=""), "mask_init_method"),
    (dict(eval_batch_size=3), "eval_batch_size"),
    (dict(mode="eval_once", eval_once_ckpt_prefix=""), "eval_once_ckpt_prefix"),
    (dict(distribution_strategy="tpu"), "distribution_strategy=tpu"),
    (dict(train_batch_size=0), "train_batch_size"),
])
def test_bad_flags_fail_at_start_naming_the_flag(tmp_path, overrides, flag):
  with pytest.raises(ValueError, match=flag):
    run(tmp_path / "run", **dict(dict(use_synthetic_data=True, training_method="rigl"),
                                 **overrides))
  assert not (tmp_path / "run").exists()


def test_missing_data_fails_naming_the_flags(tmp_path):
  result = subprocess.run(
      [sys.executable, "imagenet_resnet/imagenet_train_eval.py",
       f"--output_dir={tmp_path}", "--training_method=rigl",
       "--mask_init_method=random"],
      cwd=REPO, capture_output=True, text=True, check=False)
  assert result.returncode != 0
  assert "--data_directory" in result.stderr and "--use_synthetic_data" in result.stderr
  assert "Traceback" not in result.stderr


def test_folder_stub_and_steps_multiplier(tmp_path):
  FLAGS.output_dir, FLAGS.training_method, FLAGS.end_sparsity = str(tmp_path), "rigl", 0.8
  assert imagenet_train_eval.run_directory() == str(
      tmp_path / "rigl" / "0.8" / "0" / "25000" / "100" / "0.3" / "0.1" / "0.0001")
  FLAGS.training_steps_multiplier = 5
  assert imagenet_train_eval.scaled(32000) == 160000
