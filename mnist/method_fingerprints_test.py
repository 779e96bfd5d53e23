"""Every method's masks, weights and metrics after a short run are bitwise unchanged.

The fingerprints in `testdata/method_fingerprints.json` were recorded before the
method classes, schedules and run directory were restructured: each SHA-256 digest is
of one variable's bytes after a short LeNet-5 run of the MNIST script (conv and dense
layers, ERK, mask updates every 2 steps, pruning from step 2 to 6) under op
determinism. A refactoring that changes what any method computes, by a single bit,
fails here and names the variable. Regenerate only for an intended change of
behaviour: `python -m mnist.method_fingerprints_test --write` (from the repository
root).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sys
import tempfile

import numpy as np
import pytest

from mnist import mnist_train_eval
from rigl import script_flags
from rigl.testing import fake_mnist

FINGERPRINTS = pathlib.Path(__file__).parent / "testdata" / "method_fingerprints.json"
METHODS = ("baseline", "scratch", "set", "static", "momentum", "rigl", "snip", "dnw",
           "prune")
TRAIN_EXAMPLES, TEST_EXAMPLES, BATCH = 120, 40, 20
SETTINGS = dict(batch_size=BATCH, num_epochs=1, learning_rate=0.05, network_type="lenet5",
                mask_init_method="erdos_renyi_kernel", end_sparsity=0.9,
                maskupdate_frequency=2, prune_begin_step=2, prune_end_step=6,
                pruning_frequency=2, deterministic=True, seed=3)
METRICS = ("test_accuracy", "test_loss", "global_sparsity", "per_layer_sparsity", "step",
           "batches", "inference_flops", "training_flops", "training_flops_ratio")


def digest(array: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def fingerprint(method: str, data_dir: pathlib.Path) -> dict[str, object]:
  """Digests of every model and optimizer variable, and the metrics, after one run."""
  flag_values = mnist_train_eval.FLAGS
  captured = {}
  original_run = mnist_train_eval.training.train_and_evaluate

  def capture(model, optimizer, *args, **kwargs):
    captured.update(model=model, optimizer=optimizer)
    return original_run(model, optimizer, *args, **kwargs)

  with script_flags.values_restored(flag_values):
    script_flags.set_values(flag_values, training_method=method, data_dir=str(data_dir),
                            save_path="", **SETTINGS)
    mnist_train_eval.training.train_and_evaluate = capture
    try:
      results = mnist_train_eval.run()
    finally:
      mnist_train_eval.training.train_and_evaluate = original_run
  model, optimizer = captured["model"], captured["optimizer"]
  variables = {f"model/{v.name}": digest(v.numpy()) for v in model.variables}
  variables.update({f"mask/{name}": digest(mask.numpy())
                    for name, mask in optimizer.masks.items()})
  return {"variables": variables,
          "metrics": {name: results[name] for name in METRICS}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return fake_mnist.write_dataset(tmp_path_factory.mktemp("idx"), TRAIN_EXAMPLES,
                                  TEST_EXAMPLES)


@pytest.mark.parametrize("method", METHODS)
def test_method_is_bitwise_unchanged(method, data_dir):
  recorded = json.loads(FINGERPRINTS.read_text())[method]
  now = json.loads(json.dumps(fingerprint(method, data_dir)))
  assert now["metrics"] == recorded["metrics"]
  assert sorted(now["variables"]) == sorted(recorded["variables"])
  changed = [name for name, value in recorded["variables"].items()
             if now["variables"][name] != value]
  assert not changed, f"{method}: these variables changed: {changed}"


def write_fingerprints() -> None:
  with tempfile.TemporaryDirectory() as directory:
    data = fake_mnist.write_dataset(pathlib.Path(directory), TRAIN_EXAMPLES,
                                    TEST_EXAMPLES)
    prints = {method: fingerprint(method, data) for method in METHODS}
  FINGERPRINTS.write_text(json.dumps(prints, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
  if sys.argv[1:] != ["--write"]:
    sys.exit("usage: python -m mnist.method_fingerprints_test --write")
  write_fingerprints()
