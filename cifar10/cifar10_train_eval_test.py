"""The CIFAR-10 script on tensorflow-datasets mock data (offline)."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cifar10 import cifar10_train_eval
from rigl import script_flags
from rigl import training

FLAGS = cifar10_train_eval.FLAGS
REPO = pathlib.Path(__file__).resolve().parent.parent
MOCK_EXAMPLES, BATCH = 16, 4
TINY = dict(resnet_depth=10, resnet_width=1, batch_size=BATCH, dataset_size=MOCK_EXAMPLES,
            max_steps=2, checkpoint_steps=2, summaries_steps=1, maskupdate_frequency=1,
            sparsity_begin_step=0, sparsity_end_step=2, pruning_frequency=1,
            end_sparsity=0.8, mask_init_method="erdos_renyi_kernel")


@pytest.fixture(autouse=True)
def default_flags():
  with script_flags.values_restored(FLAGS):
    yield


@pytest.fixture(autouse=True)
def mock_cifar():
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
    yield


def run(train_dir, **overrides):
  script_flags.set_values(FLAGS, **dict(TINY, train_dir=str(train_dir), **overrides))
  return cifar10_train_eval.run()


def stub(train_dir, method):
  """The original's folder stub for the TINY settings."""
  if method == "prune":  # Pruning steps.
    parts = (0.8, 0, 2, 1)
  elif method in ("baseline", "snip"):
    parts = (0.0, 0.0, 0.0, 0.0)
  else:  # Mask-update steps.
    parts = (0.8, 0, 75000, 1)
  return pathlib.Path(train_dir, method, *map(str, parts))


@pytest.mark.parametrize("method", sorted(cifar10_train_eval.rigl.TRAINING_METHODS))
def test_every_method_trains_one_chunk(tmp_path, method):
  results = run(tmp_path, training_method=method, mode="train_and_eval")
  run_dir = stub(tmp_path, method)
  on_disk = json.loads((run_dir / training.RESULTS_FILE).read_text())
  assert on_disk["step"] == results["step"] == 2
  assert results["eval_examples"] == MOCK_EXAMPLES
  for key in ("test_accuracy", "global_sparsity", "inference_flops",
              "training_flops_ratio"):
    assert np.isfinite(on_disk[key]), key
  assert len(on_disk["per_class"]["recall_at_1"]) == 10
  per_layer = results["per_layer_sparsity"]
  if method == "baseline":
    assert per_layer == {}
  else:
    assert "conv_1" not in per_layer  # --prune_first_layer=False.
    assert "logits" in per_layer  # --prune_last_layer=True.
  if method not in ("baseline", "prune"):  # prune reaches its target after step 2.
    assert results["inference_flops_ratio"] < 0.5
  assert (run_dir / "train").is_dir() and (run_dir / "eval").is_dir()


def test_train_and_eval_alternates_and_resumes_exactly(tmp_path):
  # Updates every 2 steps: 2 steps draw 3 of the epoch's 4 batches, so the resumed run
  # starts in the middle of an epoch.
  settings = dict(training_method="rigl", mode="train_and_eval", maskupdate_frequency=2,
                  max_steps=4, keep_checkpoint_max=0)
  straight = run(tmp_path / "straight", **settings)
  run_dir = pathlib.Path(tmp_path, "straight", "rigl", "0.8", "0", "75000", "2")
  state = tf.train.get_checkpoint_state(str(run_dir))
  assert [p.rsplit("-", 1)[1] for p in state.all_model_checkpoint_paths] == ["2", "4"]
  first_half = run(tmp_path / "resumed", **dict(settings, max_steps=2))
  assert first_half["batches"] % (MOCK_EXAMPLES // BATCH) != 0
  resumed = run(tmp_path / "resumed", **settings)
  for key in ("step", "batches", "test_loss", "test_accuracy", "per_layer_sparsity",
              "training_flops"):
    assert resumed[key] == straight[key], key


def test_resume_refuses_a_changed_identity_flag_and_accepts_an_operational_one(tmp_path):
  settings = dict(training_method="set", mode="train_and_eval")
  first = run(tmp_path, **settings)
  with pytest.raises(ValueError, match=(
      r"^--momentum: 0.9 in the run directory, 0.5 now \(")):
    run(tmp_path, **settings, momentum=0.5)
  resumed = run(tmp_path, **settings, momentum=0.9, summaries_steps=2)
  assert resumed["step"] == first["step"] == 2
  assert resumed["test_loss"] == pytest.approx(first["test_loss"])


def test_train_then_eval_modes(tmp_path):
  assert run(tmp_path, training_method="set", mode="train") is None
  once = run(tmp_path, training_method="set", mode="eval_once")
  followed = run(tmp_path, training_method="set", mode="eval")
  assert once["step"] == followed["step"] == 2
  assert once["test_loss"] == pytest.approx(followed["test_loss"])


def test_scratch_without_a_mask_dir_uses_a_fresh_random_mask(tmp_path):
  results = run(tmp_path, training_method="scratch", mode="train_and_eval",
                mask_init_method="random")
  assert all(value == pytest.approx(0.8, abs=0.01)
             for value in results["per_layer_sparsity"].values())


def test_load_mask_dir_reuses_another_runs_masks(tmp_path):
  run(tmp_path / "first", training_method="set", mode="train")
  first = stub(tmp_path / "first", "set")
  results = run(tmp_path / "second", training_method="scratch", mode="train_and_eval",
                load_mask_dir=str(first), seed=7)
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(first)))
  for key in reader.get_variable_to_shape_map():
    if "_masks/" in key and "OPTIMIZER_SLOT" not in key:
      layer = key.split("_masks/")[1].split("/")[0]
      assert results["per_layer_sparsity"][layer] == pytest.approx(
          np.mean(reader.get_tensor(key) == 0))


def test_bad_flags_fail_naming_the_flag(tmp_path):
  with pytest.raises(ValueError, match="num_classes"):
    run(tmp_path, num_classes=7)
  result = subprocess.run(
      [sys.executable, "cifar10/cifar10_train_eval.py", "--batch_size=0",
       f"--train_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, check=False)
  assert result.returncode != 0 and "--batch_size" in result.stderr
  assert "Traceback" not in result.stderr
