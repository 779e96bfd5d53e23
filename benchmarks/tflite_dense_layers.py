r"""TFLite latency of sparse Dense layers: 1x4 block masks run sparse, elementwise do not.

For FC-300-100 (`rigl.models.mnist_fc`) and a 3-layer 4096-wide MLP (4096 inputs, three
Dense layers of 4096 units, ReLU between), at each of --sparsities: random weights and
biases, every kernel masked at that sparsity (`rigl.SparsityConfig(s, "random")`), once
with elementwise masks and once with masks in blocks of 4 consecutive inputs
(`dense_block_size=4`). `rigl.export.export_tflite` writes three files:

- dense: the block-masked model with its weights stored dense (`sparse=False`);
- block: the same model in TFLite's sparse encoding: 1x4 blocks, read directly by
  FULLY_CONNECTED's block-sparse kernel;
- elementwise: the elementwise-masked model in the sparse encoding, which the converter
  stores behind DENSIFY ops (expanded to dense weights at the first call) unless nearly
  every 1x4 block of the weight is empty anyway (at 99%).

Each file runs in `tf.lite.Interpreter` with --threads threads at batch 1 and 32: dense
with the default XNNPACK delegate (the fastest dense baseline) and with the built-in
kernels; block and elementwise with the interpreter's default settings. The four take
turns in chunks of --chunk_runs calls after --warmup_runs untimed ones. How each weight
is stored and read is taken from the interpreter's own graph
(`rigl.export.tflite_weight_storage`), with the number of nodes XNNPACK took over.
Target: the block file >= 3x faster than dense (XNNPACK) at 95% on the 4096-wide MLP.

Writes tflite_dense_layers.json and .md under --output_dir (about 3 minutes on two CPU
cores):

  python -m benchmarks.tflite_dense_layers
  python -m benchmarks.tflite_dense_layers --models=fc_300_100 --runs=20  # smoke test
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras

import rigl
from benchmarks import tflite_timing
from rigl import export
from rigl import models

REPO = pathlib.Path(__file__).resolve().parent.parent
FLAGS = flags.FLAGS
BLOCK = 4
MLP_WIDTH = 4096
MLP_LAYERS = 3
MODELS = ("fc_300_100", "mlp_4096")
BATCH_SIZES = (1, 32)
# (file, kernels) timed per model, sparsity, thread count and batch size.
VARIANTS = (("dense", tflite_timing.XNNPACK), ("dense", tflite_timing.BUILT_IN),
            ("block", tflite_timing.XNNPACK), ("elementwise", tflite_timing.XNNPACK))
BASELINE = ("dense", tflite_timing.XNNPACK)
TARGET = {"model": "mlp_4096", "sparsity": 0.95, "speed_up": 3.0}
BIAS_RANGE = (-0.1, 0.1)

flags.DEFINE_list("models", list(MODELS), f"Models, of {', '.join(MODELS)}.")
flags.DEFINE_list("sparsities", ["0.9", "0.95", "0.99"], "Weight sparsities.")
flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts.")
flags.DEFINE_integer("runs", 100, "Timed calls per file and setting.")
flags.DEFINE_integer("warmup_runs", 5, "Untimed calls first (the first densifies).")
flags.DEFINE_integer("chunk_runs", 10, "Calls per turn of an interpreter.")
flags.DEFINE_integer("seed", 0, "Seed of weights, masks and inputs.")
flags.DEFINE_string("output_dir", str(REPO / "benchmarks" / "results"),
                    "Where the results go.")


def build(name: str) -> tf_keras.Model:
  """The model `name` with random weights and biases (seeded)."""
  tf_keras.utils.set_random_seed(FLAGS.seed)
  if name == "fc_300_100":
    model = models.mnist_fc()
  else:
    inputs = tf_keras.Input((MLP_WIDTH,))
    x = inputs
    for index in range(MLP_LAYERS):
      last = index == MLP_LAYERS - 1
      x = tf_keras.layers.Dense(MLP_WIDTH, activation=None if last else "relu",
                                name=f"dense_{index + 1}")(x)
    model = tf_keras.Model(inputs, x, name=name)
  rng = np.random.default_rng(FLAGS.seed)
  for layer in model.layers:
    if getattr(layer, "bias", None) is not None:
      layer.bias.assign(rng.uniform(*BIAS_RANGE, layer.bias.shape).astype(np.float32))
  return model


def masked(name: str, sparsity: float, block_size: int) -> tf_keras.Model:
  """`build(name)` with every kernel masked at `sparsity` (blocks of `block_size` rows)."""
  model = build(name)
  rigl.create_sparse_optimizer(
      "scratch", tf_keras.optimizers.SGD(0.1), model,
      rigl.SparsityConfig(sparsity, "random", dense_block_size=block_size),
      seed=FLAGS.seed)
  return model


def measure(name: str, sparsity: float, directory: pathlib.Path) -> list[dict[str, object]]:
  """Rows of every variant, thread count and batch size of one model at `sparsity`."""
  tf_keras.backend.clear_session()
  block_model = masked(name, sparsity, BLOCK)
  elementwise_model = masked(name, sparsity, 1)
  files = {}
  for file, model, sparse in (("dense", block_model, False), ("block", block_model, True),
                              ("elementwise", elementwise_model, True)):
    path = directory / f"{name}_{sparsity}_{file}.tflite"
    start = time.perf_counter()
    size = export.export_tflite(model, str(path), sparse)
    files[file] = {"path": path, "bytes": size, "storage": export.tflite_storage_counts(path.read_bytes()),
                   "conversion_s": time.perf_counter() - start, "model": model}
  rows = []
  width = block_model.input_shape[-1]
  rng = np.random.default_rng(FLAGS.seed)
  for threads in (int(value) for value in FLAGS.threads):
    for batch in BATCH_SIZES:
      inputs = rng.random((batch, width), dtype=np.float32)
      runners = {}
      for file, kernels in VARIANTS:
        runner = tflite_timing.interpreter(files[file]["path"], kernels, threads,
                                           input_shape=(batch, width))
        runner.set_tensor(runner.get_input_details()[0]["index"], inputs)
        runners[(file, kernels)] = runner
      load_before = os.getloadavg()[0]
      times = tflite_timing.time_in_turns(runners, FLAGS.runs, FLAGS.warmup_runs,
                                          FLAGS.chunk_runs)
      load_after = os.getloadavg()[0]
      baseline = float(np.median(times[BASELINE]))
      for (file, kernels), runner in runners.items():
        reference = files[file]["model"](inputs, training=False).numpy()
        outputs = runner.get_tensor(runner.get_output_details()[0]["index"])
        rows.append({
            "model": name, "sparsity": sparsity, "threads": threads, "batch": batch,
            "file": file, "kernels": kernels, "file_bytes": files[file]["bytes"],
            "weight_storage": files[file]["storage"],
            "conversion_s": files[file]["conversion_s"],
            "delegate_nodes": tflite_timing.op_counts(runner).get("DELEGATE", 0),
            **tflite_timing.summary_ms(times[(file, kernels)]),
            "speed_up_vs_dense_xnnpack": baseline / float(np.median(times[(file,
                                                                           kernels)])),
            "max_output_difference_relative": float(
                np.abs(outputs - reference).max() / np.abs(reference).max()),
            "load_average_1min_before_after": [load_before, load_after]})
        print(f"{name} {sparsity:.0%} threads={threads} batch={batch} {file} "
              f"({kernels}): median {rows[-1]['median_ms']:.3f} ms, "
              f"{rows[-1]['speed_up_vs_dense_xnnpack']:.2f}x dense", flush=True)
  return rows


def _storage_text(storage: dict[str, int]) -> str:
  return ", ".join(f"{count} {kind}" for kind, count in storage.items())


def write_report(rows: list[dict[str, object]], directory: pathlib.Path) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  cpu = tflite_timing.cpu_description()
  settings = {"block": BLOCK, "runs": FLAGS.runs, "warmup_runs": FLAGS.warmup_runs,
              "chunk_runs": FLAGS.chunk_runs, "seed": FLAGS.seed,
              "tensorflow": tf.__version__}
  (directory / "tflite_dense_layers.json").write_text(
      json.dumps({"cpu": cpu, "settings": settings, "rows": rows}, indent=2) + "\n")
  low, high = (f"p{p}" for p in tflite_timing.PERCENTILES)
  lines = [
      "# TFLite latency of sparse Dense layers: 1x4 block masks against dense", "",
      f"CPU: {cpu}, shared with other jobs (1-minute load averages in the table). "
      f"TensorFlow {tf.__version__}, `tf.lite.Interpreter`, float32. Random weights, "
      "every kernel masked at the sparsity (uniform), elementwise or in blocks of "
      f"{BLOCK} consecutive inputs (`rigl.SparsityConfig(dense_block_size={BLOCK})`); "
      "files written by `rigl.export.export_tflite`. `dense`: the block-masked weights "
      "stored dense; `block`: the same weights in TFLite's sparse encoding; "
      "`elementwise`: the elementwise-masked model in the sparse encoding. Kernels: "
      "`XNNPACK` is the interpreter's default (the delegate takes what it supports), "
      "`built-in` TFLite's own kernels only. "
      f"{FLAGS.runs} timed `invoke()` calls per row after {FLAGS.warmup_runs} untimed "
      f"ones, the four rows of a setting taking turns in chunks of {FLAGS.chunk_runs}. "
      "Written by `benchmarks/tflite_dense_layers.py`.", "",
      f"| Model | Sparsity | Threads | Batch | File | Kernels | MB | Median ms | [{low}, "
      f"{high}] ms | Speed-up vs dense (XNNPACK) | Weights: stored, read | XNNPACK "
      "nodes | Load avg |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    loads = row["load_average_1min_before_after"]
    lines.append(
        f"| {row['model']} | {row['sparsity']:.0%} | {row['threads']} | {row['batch']} | "
        f"{row['file']} | {row['kernels']} | "
        f"{row['file_bytes'] / export.BYTES_PER_MEGABYTE:.1f} | {row['median_ms']:.3f} | "
        f"[{row[f'{low}_ms']:.3f}, {row[f'{high}_ms']:.3f}] | "
        f"{row['speed_up_vs_dense_xnnpack']:.2f}x | "
        f"{_storage_text(row['weight_storage'])} | {row['delegate_nodes']} | "
        f"{loads[0]:.1f}-{loads[1]:.1f} |")
  target = [row for row in rows if row["model"] == TARGET["model"]
            and row["sparsity"] == TARGET["sparsity"] and row["file"] == "block"]
  if target:
    figures = ", ".join(f"{row['speed_up_vs_dense_xnnpack']:.1f}x (batch {row['batch']}, "
                        f"{row['threads']} thread{'s' if row['threads'] > 1 else ''})"
                        for row in target)
    met = all(row["speed_up_vs_dense_xnnpack"] >= TARGET["speed_up"] for row in target)
    lines += ["", f"Target: the block file >= {TARGET['speed_up']:.0f}x faster than "
              f"dense at {TARGET['sparsity']:.0%} on the {MLP_WIDTH}-wide MLP: {figures}"
              f" ({'met' if met else 'not met at every setting'})."]
  lines += [
      "", "Weights: how the file stores each FULLY_CONNECTED weight and what reads it, "
      "from the interpreter's graph (`rigl.export.tflite_weight_storage`): `dense`; "
      f"`{export.DENSIFIED_STORAGE}` (a DENSIFY op expands it to a dense tensor at the "
      f"first call, and the dense kernel computes with it); `{export.BLOCK_STORAGE}` (no "
      "DENSIFY: FULLY_CONNECTED reads the 1x4 blocks and runs TFLite's block-sparse "
      "kernel, which multiplies only the stored blocks). XNNPACK nodes: the partitions "
      "the delegate took over (0: every op ran on TFLite's built-in kernels; XNNPACK does "
      "not take a FULLY_CONNECTED whose weight is stored sparse).", "",
      "Why elementwise masks mostly do not run sparse: the converter stores a weight "
      "sparse without DENSIFY only in a block layout the op supports (for float "
      "FULLY_CONNECTED, 1x4) and only when the weight is nearly as sparse in such "
      "blocks as elementwise; otherwise it inserts DENSIFY and the op computes densely. "
      "Elementwise masks at 99% qualify by chance (0.99^4 = 96% of the 1x4 blocks are "
      "empty), and then run sparse too, with the partly filled blocks padded with zeros. "
      "Speed-ups are medians over the dense XNNPACK file's median in the same setting; "
      "read them against the p10-p90 spreads and the load averages.",
  ]
  (directory / "tflite_dense_layers.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


def main(argv):
  del argv
  unknown = sorted(set(FLAGS.models) - set(MODELS))
  if unknown:
    raise app.UsageError(f"Unknown --models {unknown}; allowed values: "
                         f"{', '.join(MODELS)}.")
  rows = []
  with tempfile.TemporaryDirectory() as directory:
    for name in FLAGS.models:
      for sparsity in (float(value) for value in FLAGS.sparsities):
        rows.extend(measure(name, sparsity, pathlib.Path(directory)))
  write_report(rows, pathlib.Path(FLAGS.output_dir))


if __name__ == "__main__":
  app.run(main)
