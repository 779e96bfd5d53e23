r"""What 1x4 block masks cost in accuracy: Fashion-MNIST FC, elementwise against blocks.

Trains the FC 784-300-100-10 network with `mnist/mnist_train_eval.py` (in-process, in
worker processes with one thread each) at its default sparsities (98%; layer2 at
0.9 x 98%, layer3 dense) with Static, SET and RigL at the script's learning rate 0.2,
and RigL again at 0.1, --seeds seeds each, once with elementwise masks and once with
`--dense_block_size=4` (blocks of 4 consecutive inputs of a unit: the layout TFLite's
FULLY_CONNECTED runs sparse, see `benchmarks/tflite_dense_layers.py`). Every other
setting is the script's default, with --num_epochs instead of 200 and the schedule
shortened in proportion (`mnist_train_eval.shortened_schedule`). Reports mean +- sample standard deviation of
test accuracy and the block - elementwise difference per method with Welch's t-test.
Writes block_masks_fashion_mnist.json and .md under --output_dir (about 10 minutes on
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

from benchmarks import fashion_mnist_runs

REPO = pathlib.Path(__file__).resolve().parent.parent
FLAGS = flags.FLAGS
# (method, learning rate): the script's rate 0.2, and RigL at half of it too.
CONFIGURATIONS = (("scratch", 0.2), ("set", 0.2), ("rigl", 0.2), ("rigl", 0.1))
LABELS = {"scratch": "Static", "set": "SET", "rigl": "RigL"}
BLOCK_SIZES = (1, 4)
# Welch's t-test p-value at or above which a difference counts as seed noise.
NOISE_P_VALUE = 0.05
# Test accuracy at or below which a run counts as collapsed (chance is 0.1).
COLLAPSED_ACCURACY = 0.15

flags.DEFINE_string("fashion_mnist_dir", "/usr/share/datasets/fashion-mnist",
                    "Folder with the Fashion-MNIST IDX files.")
flags.DEFINE_integer("num_epochs", 30, "Training epochs of every run.")
flags.DEFINE_integer("seeds", 3, "Seeds per method and block size (0, 1, ...).")
flags.DEFINE_integer("workers", 2, "Parallel training processes (one thread each).")
flags.DEFINE_string("output_dir", str(REPO / "benchmarks" / "results"),
                    "Where the results go.")
flags.DEFINE_boolean("report_only", False,
                     "Only rewrite the table from the runs in --output_dir's JSON.")


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
      learning_rate=run["learning_rate"], dense_block_size=run["block_size"],
      save_path="",
      **mnist_train_eval.shortened_schedule(num_epochs))
  tf_keras.backend.clear_session()
  start = time.perf_counter()
  results = mnist_train_eval.run()
  return dict(run, test_accuracy=float(results["test_accuracy"]),
              global_sparsity=float(results["global_sparsity"]),
              wall_time_s=round(time.perf_counter() - start, 1))


def _train_one_star(args):
  return train_one(*args)


def summarize(runs: list[dict]) -> list[dict]:
  rows = []
  for method, learning_rate in CONFIGURATIONS:
    accuracy = {block: [r["test_accuracy"] for r in runs
                        if (r["method"], r["learning_rate"]) == (method, learning_rate)
                        and r["block_size"] == block]
                for block in BLOCK_SIZES}
    if not all(accuracy.values()):
      continue
    row = {"method": method, "learning_rate": learning_rate}
    for block, values in accuracy.items():
      row[f"block_{block}"] = {
          "mean": statistics.mean(values),
          "std": statistics.stdev(values) if len(values) > 1 else 0.0,
          "values": values}
    row["difference"] = row["block_4"]["mean"] - row["block_1"]["mean"]
    row["welch_p_value"] = fashion_mnist_runs.welch_p_value(accuracy[4], accuracy[1])
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
      "", "| Method | Learning rate | Elementwise | 1x4 blocks | Blocks - elementwise | "
      "Welch p |", "|---|---|---|---|---|---|"]
  for row in rows:
    p_value = row["welch_p_value"]
    any_collapsed = any(value <= COLLAPSED_ACCURACY for block in BLOCK_SIZES
                        for value in row[f"block_{block}"]["values"])
    verdict = "-" if p_value is None else f"{p_value:.3f} " + (
        "(not meaningful: a seed collapsed)" if any_collapsed else
        f"({'within' if p_value >= NOISE_P_VALUE else 'outside'} seed noise)")
    cells = []
    for block in BLOCK_SIZES:
      entry = row[f"block_{block}"]
      collapsed = sum(value <= COLLAPSED_ACCURACY for value in entry["values"])
      cells.append(f"{100 * entry['mean']:.2f} +- {100 * entry['std']:.2f}" + (
          f" ({collapsed} of {len(entry['values'])} collapsed to chance)"
          if collapsed else ""))
    lines.append(f"| {LABELS[row['method']]} | {row['learning_rate']} | {cells[0]} | "
                 f"{cells[1]} | {100 * row['difference']:+.2f} | {verdict} |")
  lines += ["", f"Collapsed: test accuracy at or below {COLLAPSED_ACCURACY:.0%} (chance is "
            "10%); a collapsed seed makes the spread large and Welch's test weak."]
  lines += ["", "Per seed (%): " + "; ".join(
      f"{LABELS[row['method']]} {row['learning_rate']} "
      + ", ".join(f"block {b}: " + " ".join(f"{100 * v:.2f}"
                                            for v in row[f"block_{b}"]["values"])
                  for b in BLOCK_SIZES)
      for row in rows) + "."]
  (directory / "block_masks_fashion_mnist.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


def main(argv):
  del argv
  output_dir = pathlib.Path(FLAGS.output_dir)
  if FLAGS.report_only:
    saved = json.loads((output_dir / "block_masks_fashion_mnist.json").read_text())
    for name, value in saved["settings"].items():
      FLAGS[name].value = value
    write_report(saved["runs"], output_dir)
    return
  runs = [{"method": method, "learning_rate": learning_rate, "block_size": block,
           "seed": seed}
          for method, learning_rate in CONFIGURATIONS for block in BLOCK_SIZES
          for seed in range(FLAGS.seeds)]
  jobs = [(run, FLAGS.fashion_mnist_dir, FLAGS.num_epochs) for run in runs]
  results = []
  context = multiprocessing.get_context("spawn")
  with context.Pool(FLAGS.workers, maxtasksperchild=4) as pool:
    for index, row in enumerate(pool.imap_unordered(_train_one_star, jobs), start=1):
      results.append(row)
      print(f"[{index}/{len(jobs)}] {row['method']} lr {row['learning_rate']} block "
            f"{row['block_size']} seed {row['seed']}: accuracy "
            f"{row['test_accuracy']:.4f} ({row['wall_time_s']} s)", flush=True)
  order = [(run["method"], run["learning_rate"], run["block_size"], run["seed"])
           for run in runs]
  results.sort(key=lambda r: order.index((r["method"], r["learning_rate"],
                                          r["block_size"], r["seed"])))
  write_report(results, output_dir)


if __name__ == "__main__":
  app.run(main)
