r"""The accuracy floor of the CI test `mnist/fashion_mnist_floor_test.py`, measured.

The test trains the FC network (98% sparse) on real Fashion-MNIST for `EPOCHS` epochs
with RigL and with SET at seed 0 and asserts test accuracy at or above `FLOORS`. This
benchmark runs the same configuration over `--seeds` seeds and reports, per method, the
mean, standard deviation and minimum, the floor that rule gives (mean minus
`MARGIN_STDS` standard deviations, rounded down to a half point, and never above the
lowest seed less half a point), and whether `FLOORS` holds for every seed.

  python -m benchmarks.fashion_mnist_floor

Writes benchmarks/results/fashion_mnist_floor.{md,json}.
"""

from __future__ import annotations

import math

from absl import app
from absl import flags

from benchmarks import fashion_mnist_runs
from benchmarks import report_files

NAME = "fashion_mnist_floor"
EPOCHS = 2
METHODS = ("rigl", "set")
# Test accuracy the CI test requires, per method (set from this benchmark's results).
FLOORS = {"rigl": 0.825, "set": 0.835}
MARGIN_STDS = 4
# Floors are multiples of this, and at least this far below the worst seed.
FLOOR_QUANTUM = 0.005

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Defines the command-line flags (only when run as a program: the CI test imports
  this module)."""
  flags.DEFINE_integer("seeds", 20, "Seeds per method (0, 1, ...).")
  flags.DEFINE_integer("workers", 2, "Parallel training processes (one thread each).")
  flags.DEFINE_boolean("report_only", False, "Only rewrite the report from the JSON.")


def floor_run(method: str, seed: int = 0) -> dict:
  """The test's configuration: FC at the script's 98%, its schedule over EPOCHS epochs."""
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  return dict(network_type="fc", training_method=method, seed=seed,
              **mnist_train_eval.shortened_schedule(EPOCHS))


def suggested_floor(accuracies: list[float]) -> float:
  """Mean minus MARGIN_STDS standard deviations, at least a quantum below the worst seed,
  rounded down to a multiple of FLOOR_QUANTUM."""
  mean, std = fashion_mnist_runs.mean_std(accuracies)
  floor = math.floor((mean - MARGIN_STDS * std) / FLOOR_QUANTUM) * FLOOR_QUANTUM
  return min(floor, math.floor(min(accuracies) / FLOOR_QUANTUM) * FLOOR_QUANTUM
             - FLOOR_QUANTUM)


def main(argv):
  del argv
  if FLAGS.report_only:
    runs = report_files.load(NAME)["runs"]
  else:
    runs = fashion_mnist_runs.train_all(
        [floor_run(method, seed) for method in METHODS for seed in range(FLAGS.seeds)],
        FLAGS.workers)
  write_report(runs)


def write_report(runs: list[dict]) -> None:
  seeds = len({r["seed"] for r in runs})
  lines = ["# Accuracy floor of the Fashion-MNIST CI test", "",
           f"FC 784-300-100-10 at 98% sparsity, {EPOCHS} epochs (the script's schedule "
           "shortened in proportion), learning rate 0.2, on the real Fashion-MNIST; "
           f"{seeds} seeds. Written by `python -m benchmarks.fashion_mnist_floor`; "
           "the floors are `FLOORS` there, which `mnist/fashion_mnist_floor_test.py` "
           "asserts at seed 0.", "",
           "| Method | mean | std | min | max | suggested floor | floor used | seeds below |",
           "|---|---|---|---|---|---|---|---|"]
  summary = {}
  for method in METHODS:
    accuracies = [r["test_accuracy"] for r in runs if r["training_method"] == method]
    mean, std = fashion_mnist_runs.mean_std(accuracies)
    below = sum(accuracy < FLOORS[method] for accuracy in accuracies)
    summary[method] = {"accuracies": accuracies, "mean": mean, "std": std,
                       "suggested_floor": suggested_floor(accuracies),
                       "floor": FLOORS[method], "seeds_below": below}
    lines.append(f"| {method} | {100 * mean:.2f} | {100 * std:.2f} | "
                 f"{100 * min(accuracies):.2f} | {100 * max(accuracies):.2f} | "
                 f"{100 * suggested_floor(accuracies):.1f} | {100 * FLOORS[method]:.1f} | "
                 f"{below} |")
  wall = [r["wall_time_s"] for r in runs]
  lines += ["", f"One run takes {min(wall):.0f}-{max(wall):.0f} s here (one thread)."]
  report_files.write(NAME, lines, {"summary": summary, "runs": runs})


if __name__ == "__main__":
  _define_flags()
  app.run(main)
