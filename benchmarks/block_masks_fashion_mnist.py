r"""What 1x4 block masks cost in accuracy: Fashion-MNIST FC, elementwise against blocks.

Trains the FC 784-300-100-10 network with `mnist/mnist_train_eval.py` (in-process, in
worker processes with one thread each) at its default sparsities (98%; layer2 at
0.9 x 98%, layer3 dense) with Static, SET and RigL, --seeds seeds each, once with
elementwise masks and once with `--dense_block_size=4` (blocks of 4 consecutive inputs
of a unit: the layout TFLite's FULLY_CONNECTED runs sparse, see
`benchmarks/tflite_dense_layers.py`). Every other setting is the script's default,
with --num_epochs instead of 200 and the schedule shortened in proportion
(`mnist_train_eval.shortened_schedule`). Reports mean +- sample standard deviation of
test accuracy and the block - elementwise difference per method with Welch's t-test.
Writes block_masks_fashion_mnist.json and .md under --output_dir (about 15 minutes on
two CPU cores):

  python -m benchmarks.block_masks_fashion_mnist
"""

from __future__ import annotations

import json
import multiprocessing
import pathlib
import statistics
import time

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parent.parent
FLAGS = flags.FLAGS
METHODS = ("scratch", "set", "rigl")
LABELS = {"scratch": "Static", "set": "SET", "rigl": "RigL"}
BLOCK_SIZES = (1, 4)
# Welch's t-test p-value at or above which a difference counts as seed noise.
NOISE_P_VALUE = 0.05

flags.DEFINE_string("fashion_mnist_dir", "/usr/share/datasets/fashion-mnist",
                    "Folder with the Fashion-MNIST IDX files.")
flags.DEFINE_integer("num_epochs", 30, "Training epochs of every run.")
flags.DEFINE_integer("seeds", 3, "Seeds per method and block size (0, 1, ...).")
flags.DEFINE_integer("workers", 2, "Parallel training processes (one thread each).")
flags.DEFINE_string("output_dir", str(REPO / "benchmarks" / "results"),
                    "Where the results go.")


def train_one(run: dict, data_dir: str, num_epochs: int) -> dict:
  """Trains one configuration in this (worker) process; returns it with its results."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  import tf_keras  # pylint: disable=import-outside-toplevel
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  from rigl import script_flags  # pylint: disable=import-outside-toplevel
  script_flags.set_values(
      mnist_train_eval.FLAGS, dataset="fashion_mnist", data_dir=data_dir,
      network_type="fc", training_method=run["method"], seed=run["seed"],
      dense_block_size=run["block_size"], save_path="",
      **mnist_train_eval.shortened_schedule(num_epochs))
  tf_keras.backend.clear_session()
  start = time.perf_counter()
  results = mnist_train_eval.run()
  return dict(run, test_accuracy=float(results["test_accuracy"]),
              global_sparsity=float(results["global_sparsity"]),
              wall_time_s=round(time.perf_counter() - start, 1))


def _train_one_star(args):
  return train_one(*args)


def welch_p_value(a: list[float], b: list[float]) -> float | None:
  """Two-sided p-value of Welch's t-test, or None with fewer than two values each."""
  if len(a) < 2 or len(b) < 2:
    return None
  from scipy import stats  # pylint: disable=import-outside-toplevel
  return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def summarize(runs: list[dict]) -> list[dict]:
  rows = []
  for method in METHODS:
    accuracy = {block: [r["test_accuracy"] for r in runs
                        if r["method"] == method and r["block_size"] == block]
                for block in BLOCK_SIZES}
    if not all(accuracy.values()):
      continue
    row = {"method": method}
    for block, values in accuracy.items():
      row[f"block_{block}"] = {
          "mean": statistics.mean(values),
          "std": statistics.stdev(values) if len(values) > 1 else 0.0,
          "values": values}
    row["difference"] = row["block_4"]["mean"] - row["block_1"]["mean"]
    row["welch_p_value"] = welch_p_value(accuracy[4], accuracy[1])
    rows.append(row)
  return rows


def write_report(runs: list[dict], directory: pathlib.Path) -> None:
  rows = summarize(runs)
  directory.mkdir(parents=True, exist_ok=True)
  settings = {"num_epochs": FLAGS.num_epochs, "seeds": FLAGS.seeds,
              "workers": FLAGS.workers}
  (directory / "block_masks_fashion_mnist.json").write_text(json.dumps(
      {"settings": settings, "runs": runs, "summary": rows}, indent=2) + "\n")
  sparsity = runs[0]["global_sparsity"] if runs else float("nan")
  lines = [
      "# Fashion-MNIST FC at 98%: 1x4 block masks against elementwise masks", "",
      f"`mnist/mnist_train_eval.py` with its defaults (layer1 98%, layer2 88.2%, layer3 "
      f"dense: global sparsity {sparsity:.4f}), {FLAGS.num_epochs} epochs with the "
      "schedule shortened in proportion, elementwise masks against "
      "`--dense_block_size=4`. Test accuracy (%), mean +- sample standard deviation "
      f"over {FLAGS.seeds} seeds. Written by `benchmarks/block_masks_fashion_mnist.py`.",
      "", "| Method | Elementwise | 1x4 blocks | Blocks - elementwise | Welch p |",
      "|---|---|---|---|---|"]
  for row in rows:
    p_value = row["welch_p_value"]
    verdict = "-" if p_value is None else (
        f"{p_value:.3f} ({'within' if p_value >= NOISE_P_VALUE else 'outside'} seed "
        "noise)")
    cells = [f"{100 * row[f'block_{b}']['mean']:.2f} +- "
             f"{100 * row[f'block_{b}']['std']:.2f}" for b in BLOCK_SIZES]
    lines.append(f"| {LABELS[row['method']]} | {cells[0]} | {cells[1]} | "
                 f"{100 * row['difference']:+.2f} | {verdict} |")
  (directory / "block_masks_fashion_mnist.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


def main(argv):
  del argv
  runs = [{"method": method, "block_size": block, "seed": seed}
          for method in METHODS for block in BLOCK_SIZES for seed in range(FLAGS.seeds)]
  jobs = [(run, FLAGS.fashion_mnist_dir, FLAGS.num_epochs) for run in runs]
  results = []
  context = multiprocessing.get_context("spawn")
  with context.Pool(FLAGS.workers, maxtasksperchild=4) as pool:
    for index, row in enumerate(pool.imap_unordered(_train_one_star, jobs), start=1):
      results.append(row)
      print(f"[{index}/{len(jobs)}] {row['method']} block {row['block_size']} seed "
            f"{row['seed']}: accuracy {row['test_accuracy']:.4f} ({row['wall_time_s']} s)",
            flush=True)
  results.sort(key=lambda r: (METHODS.index(r["method"]), r["block_size"], r["seed"]))
  write_report(results, pathlib.Path(FLAGS.output_dir))


if __name__ == "__main__":
  app.run(main)
