"""The MNIST script end to end on tiny IDX files the tests write themselves."""

import gzip
import json
import pathlib
import struct
import subprocess
import sys

import numpy as np
import pytest

from mnist import mnist_train_eval
from rigl.datasets import mnist as data
from rigl import script_flags
from rigl import training
from rigl.testing import fake_mnist

FLAGS = mnist_train_eval.FLAGS
REPO = pathlib.Path(__file__).resolve().parent.parent
TRAIN_EXAMPLES, TEST_EXAMPLES, BATCH = 120, 40, 20


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
  """Images whose class is readable from their brightest row, so training can learn."""
  return fake_mnist.write_dataset(tmp_path_factory.mktemp("idx"), TRAIN_EXAMPLES,
                                  TEST_EXAMPLES)


@pytest.fixture(autouse=True)
def default_flags():
  with script_flags.values_restored(FLAGS):
    yield


def run(idx_dir, save_path, **overrides):
  settings = dict(data_dir=str(idx_dir), batch_size=BATCH, num_epochs=1,
                  save_path=str(save_path), learning_rate=0.05,
                  maskupdate_frequency=2, prune_begin_step=2, prune_end_step=8,
                  pruning_frequency=2, end_sparsity=0.9)
  settings.update(overrides)
  for name, value in settings.items():
    FLAGS[name].value = value
  return mnist_train_eval.run()


@pytest.mark.parametrize("method", ["baseline", "rigl", "prune"])
def test_trains_and_writes_results(idx_dir, tmp_path, method):
  results = run(idx_dir, tmp_path, training_method=method, num_epochs=2)
  on_disk = json.loads((tmp_path / training.RESULTS_FILE).read_text())
  for key in ("test_accuracy", "test_loss", "per_layer_sparsity", "global_sparsity",
              "inference_flops", "training_flops_ratio", "step", "epochs", "wall_time_s",
              "compressed_shapes"):
    assert key in on_disk
  # Two full passes over the data, however many calls changed masks instead.
  assert on_disk["batches"] == 2 * TRAIN_EXAMPLES // BATCH and on_disk["epochs"] == 2
  assert (on_disk["step"] < on_disk["batches"]) == (method == "rigl")
  assert results["test_accuracy"] == on_disk["test_accuracy"]
  if method == "baseline":
    assert on_disk["per_layer_sparsity"] == {} and on_disk["training_flops_ratio"] == 1.0
  else:
    assert on_disk["per_layer_sparsity"]["layer1"] == pytest.approx(0.9, abs=1e-3)
    assert on_disk["per_layer_sparsity"]["layer2"] == pytest.approx(0.81, abs=1e-3)
    assert on_disk["per_layer_sparsity"]["layer3"] == 0.0
    assert on_disk["training_flops_ratio"] < 0.5
  assert (tmp_path / "train").is_dir() and (tmp_path / "eval").is_dir()


def test_resume_continues_exactly(idx_dir, tmp_path):
  straight = run(idx_dir, tmp_path / "straight", training_method="rigl", num_epochs=2)
  run(idx_dir, tmp_path / "resumed", training_method="rigl", num_epochs=1)
  resumed = run(idx_dir, tmp_path / "resumed", training_method="rigl", num_epochs=2)
  for key in ("test_accuracy", "test_loss", "step", "batches", "per_layer_sparsity",
              "training_flops"):
    assert resumed[key] == straight[key], key


def test_refuses_a_different_run_in_the_same_directory(idx_dir, tmp_path):
  run(idx_dir, tmp_path, training_method="set")
  with pytest.raises(ValueError, match="training_method"):
    run(idx_dir, tmp_path, training_method="rigl")


def test_resume_refuses_a_changed_identity_flag_and_accepts_an_operational_one(
    idx_dir, tmp_path, capsys):
  first = run(idx_dir, tmp_path, training_method="set")
  with pytest.raises(ValueError) as error:
    run(idx_dir, tmp_path, training_method="set", momentum=0.5)
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith("--momentum: 0.9 in the run directory, 0.5 now ("), message
  capsys.readouterr()
  resumed = run(idx_dir, tmp_path, training_method="set", momentum=0.9, summary_steps=2)
  assert "Resumed from" in capsys.readouterr().out
  assert resumed["step"] == first["step"]
  assert resumed["test_accuracy"] == first["test_accuracy"]


