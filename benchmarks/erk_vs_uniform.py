r"""ERK against uniform sparsity at (nearly) equal parameter count, on real Fashion-MNIST.

RigL and Static at 90% and 95%, each with the uniform and the ERK distribution, on two
convolutional networks:
- LeNet-5 through `mnist/mnist_train_eval.py` (its rules: conv1 and the output layer
  dense under both distributions). Its masked layers (conv2 5x5x6x16, fc1 400x120,
  fc2 120x84) have similar ERK densities, so the distributions barely differ there.
- a small all-convolutional network whose layers grow 16 -> 32 -> 64 -> 128 channels as
  they shrink 28 -> 14 -> 7 -> 4 pixels, with batch normalization (a ResNet's shape
  in miniature), under the
  paper's rules: uniform keeps the first layer dense, ERK distributes over every layer.
  ERK gives the small early convolutions, which run at many positions, more weights.

The paper finds ERK more accurate, for more inference FLOPs.

  python -m benchmarks.erk_vs_uniform

Writes benchmarks/results/erk_vs_uniform.{md,json,png}.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import TYPE_CHECKING

from absl import app
from absl import flags

from benchmarks import fashion_mnist_runs
from benchmarks import report_files

if TYPE_CHECKING:
  import tf_keras

NAME = "erk_vs_uniform"
SPARSITIES = (0.9, 0.95)
METHODS = (("scratch", "Static"), ("rigl", "RigL"))
DISTRIBUTIONS = (("random", "uniform"), ("erdos_renyi_kernel", "ERK"))
LENET5, SMALL_CNN = "LeNet-5", "small CNN"
NETWORKS = (LENET5, SMALL_CNN)
# LeNet-5 at the script's rate 0.2, and RigL at 0.1, collapse to chance in some 95% runs.
LENET5_LEARNING_RATE = 0.05
# The small CNN: filters per 3x3 convolution (the first at stride 1, the rest at 2).
SMALL_CNN_FILTERS = (16, 32, 64, 128)
SMALL_CNN_LEARNING_RATE = 0.1
BATCH_SIZE = 100
MASK_UPDATE_END_FRACTION = 0.75
MOMENTUM = 0.9
DROP_FRACTION = 0.3

flags.DEFINE_integer("num_epochs", 5, "Training epochs of every run.")
flags.DEFINE_integer("seeds", 3, "Seeds per configuration (0, 1, ...).")
flags.DEFINE_integer("workers", 2, "Parallel training processes (one thread each).")
flags.DEFINE_boolean("report_only", False, "Only rewrite the report from the JSON.")
FLAGS = flags.FLAGS


def small_cnn() -> "tf_keras.Model":
  import tf_keras  # pylint: disable=import-outside-toplevel
  layers = [tf_keras.Input((28, 28, 1))]
  for index, filters in enumerate(SMALL_CNN_FILTERS):
    layers += [tf_keras.layers.Conv2D(filters, 3, strides=1 if index == 0 else 2,
                                      padding="same", use_bias=False,
                                      name=f"conv{index + 1}"),
               tf_keras.layers.BatchNormalization(),
               tf_keras.layers.ReLU()]
  layers += [tf_keras.layers.GlobalAveragePooling2D(),
             tf_keras.layers.Dense(10, name="logits")]
  return tf_keras.Sequential(layers)


def train_small_cnn(run: dict, data_dir: str = fashion_mnist_runs.DEFAULT_DATA_DIR) -> dict:
  """Trains the small CNN with `rigl.sparsify` and `fit`; returns accuracy and FLOPs."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  import tf_keras  # pylint: disable=import-outside-toplevel
  import rigl  # pylint: disable=import-outside-toplevel
  from rigl import flops  # pylint: disable=import-outside-toplevel
  from rigl.datasets import mnist as data  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  train_split, test_split = data.load("fashion_mnist", data_dir)
  steps_per_epoch = len(train_split.labels) // BATCH_SIZE
  total_steps = run["num_epochs"] * steps_per_epoch
  tf_keras.utils.set_random_seed(run["seed"])
  model = small_cnn()
  uniform = run["mask_init_method"] == "random"
  config = rigl.SparsityConfig(run["end_sparsity"], run["mask_init_method"],
                               first_layer_sparsity=0.0 if uniform else -1.0,
                               last_layer_sparsity=-1.0)
  optimizer = rigl.create_sparse_optimizer(
      run["training_method"],
      tf_keras.optimizers.SGD(tf_keras.optimizers.schedules.CosineDecay(
          SMALL_CNN_LEARNING_RATE, total_steps), momentum=MOMENTUM, nesterov=True),
      model, config, seed=run["seed"],
      schedule=rigl.MaskUpdateSchedule(
          end_step=int(MASK_UPDATE_END_FRACTION * total_steps), drop_fraction=DROP_FRACTION,
          drop_fraction_anneal="cosine"))
  model.compile(optimizer=optimizer, metrics=["accuracy"],
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(data.to_dataset(train_split, BATCH_SIZE, False, run["seed"]).repeat(),
            steps_per_epoch=steps_per_epoch, epochs=run["num_epochs"], verbose=0)
  _, accuracy = model.evaluate(data.to_dataset(test_split, BATCH_SIZE, False, None),
                               verbose=0)
  specs = flops.layer_specs(model)
  sparsities = flops.mask_sparsities(optimizer.masks)
  sparse, dense = flops.count(specs, sparsities), flops.count(specs, {})
  return dict(run, test_accuracy=float(accuracy),
              inference_flops_ratio=sparse.flops / dense.flops,
              nonzero_params=sparse.nonzero_params,
              layer_sparsities={name: round(value, 4) for name, value in sparsities.items()},
              wall_time_s=round(time.perf_counter() - start, 1))


def run_job(job: dict) -> dict:
  """Trains one job (LeNet-5 through the script, or the small CNN) in this process."""
  run = {key: value for key, value in job.items() if key != "network"}
  if job["network"] == SMALL_CNN:
    return dict(train_small_cnn(run), network=SMALL_CNN)
  result = fashion_mnist_runs.train(dict(run, network_type="lenet5",
                                         learning_rate=LENET5_LEARNING_RATE))
  return dict(result, network=LENET5)


def planned_jobs(num_epochs: int, seeds: int) -> list[dict]:
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  jobs = []
  for network in NETWORKS:
    schedule = (mnist_train_eval.shortened_schedule(num_epochs) if network == LENET5
                else {"num_epochs": num_epochs})
    jobs += [dict(network=network, training_method=method, end_sparsity=sparsity,
                  mask_init_method=distribution, seed=seed, **schedule)
             for sparsity in SPARSITIES for method, _ in METHODS
             for distribution, _ in DISTRIBUTIONS for seed in range(seeds)]
  return jobs


def summarize(runs: list[dict]) -> list[dict]:
  rows = []
  for network in NETWORKS:
    for sparsity in SPARSITIES:
      for method, method_label in METHODS:
        row = {"network": network, "sparsity": sparsity, "method": method_label}
        accuracy = {}
        for distribution, label in DISTRIBUTIONS:
          group = [r for r in runs if (r["network"], r["end_sparsity"], r["training_method"],
                                       r["mask_init_method"])
                   == (network, sparsity, method, distribution)]
          if not group:
            break
          accuracy[label] = [r["test_accuracy"] for r in group]
          mean, std = fashion_mnist_runs.mean_std(accuracy[label])
          row[label] = {"mean": mean, "std": std, "values": accuracy[label],
                        "inference_flops_ratio": group[0]["inference_flops_ratio"]}
        else:
          row["erk_minus_uniform"] = row["ERK"]["mean"] - row["uniform"]["mean"]
          row["welch_p_value"] = fashion_mnist_runs.welch_p_value(accuracy["ERK"],
                                                                  accuracy["uniform"])
          rows.append(row)
  return rows


def nonzero_counts(runs: list[dict]) -> str:
  """The small CNN's non-zero weights per sparsity and distribution, as a sentence."""
  parts = []
  for sparsity in SPARSITIES:
    counts = {label: next(r["nonzero_params"] for r in runs if r["network"] == SMALL_CNN
                          and (r["end_sparsity"], r["mask_init_method"]) == (sparsity, name))
              for name, label in DISTRIBUTIONS}
    parts.append(f"{sparsity:g}: uniform {counts['uniform']:.0f}, ERK {counts['ERK']:.0f}")
  return "; ".join(parts)


def write_report(runs: list[dict], settings: dict) -> None:
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  rows = summarize(runs)
  lenet5 = mnist_train_eval.shortened_schedule(settings["num_epochs"])
  lines = [
      "# ERK against uniform at (nearly) equal parameter count, Fashion-MNIST", "",
      f"Test accuracy (%), mean +- std over {settings['seeds']} seeds, "
      f"{settings['num_epochs']} epochs; inference FLOPs relative to the dense network "
      "(MicroNet rules, as `rigl.flops`); p: Welch's t-test. LeNet-5: the script, learning "
      f"rate {LENET5_LEARNING_RATE}, conv1 and output layer dense under both (equal "
      "non-zeros), its schedule shortened in proportion: learning rate divided by 3 after "
      f"epoch {lenet5['lr_drop_epoch']}, mask updates until step "
      f"{lenet5['maskupdate_end_step']}. Small CNN: 3x3 convolutions with "
      f"{'/'.join(map(str, SMALL_CNN_FILTERS))} filters and batch norm, a dense output, "
      f"SGD with Nesterov momentum {MOMENTUM}, learning rate {SMALL_CNN_LEARNING_RATE} "
      f"with cosine decay, mask updates until {MASK_UPDATE_END_FRACTION:.0%} of training; "
      "uniform keeps the first layer dense, ERK covers every layer, so uniform keeps a few "
      f"more weights (non-zeros {nonzero_counts(runs)}). Mask updates every 100 steps, "
      f"drop fraction {DROP_FRACTION} (cosine). "
      "Written by `python -m benchmarks.erk_vs_uniform`; plot: "
      "[erk_vs_uniform.png](erk_vs_uniform.png).", "",
      "| Network | Sparsity | Method | uniform | ERK | ERK - uniform (p) | FLOPs uniform | "
      "FLOPs ERK |", "|---|---|---|---|---|---|---|---|"]
  for row in rows:
    uniform, erk, p_value = row["uniform"], row["ERK"], row["welch_p_value"]
    lines.append(
        f"| {row['network']} | {row['sparsity']:g} | {row['method']} | "
        f"{100 * uniform['mean']:.2f} +- {100 * uniform['std']:.2f} | "
        f"{100 * erk['mean']:.2f} +- {100 * erk['std']:.2f} | "
        f"{100 * row['erk_minus_uniform']:+.2f} "
        f"({'-' if p_value is None else f'{p_value:.2g}'}) | "
        f"{uniform['inference_flops_ratio']:.3f}x | {erk['inference_flops_ratio']:.3f}x |")
  report_files.write(NAME, lines, {"settings": settings, "summary": rows, "runs": runs})
  plot(rows)


def plot(rows: list[dict]) -> None:
  """Accuracy against inference FLOPs, one panel per network."""
  pyplot = report_files.pyplot()
  figure, axes = pyplot.subplots(1, len(NETWORKS), figsize=(5.5 * len(NETWORKS), 4))
  for axis, network in zip(axes, NETWORKS):
    for (_, method_label), line in zip(METHODS, ("--", "-")):
      for (_, label), color in zip(DISTRIBUTIONS, ("tab:blue", "tab:orange")):
        points = [(row[label]["inference_flops_ratio"], 100 * row[label]["mean"],
                   100 * row[label]["std"]) for row in rows
                  if (row["network"], row["method"]) == (network, method_label)]
        if points:
          xs, ys, errors = zip(*points)
          axis.errorbar(xs, ys, yerr=errors, marker="o", color=color, linestyle=line,
                        capsize=3, label=f"{method_label}, {label}")
    axis.set_title(f"{network}: 95% (left point) and 90% sparse")
    axis.set_xlabel("inference FLOPs / dense")
    axis.set_ylabel("test accuracy (%)")
    axis.grid(alpha=0.3)
  axes[0].legend()
  report_files.save_figure(figure, NAME)


def main(argv):
  del argv
  if FLAGS.report_only:
    saved = report_files.load(NAME)
    write_report(saved["runs"], saved["settings"])
    return
  jobs = planned_jobs(FLAGS.num_epochs, FLAGS.seeds)
  runs = []
  with multiprocessing.get_context("spawn").Pool(FLAGS.workers, maxtasksperchild=4) as pool:
    for count, run in enumerate(pool.imap_unordered(run_job, jobs), start=1):
      print(f"[{count}/{len(jobs)}] {run['network']}, {run['training_method']}, "
            f"{run['mask_init_method']} {run['end_sparsity']}, seed {run['seed']}: "
            f"accuracy {run['test_accuracy']:.4f}, FLOPs {run['inference_flops_ratio']:.3f}"
            f" ({run['wall_time_s']} s)", flush=True)
      runs.append(run)
  write_report(runs, {"num_epochs": FLAGS.num_epochs, "seeds": FLAGS.seeds})


if __name__ == "__main__":
  app.run(main)
