r"""Single-image CPU latency and file size of dense vs 90%-sparse TFLite models.

For each architecture, builds the model with random weights, masks it to 90% ERK
sparsity (`rigl.SparsityConfig(0.9, "erdos_renyi_kernel")`, every conv/dense layer
masked except MobileNets' first convolution, as the ImageNet script does), and writes
it twice with `rigl.export`: weights stored dense, and in TFLite's sparse encoding. Same
weights, so both compute the same function. Each file runs in `tf.lite.Interpreter`
with one thread, once with the default XNNPACK delegate and once with TFLite's built-in
kernels only. After --warmup_runs untimed calls, every `invoke()` of one float32 image
is timed; the four interpreters of a model take turns in chunks of --chunk_runs calls,
so that drifts of a shared machine fall on all of them alike.
Writes tflite_latency.json and .md under --output_dir.

With --mobilenet_sweep, instead: MobileNet-v1 and -v2 dense against 80/90/95% uniform
and ERK sparsity (first convolution dense), every file with the default XNNPACK
delegate at 1 and 2 threads, all files of a model and thread count taking turns; it
also records whether XNNPACK can run sparse convolutions on this CPU at all (its sparse
NCHW path, which needs the model to start with a 3x3 stride-2 convolution padded by 1
on each side, as `rigl.models`' MobileNets do, is switched off on x86 CPUs with AVX).
Writes tflite_mobilenet_sparsity.json and .md.

  python -m benchmarks.tflite_latency
  python -m benchmarks.tflite_latency --architectures=mnist_fc --runs=50
  python -m benchmarks.tflite_latency --mobilenet_sweep  # about 5 minutes
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
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
SPARSITY = 0.9
DISTRIBUTION = "erdos_renyi_kernel"
NUM_THREADS = 1
MILLISECONDS = tflite_timing.MILLISECONDS
PERCENTILES = tflite_timing.PERCENTILES
# Ranges of the random batch-norm scales (gamma, moving variance) and shifts (beta,
# moving mean, biases).
SCALE_RANGE = (0.5, 1.5)
SHIFT_RANGE = (-0.1, 0.1)
ENCODINGS = (("dense", False), ("sparse", True))
SWEEP_ARCHITECTURES = ("mobilenet_v1", "mobilenet_v2")
SWEEP_SPARSITIES = (0.8, 0.9, 0.95)
SWEEP_DISTRIBUTIONS = (("uniform", "random"), ("ERK", "erdos_renyi_kernel"))
SWEEP_THREADS = (1, 2)

flags.DEFINE_list("architectures", ["mnist_fc", "mobilenet_v1", "resnet50"],
                  "rigl.models architectures to measure.")
flags.DEFINE_integer("runs", 200, "Timed single-image calls per interpreter.")
flags.DEFINE_integer("warmup_runs", 20, "Untimed calls first (the first densifies).")
flags.DEFINE_integer("chunk_runs", 20, "Calls per turn of an interpreter.")
flags.DEFINE_integer("seed", 0, "Seed of weights, masks and the input image.")
flags.DEFINE_string("output_dir", str(REPO / "benchmarks" / "results"),
                    "Where the results go.")
flags.DEFINE_boolean("mobilenet_sweep", False,
                     "Measure MobileNets over sparsities and distributions instead.")


def sparse_model(architecture: str, sparsity: float = SPARSITY,
                 distribution: str = DISTRIBUTION) -> tf_keras.Model:
  """`architecture` sparse (masked weights are zeros; sparsity 0: dense), with
  trained-like scales.

  Masked kernels are scaled by 1/sqrt(density), as `--init_method=sparse` does, so
  activations keep their scale through the sparse layers. Batch norm and biases get
  random values: at initialisation ResNet's last batch norm of each block has gamma = 0,
  which the converter folds into all-zero convolution weights that no trained model has.
  """
  tf_keras.utils.set_random_seed(FLAGS.seed)
  model = models.build(architecture)
  first_layer = 0.0 if architecture.startswith("mobilenet") else -1.0
  optimizer = rigl.create_sparse_optimizer(
      "scratch" if sparsity else "baseline", tf_keras.optimizers.SGD(0.1), model,
      rigl.SparsityConfig(sparsity, distribution, first_layer_sparsity=first_layer),
      seed=FLAGS.seed)
  for name, kernel in optimizer.kernels.items():
    kernel.assign(kernel / np.sqrt(1.0 - optimizer.layer_sparsities[name]))
  rng = np.random.default_rng(FLAGS.seed)

  def randomize(variable, low: float, high: float) -> None:
    if variable is not None:
      variable.assign(rng.uniform(low, high, variable.shape).astype(np.float32))

  for layer in model.submodules:
    if isinstance(layer, tf_keras.layers.BatchNormalization):
      randomize(layer.gamma, *SCALE_RANGE)
      randomize(layer.beta, *SHIFT_RANGE)
      randomize(layer.moving_mean, *SHIFT_RANGE)
      randomize(layer.moving_variance, *SCALE_RANGE)
    elif getattr(layer, "bias", None) is not None:
      randomize(layer.bias, *SHIFT_RANGE)
  return model


def measure(architecture: str, directory: pathlib.Path) -> list[dict[str, object]]:
  """Latency rows of the four (encoding, kernels) variants of one architecture."""
  tf_keras.backend.clear_session()
  model = sparse_model(architecture)
  dense_stats, sparse_stats = export.size_accounting(model)
  sparsities = export.kernel_sparsities(model)
  image_shape = (1,) + tuple(model.input_shape[1:])
  image = np.random.default_rng(FLAGS.seed).random(image_shape, dtype=np.float32)
  variants = {}
  for encoding, sparse in ENCODINGS:
    path = directory / f"{architecture}_{encoding}.tflite"
    start = time.perf_counter()
    file_bytes = export.export_tflite(model, str(path), sparse)
    conversion_s = time.perf_counter() - start
    for kernels in tflite_timing.RESOLVERS:
      start = time.perf_counter()
      runner = tflite_timing.interpreter(path, kernels, NUM_THREADS)
      load_s = time.perf_counter() - start
      runner.set_tensor(runner.get_input_details()[0]["index"], image)
      variants[(encoding, kernels)] = {
          "runner": runner, "file_bytes": file_bytes, "conversion_s": conversion_s,
          "load_s": load_s, "first_invoke_s": tflite_timing.timed_invoke(runner)}
  load_before = os.getloadavg()[0]
  times = tflite_timing.time_in_turns(
      {key: variant["runner"] for key, variant in variants.items()}, FLAGS.runs,
      FLAGS.warmup_runs - 1, FLAGS.chunk_runs)
  load_after = os.getloadavg()[0]
  reference = model(image, training=False).numpy()
  rows = []
  for (encoding, kernels), variant in variants.items():
    runner = variant["runner"]
    logits = runner.get_tensor(runner.get_output_details()[0]["index"])
    rows.append({
        "architecture": architecture, "encoding": encoding, "kernels": kernels,
        "file_bytes": variant["file_bytes"],
        "analytic_dense_bytes": dense_stats.size_bits / export.BITS_PER_BYTE,
        "analytic_sparse_bytes": sparse_stats.size_bits / export.BITS_PER_BYTE,
        "weight_sparsity": sparse_stats.sparsity,
        "conversion_s": variant["conversion_s"],
        "load_ms": variant["load_s"] * MILLISECONDS,
        "first_invoke_ms": variant["first_invoke_s"] * MILLISECONDS,
        **tflite_timing.summary_ms(times[(encoding, kernels)]),
        "max_logit_difference_vs_keras_relative": float(
            np.abs(logits - reference).max() / np.abs(reference).max()),
        "masked_layers": sum(value > 0 for value in sparsities.values()),
        "layer_sparsities": sparsities,
        "ops": tflite_timing.op_counts(runner),
        "load_average_1min_before_after": [load_before, load_after]})
  return rows


def write_report(rows: list[dict[str, object]], directory: pathlib.Path) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  cpu = tflite_timing.cpu_description()
  settings = {"sparsity": SPARSITY, "distribution": DISTRIBUTION,
              "num_threads": NUM_THREADS, "runs": FLAGS.runs,
              "warmup_runs": FLAGS.warmup_runs, "chunk_runs": FLAGS.chunk_runs,
              "tensorflow": tf.__version__}
  (directory / "tflite_latency.json").write_text(
      json.dumps({"cpu": cpu, "settings": settings, "rows": rows}, indent=2) + "\n")
  low, high = (f"p{p}" for p in PERCENTILES)
  lines = [
      "# TFLite single-image CPU latency: dense vs 90%-sparse weight encoding", "",
      f"CPU: {cpu}, shared with other jobs (1-minute load averages in the table). "
      f"TensorFlow {tf.__version__}, `tf.lite.Interpreter`, {NUM_THREADS} thread, "
      f"float32, batch 1. Each model has random weights masked to {SPARSITY:.0%} "
      f"ERK sparsity (MobileNet-v1's first convolution dense), masked kernels scaled by "
      "1/sqrt(density) and random batch-norm statistics and biases (no all-zero "
      "folded weights, see `sparse_model`), and is written twice by "
      "`rigl.export.export_tflite`: weights stored dense, and in TFLite's sparse "
      "encoding (`Optimize.EXPERIMENTAL_SPARSITY`). Kernels: the default XNNPACK "
      "delegate, or TFLite's built-in kernels without delegates. "
      f"{FLAGS.runs} timed `invoke()` calls per row after {FLAGS.warmup_runs} untimed "
      f"ones, the four rows of a model taking turns in chunks of {FLAGS.chunk_runs}. "
      "Analytic sizes are `rigl.flops`' (32-bit non-zeros plus a 1-bit mask per "
      "weight of a sparse layer). Written by `benchmarks/tflite_latency.py`.", "",
      f"| Model | Weights | Kernels | File MB | Analytic MB | Median ms | [{low}, {high}] "
      "ms | vs dense | Load ms | First call ms | DENSIFY / masked layers | Load avg |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  medians = {(r["architecture"], r["kernels"], r["encoding"]): r["median_ms"]
             for r in rows}
  for row in rows:
    analytic = (row["analytic_sparse_bytes"] if row["encoding"] == "sparse"
                else row["analytic_dense_bytes"])
    dense = medians[(row["architecture"], row["kernels"], "dense")]
    loads = row["load_average_1min_before_after"]
    lines.append(
        f"| {row['architecture']} | {row['encoding']} | {row['kernels']} | "
        f"{row['file_bytes'] / export.BYTES_PER_MEGABYTE:.3f} | "
        f"{analytic / export.BYTES_PER_MEGABYTE:.3f} | {row['median_ms']:.3f} | "
        f"[{row[f'{low}_ms']:.3f}, {row[f'{high}_ms']:.3f}] | "
        f"{row['median_ms'] / dense:.2f}x | {row['load_ms']:.1f} | "
        f"{row['first_invoke_ms']:.1f} | "
        f"{row['ops'].get('DENSIFY', 0)} / {row['masked_layers']} | "
        f"{loads[0]:.1f}-{loads[1]:.1f} |")
  lines += [
      "", "Weights: `dense` is the flatbuffer without sparse encoding, `sparse` with it; "
      "both hold the same 90%-sparse weights. File MB counts the whole flatbuffer; "
      "vs dense: the row's median over the dense file's median with the same kernels. "
      "Load ms (interpreter creation and tensor allocation; XNNPACK prepares its "
      "weights then) and first call ms (built-in kernels run DENSIFY then) are one-time "
      "costs, measured once. DENSIFY / masked layers: DENSIFY ops in the sparse file, "
      "and conv/dense layers with zero weights.", "",
      "What the sparse encoding does here: the converter stores a weight in TFLite's "
      "sparse format where that is smaller and puts a DENSIFY op in front of it. "
      "TFLite's DENSIFY kernel expands the weight once, at the first call, into a "
      "persistent dense tensor; XNNPACK unpacks such weights when it prepares the "
      "model; a masked layer of low sparsity (ERK keeps small layers denser) is left "
      "dense where that is smaller. Every sparse weight goes through DENSIFY, so the "
      "convolutions and matrix products compute on dense float32 weights: the encoding "
      "shrinks the file (download, storage), it does not skip the zeros, and no "
      "speed-up is to be expected. Read the vs dense column against the p10-p90 "
      "spread and the load averages.",
  ]
  (directory / "tflite_latency.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


def xnnpack_sparse_inference_possible() -> bool:
  """False on x86 CPUs with AVX, where XNNPACK switches its sparse (NCHW) path off."""
  if platform.machine() not in ("x86_64", "AMD64", "i386", "i686"):
    return True
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
      flags_line = next(line for line in cpuinfo if line.startswith("flags"))
  except (OSError, StopIteration):
    return True
  return "avx" not in flags_line.split()


def measure_sweep(architecture: str, directory: pathlib.Path) -> list[dict[str, object]]:
  """Latency rows of `architecture` dense and at every sweep sparsity, per thread count."""
  files = {}
  for label, distribution in (("dense", DISTRIBUTION),) + SWEEP_DISTRIBUTIONS:
    for sparsity in (0.0,) if label == "dense" else SWEEP_SPARSITIES:
      tf_keras.backend.clear_session()
      model = sparse_model(architecture, sparsity, distribution)
      path = directory / f"{architecture}_{label}_{sparsity}.tflite"
      export.export_tflite(model, str(path), sparse=bool(sparsity))
      files[(label, sparsity)] = (path, export.size_accounting(model)[1].sparsity)
  image_shape = (1,) + tuple(model.input_shape[1:])
  image = np.random.default_rng(FLAGS.seed).random(image_shape, dtype=np.float32)
  rows = []
  for threads in SWEEP_THREADS:
    runners = {}
    for key, (path, _) in files.items():
      runners[key] = tflite_timing.interpreter(path, tflite_timing.XNNPACK, threads)
      runners[key].set_tensor(runners[key].get_input_details()[0]["index"], image)
    load_before = os.getloadavg()[0]
    times = tflite_timing.time_in_turns(runners, FLAGS.runs, FLAGS.warmup_runs,
                                        FLAGS.chunk_runs)
    load_after = os.getloadavg()[0]
    dense = float(np.median(times[("dense", 0.0)]))
    for (label, sparsity), runner in runners.items():
      rows.append({
          "architecture": architecture, "distribution": label, "sparsity": sparsity,
          "weight_sparsity": files[(label, sparsity)][1], "threads": threads,
          **tflite_timing.summary_ms(times[(label, sparsity)]),
          "speed_up_vs_dense": dense / float(np.median(times[(label, sparsity)])),
          "ops": tflite_timing.op_counts(runner),
          "load_average_1min_before_after": [load_before, load_after]})
      print(f"{architecture} {label} {sparsity:.0%} threads={threads}: median "
            f"{rows[-1]['median_ms']:.2f} ms, {rows[-1]['speed_up_vs_dense']:.2f}x dense",
            flush=True)
  return rows


def write_sweep_report(rows: list[dict[str, object]], directory: pathlib.Path) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  cpu = tflite_timing.cpu_description()
  possible = xnnpack_sparse_inference_possible()
  (directory / "tflite_mobilenet_sparsity.json").write_text(json.dumps(
      {"cpu": cpu, "xnnpack_sparse_inference_possible": possible,
       "settings": {"runs": FLAGS.runs, "warmup_runs": FLAGS.warmup_runs,
                    "chunk_runs": FLAGS.chunk_runs, "tensorflow": tf.__version__},
       "rows": rows}, indent=2) + "\n")
  low, high = (f"p{p}" for p in PERCENTILES)
  lines = [
      "# TFLite MobileNets: dense against 80-95% sparse, XNNPACK", "",
      f"CPU: {cpu}. TensorFlow {tf.__version__}, `tf.lite.Interpreter` with its default "
      "XNNPACK delegate, float32, batch 1. Random weights and batch-norm statistics; "
      "sparse files masked at the sparsity (first convolution dense) and written by "
      "`rigl.export.export_tflite` in TFLite's sparse encoding, the dense file without "
      f"masks. {FLAGS.runs} timed calls per row after {FLAGS.warmup_runs}, all files of a "
      f"model and thread count taking turns in chunks of {FLAGS.chunk_runs}. Written by "
      "`benchmarks/tflite_latency.py --mobilenet_sweep`.", "",
      "XNNPACK's sparse inference (the NCHW path of \"Fast Sparse ConvNets\") possible "
      f"on this CPU: {'yes' if possible else 'no'}"
      + ("" if possible else " (x86 with AVX: XNNPACK's `xnn_is_chw_compatible_config` "
         "is false there, as its sparse kernels are SSE-only; the delegate's sparse hint "
         "is ignored and sparse weights are densified when the model is prepared)")
      + ". The models meet the graph conditions: the first op is PAD by 1 on each side "
      "then a 3x3 stride-2 VALID CONV_2D on 3 channels, strided depthwise convolutions "
      "are padded likewise, stride-1 ones are SAME (1 on each side), and the network "
      "ends with a spatial MEAN.", "",
      f"| Model | Distribution | Sparsity | Weight sparsity | Threads | Median ms | [{low}, "
      f"{high}] ms | Speed-up vs dense | DENSIFY | Load avg |",
      "|---|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    loads = row["load_average_1min_before_after"]
    lines.append(
        f"| {row['architecture']} | {row['distribution']} | {row['sparsity']:.0%} | "
        f"{row['weight_sparsity']:.3f} | {row['threads']} | {row['median_ms']:.2f} | "
        f"[{row[f'{low}_ms']:.2f}, {row[f'{high}_ms']:.2f}] | "
        f"{row['speed_up_vs_dense']:.2f}x | {row['ops'].get('DENSIFY', 0)} | "
        f"{loads[0]:.1f}-{loads[1]:.1f} |")
  (directory / "tflite_mobilenet_sparsity.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


def main(argv):
  del argv
  if FLAGS.mobilenet_sweep:
    rows = []
    with tempfile.TemporaryDirectory() as directory:
      for architecture in SWEEP_ARCHITECTURES:
        rows.extend(measure_sweep(architecture, pathlib.Path(directory)))
    write_sweep_report(rows, pathlib.Path(FLAGS.output_dir))
    return
  unknown = [name for name in FLAGS.architectures if name not in models.ARCHITECTURES]
  if unknown:
    raise app.UsageError(f"Unknown --architectures {unknown}; allowed values: "
                         f"{', '.join(models.ARCHITECTURES)}.")
  rows = []
  with tempfile.TemporaryDirectory() as directory:
    for architecture in FLAGS.architectures:
      for row in measure(architecture, pathlib.Path(directory)):
        print(f"{architecture} {row['encoding']} {row['kernels']}: "
              f"{row['file_bytes']:,} bytes, median {row['median_ms']:.3f} ms",
              flush=True)
        rows.append(row)
  write_report(rows, pathlib.Path(FLAGS.output_dir))


if __name__ == "__main__":
  app.run(main)
