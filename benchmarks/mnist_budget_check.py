r"""Why RigL trails Static in the 4-epoch comparison: a training-budget check.

Trains the FC network on Fashion-MNIST at 98% sparsity for 4 and 16 epochs with
Static (`scratch`), SET and RigL, plus RigL with drop fraction 0 (its masks never
change, so it must match Static up to the few batches its update steps consume).
Mask updates stop at 75% of training in every run. Writes
`benchmarks/results/mnist_budget_check.md`.

  python -m benchmarks.mnist_budget_check

(from the repository root: it drives `mnist/mnist_train_eval.py` in-process).
"""

from __future__ import annotations

import multiprocessing
import pathlib

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parent.parent

FLAGS = flags.FLAGS
SPARSITY = 0.98
SEEDS = (0, 1)
BUDGETS = (4, 16)
STEPS_PER_EPOCH = 600
MASKUPDATE_END_FRACTION = 0.75
VARIANTS = (("Static", {"training_method": "scratch"}),
            ("SET", {"training_method": "set"}),
            ("RigL", {"training_method": "rigl"}),
            ("RigL, drop fraction 0", {"training_method": "rigl", "drop_fraction": 0.0}))

flags.DEFINE_string("fashion_mnist_dir", "/usr/share/datasets/fashion-mnist",
                    "Folder with the Fashion-MNIST IDX files.")
flags.DEFINE_string("output", str(REPO / "benchmarks" / "results" / "mnist_budget_check.md"),
                    "Markdown report to write.")


def train_one(job: tuple[str, dict, int, int, str]) -> tuple[str, int, int, float]:
  label, overrides, epochs, seed, data_dir = job
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  from rigl import script_flags  # pylint: disable=import-outside-toplevel
  settings = {"dataset": "fashion_mnist", "data_dir": data_dir, "end_sparsity": SPARSITY,
              "learning_rate": 0.05, "num_epochs": epochs, "seed": seed, "save_path": "",
              "maskupdate_end_step": int(MASKUPDATE_END_FRACTION * epochs * STEPS_PER_EPOCH),
              "drop_fraction": 0.3}
  settings.update(overrides)
  script_flags.set_values(mnist_train_eval.FLAGS, **settings)
  return label, epochs, seed, mnist_train_eval.run()["test_accuracy"]


def main(argv):
  del argv
  import numpy as np  # pylint: disable=import-outside-toplevel
  jobs = [(label, overrides, epochs, seed, FLAGS.fashion_mnist_dir)
          for epochs in BUDGETS for label, overrides in VARIANTS for seed in SEEDS]
  with multiprocessing.get_context("spawn").Pool(2) as pool:
    results = pool.map(train_one, jobs)
  lines = ["# Fashion-MNIST FC at 98% sparsity: accuracy against training budget", "",
           f"Test accuracy (%), mean +- std over seeds {SEEDS}; learning rate 0.05, mask "
           "updates every 100 steps until 75% of training. Written by "
           "`benchmarks/mnist_budget_check.py`.", "",
           "| Method | " + " | ".join(f"{e} epochs" for e in BUDGETS) + " |",
           "|---|" + "---|" * len(BUDGETS)]
  for label, _ in VARIANTS:
    cells = []
    for epochs in BUDGETS:
      values = [100 * acc for lab, ep, _, acc in results if lab == label and ep == epochs]
      cells.append(f"{np.mean(values):.2f} +- {np.std(values):.2f}")
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  pathlib.Path(FLAGS.output).write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
