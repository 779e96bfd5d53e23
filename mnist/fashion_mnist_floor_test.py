"""Learning on real data: RigL and SET must reach a measured accuracy on Fashion-MNIST.

Trains the FC network (98% sparse) for two epochs on the real Fashion-MNIST that Debian's
`dataset-fashion-mnist` package installs (`run.sh` installs it where it can) and asserts
test accuracy at or above the floors of `benchmarks/fashion_mnist_floor.py`, set below
every one of 20 measured seeds (benchmarks/results/fashion_mnist_floor.md). A change
that breaks learning without breaking any unit test fails here.
"""

import pathlib

import pytest

from benchmarks import fashion_mnist_floor
from benchmarks import fashion_mnist_runs
from mnist import mnist_train_eval
from rigl import script_flags

DATA_DIR = pathlib.Path(fashion_mnist_runs.DEFAULT_DATA_DIR)

pytestmark = pytest.mark.skipif(
    not DATA_DIR.exists(),
    reason=f"real Fashion-MNIST absent: {DATA_DIR} (apt-get install dataset-fashion-mnist)")


@pytest.mark.parametrize("method", fashion_mnist_floor.METHODS)
def test_reaches_the_measured_accuracy_floor(method):
  with script_flags.values_restored(mnist_train_eval.FLAGS):
    script_flags.set_values(mnist_train_eval.FLAGS, dataset="fashion_mnist",
                            data_dir=str(DATA_DIR), save_path="",
                            **fashion_mnist_floor.floor_run(method))
    results = mnist_train_eval.run()
  assert results["test_accuracy"] >= fashion_mnist_floor.FLOORS[method]
  # The script's FC rules: layer1 at 98%, layer2 at 0.9 * 98%, layer3 dense.
  weights = {"layer1": 784 * 300, "layer2": 300 * 100, "layer3": 100 * 10}
  zeros = weights["layer1"] * 0.98 + weights["layer2"] * 0.98 * 0.9
  assert results["global_sparsity"] == pytest.approx(zeros / sum(weights.values()), abs=1e-4)
