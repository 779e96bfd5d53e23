r"""Training throughput of dense and RigL (ERK 0.9) ImageNet models on synthetic data.

For ResNet-50 and MobileNet-v1 at 224x224, trains with the shared loop on one fixed
synthetic batch: a few warm-up steps (tracing, the first mask update), then a whole
mask-update cycle of --cycle_steps steps in chunks of --chunk_steps, timed. The RigL
window holds exactly one mask update, as one cycle of the paper's schedule (an update
every 100 steps) does, so its images/s is the amortised cost. Dense and RigL train in
the same process in alternating chunks, so their ratio compares like with like.
Writes imagenet_throughput.json and .md under --output_dir.

  python benchmarks/imagenet_throughput.py            # CPU: batch 8 / 16
  python benchmarks/imagenet_throughput.py --resnet_batch=128 --mobilenet_batch=256
"""

from __future__ import annotations

import json
import pathlib
import platform
import statistics
import sys
import time

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf
import tf_keras

import rigl
from rigl import models
from rigl import training
from imagenet_resnet import imagenet_input

FLAGS = flags.FLAGS
METHODS = (("baseline", "Dense"), ("rigl", "RigL (ERK 0.9)"))
SPARSITY = 0.9

flags.DEFINE_integer("resnet_batch", 8, "ResNet-50 global batch.")
flags.DEFINE_integer("mobilenet_batch", 16, "MobileNet-v1 global batch.")
flags.DEFINE_integer("warmup_steps", 5, "Untimed steps first (tracing, first update).")
flags.DEFINE_integer("cycle_steps", 100, "Timed steps: one mask-update cycle.")
flags.DEFINE_integer("chunk_steps", 10, "Steps per timed chunk (for the spread).")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the forward/backward pass.")
flags.DEFINE_string("output_dir", str(REPO / "benchmarks" / "results"),
                    "Where the results go.")


def build_trainer(architecture: str, method: str, batch: int):
  """A trainer of `architecture` with `method` on one fixed synthetic batch."""
  tf_keras.utils.set_random_seed(0)
  model = models.build(architecture)
  sparsity = rigl.SparsityConfig(SPARSITY, "erdos_renyi_kernel", first_layer_sparsity=-1)
  optimizer = rigl.create_sparse_optimizer(
      method, tf_keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), model, sparsity,
      schedule=rigl.MaskUpdateSchedule(0, 10**9, FLAGS.cycle_steps, 0.3))
  config = training.RunConfig(train_steps=10**9, global_batch_size=batch,
                              steps_per_epoch=10**6, training_method=method,
                              l2_scale=1e-4, label_smoothing=0.1,
                              jit_compile=FLAGS.jit_compile, log=lambda line: None)
  data = imagenet_input.InputConfig(use_synthetic_data=True)

  def train_input(epoch, skip, context):
    del epoch, skip
    return imagenet_input.synthetic_dataset(
        data, context.get_per_replica_batch_size(batch), None)

  return training.Trainer(model, optimizer, config), train_input


def measure(architecture: str, batch: int) -> list[dict[str, object]]:
  """Images/s of dense and RigL over one mask-update cycle, in alternating chunks.

  Alternating chunks of the two runs cancel drifts of the machine (clock, caches,
  other load) that timing one run after the other would put into the ratio.
  """
  tf_keras.backend.clear_session()
  runs = {method: build_trainer(architecture, method, batch) for method, _ in METHODS}
  for trainer, train_input in runs.values():
    trainer.train(train_input, FLAGS.warmup_steps)
  chunks = {method: [] for method in runs}  # (batches, seconds) per chunk.
  end = FLAGS.warmup_steps + FLAGS.cycle_steps
  while any(trainer.step < end for trainer, _ in runs.values()):
    for method, (trainer, train_input) in runs.items():
      if trainer.step >= end:
        continue
      begin_batches, begin = int(trainer.counters.batches.numpy()), time.perf_counter()
      trainer.train(train_input, min(trainer.step + FLAGS.chunk_steps, end))
      chunks[method].append((int(trainer.counters.batches.numpy()) - begin_batches,
                             time.perf_counter() - begin))
  rows = []
  for method, (trainer, _) in runs.items():
    batches = sum(count for count, _ in chunks[method])
    rates = [count * batch / seconds for count, seconds in chunks[method]]
    masks = list(trainer.optimizer.masks.values())
    zeros = sum(m.shape.num_elements() - float(m.numpy().sum()) for m in masks)
    rows.append({
        "architecture": architecture, "method": method, "batch": batch,
        "timed_steps": FLAGS.cycle_steps, "timed_batches": batches,
        "images_per_second": batches * batch / sum(s for _, s in chunks[method]),
        "chunk_images_per_second_median": statistics.median(rates),
        "chunk_images_per_second_min": min(rates),
        "chunk_images_per_second_max": max(rates),
        "mask_sparsity": zeros / max(sum(m.shape.num_elements() for m in masks), 1)})
  return rows


def device_description() -> str:
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"{len(gpus)} x {details.get('device_name', 'GPU')}"
  return f"CPU ({platform.processor() or platform.machine()}), no GPU"


def write_report(rows: list[dict[str, object]], directory: pathlib.Path) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  device = device_description()
  (directory / "imagenet_throughput.json").write_text(
      json.dumps({"device": device, "rows": rows}, indent=2) + "\n")
  lines = ["# ImageNet training throughput: dense vs RigL (ERK 0.9)", "",
           f"Device: {device}. Synthetic 224x224 data, one mask-update cycle of "
           f"{FLAGS.cycle_steps} steps after {FLAGS.warmup_steps} warm-up steps "
           f"(RigL: one update in the window, as with an update every 100 steps), "
           f"dense and RigL in alternating chunks of {FLAGS.chunk_steps} steps. "
           f"XLA: {FLAGS.jit_compile}. Written by `benchmarks/imagenet_throughput.py`.", "",
           "| Model | Batch | Method | images/s (cycle) | chunk median [min, max] | "
           "RigL / dense |", "|---|---|---|---|---|---|"]
  dense = {row["architecture"]: row["images_per_second"] for row in rows
           if row["method"] == "baseline"}
  for row in rows:
    ratio = row["images_per_second"] / dense[row["architecture"]]
    label = dict(METHODS)[row["method"]]
    lines.append(
        f"| {row['architecture']} | {row['batch']} | {label} | "
        f"{row['images_per_second']:.2f} | {row['chunk_images_per_second_median']:.2f} "
        f"[{row['chunk_images_per_second_min']:.2f}, "
        f"{row['chunk_images_per_second_max']:.2f}] | {ratio:.3f} |")
  (directory / "imagenet_throughput.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


def main(argv):
  del argv
  rows = []
  for architecture, batch in (("resnet50", FLAGS.resnet_batch),
                              ("mobilenet_v1", FLAGS.mobilenet_batch)):
    for row in measure(architecture, batch):
      print(f"{architecture} {dict(METHODS)[row['method']]}: "
            f"{row['images_per_second']:.2f} images/s", flush=True)
      rows.append(row)
  write_report(rows, pathlib.Path(FLAGS.output_dir))


if __name__ == "__main__":
  app.run(main)