def test_lenet5_and_mask_records(idx_dir, tmp_path):
  results = run(idx_dir, tmp_path, training_method="set", network_type="lenet5",
                mask_record_frequency=2)
  assert set(results["per_layer_sparsity"]) == {"conv2", "fc1", "fc2"}
  with np.load(tmp_path / training.MASK_RECORDS_FILE) as records:
    assert list(records["steps"]) == [2, 4, 6]
    assert records["conv2"].shape == (3, 5, 5, 6, 16)


@pytest.mark.parametrize("damage,error", [("missing", FileNotFoundError),
                                          ("truncated", ValueError)])
def test_bad_idx_files_fail_before_writing(idx_dir, tmp_path, damage, error):
  broken = tmp_path / "broken"
  broken.mkdir()
  for name in data.IDX_FILES.values():
    (broken / name).write_bytes((idx_dir / name).read_bytes())
  target = broken / data.IDX_FILES["test_labels"]
  if damage == "missing":
    target.unlink()
  else:
    with gzip.open(target, "wb") as f:
      f.write(struct.pack(">HBBI", 0, 0x08, 1, TEST_EXAMPLES) + b"\x01\x02")
  with pytest.raises(error, match="t10k-labels-idx1-ubyte.gz"):
    run(broken, tmp_path / "run", training_method="rigl")
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [
    [sys.executable, "mnist/mnist_train_eval.py"],
    [sys.executable, "-m", "mnist.mnist_train_eval"],
])
def test_runs_as_script_and_as_module(idx_dir, tmp_path, command):
  result = subprocess.run(
      command + [f"--data_dir={idx_dir}", f"--batch_size={BATCH}", "--num_epochs=1",
                 "--training_method=snip", "--end_sparsity=0.5",
                 f"--save_path={tmp_path}"],
      cwd=REPO, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"batch {TRAIN_EXAMPLES // BATCH}/{TRAIN_EXAMPLES // BATCH}" in result.stdout
  assert (tmp_path / training.RESULTS_FILE).exists()


def test_input_mask_from_a_previous_run(idx_dir, tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  run(idx_dir, tmp_path / "first", training_method="set", end_sparsity=0.995)
  pixels = mnist_train_eval.read_input_mask(str(tmp_path / "first"))
  reader = tf.train.load_checkpoint(
      tf.train.latest_checkpoint(str(tmp_path / "first")))
  key = next(k for k in reader.get_variable_to_shape_map() if "_masks/layer1/" in k)
  np.testing.assert_array_equal(pixels, reader.get_tensor(key).any(axis=1))
  assert pixels.shape == (784,) and not pixels.all()  # 0.5% density leaves dead pixels.
  results = run(idx_dir, tmp_path / "second", training_method="set",
                input_mask_path=str(tmp_path / "first"))
  assert results["step"] == TRAIN_EXAMPLES // BATCH


@pytest.mark.parametrize("method", ["scratch", "rigl", "snip"])
def test_training_flops_follow_the_method(idx_dir, tmp_path, method):
  results = run(idx_dir, tmp_path, training_method=method, num_epochs=2)
  f_sparse = results["inference_flops_ratio"]  # Sparse FLOPs over dense FLOPs.
  calls = results["batches"]
  updates = calls - results["step"]
  if method == "scratch":
    expected = f_sparse
  elif method == "rigl":  # Updates at steps 0, 2, 4, ...: 2 f_S + f_D instead of 3 f_S.
    assert updates > 0
    expected = (results["step"] * 3 * f_sparse + updates * (2 * f_sparse + 1)) / (3 * calls)
  else:  # The SNIP call is counted at the mean of dense and sparse FLOPs.
    assert updates == 1
    expected = ((calls - 1) * f_sparse + (1 + f_sparse) / 2) / calls
  assert results["training_flops_ratio"] == pytest.approx(expected, rel=1e-9)
