"""A new method is one class and one registration, in this file only.

It then trains through the MNIST script (flag validation, optimizer options, the
training loop), is counted by the training-FLOPs meter with the rule its class names,
and appears in `python -m rigl.report` under its label: no other file knows of it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from mnist import mnist_train_eval
from rigl import flops
from rigl import methods
from rigl import report
from rigl import run_directory
from rigl import script_flags
from rigl import sparse_optimizer
from rigl.testing import fake_mnist

TRAIN_EXAMPLES, TEST_EXAMPLES, BATCH = 120, 40, 20
FLAG_NAME, LABEL = "grow_by_saliency", "Saliency growth"


class SaliencyGrowth(sparse_optimizer.DynamicSparseOptimizer):
  """Grows where |gradient * weight| is largest, instead of the optimizer step."""
  flag_name, label = FLAG_NAME, LABEL
  flops_rule = flops.DENSE_GRADIENT_ON_UPDATES
  update_replaces_step = True

  def _grow_score(self, ops, kernel, mask, dense_grad, state, random):
    # Absent weights are 0: add |gradient| so that they can be told apart.
    return ops.abs(dense_grad) * (1.0 + ops.abs(kernel))


@pytest.fixture
def registered():
  methods.register(SaliencyGrowth)
  yield
  del methods.TRAINING_METHODS[FLAG_NAME]


def test_a_method_defined_here_trains_is_counted_and_reported(registered, tmp_path):
  (tmp_path / "idx").mkdir()
  data_dir = fake_mnist.write_dataset(tmp_path / "idx", TRAIN_EXAMPLES, TEST_EXAMPLES)
  run_dir = tmp_path / "run"
  flag_values = mnist_train_eval.FLAGS
  with script_flags.values_restored(flag_values):
    script_flags.set_values(
        flag_values, training_method=FLAG_NAME, data_dir=str(data_dir),
        batch_size=BATCH, num_epochs=2, save_path=str(run_dir), learning_rate=0.05,
        maskupdate_frequency=2, end_sparsity=0.9, drop_fraction=0.5)
    results = mnist_train_eval.run()
  # The update replaced the step on its calls: fewer steps than batches.
  calls, steps = results["batches"], results["step"]
  assert calls == 2 * TRAIN_EXAMPLES // BATCH and 0 < steps < calls
  # Counted by its own rule: 3 f_S per step, 2 f_S + f_D per update (masks keep their
  # per-layer counts, so f_S stays the same throughout).
  f_sparse = results["inference_flops_ratio"]
  expected = (steps * 3 * f_sparse + (calls - steps) * (2 * f_sparse + 1)) / (3 * calls)
  assert results["training_flops_ratio"] == pytest.approx(expected, rel=1e-9)
  assert results["per_layer_sparsity"]["layer1"] == pytest.approx(0.9, abs=1e-3)
  # The masks really moved away from the initial random ones.
  reader = tf.train.load_checkpoint(str(run_dir))
  keys = run_directory.mask_keys(reader)
  initial = sparse_optimizer.kernel_selection.initial_mask(
      "layer1", reader.get_tensor(keys["layer1"]).shape, 0.9, seed=0)
  assert np.any(reader.get_tensor(keys["layer1"]) != initial)
  # The report labels it from its class.
  table = tmp_path / "report.md"
  report.main([str(run_dir), f"--output={table}", f"--plot={tmp_path / 'plot.png'}"])
  assert LABEL in table.read_text()
  assert json.loads((run_dir / run_directory.RESULTS_FILE).read_text())[
      "training_method"] == FLAG_NAME


def test_an_unregistered_method_is_refused_naming_the_flag(tmp_path):
  flag_values = mnist_train_eval.FLAGS
  with script_flags.values_restored(flag_values):
    script_flags.set_values(flag_values, training_method=FLAG_NAME,
                            save_path=str(tmp_path))
    with pytest.raises(ValueError, match=r"--training_method=.*allowed values: baseline"):
      mnist_train_eval.run()
