r"""What sparse training costs per step, against dense training, for every method.

For each model, trains one copy per method (dense, scratch, SET, SNFS, RigL, gradual
pruning; ERK 0.9) with the shared loop's compiled step on one fixed synthetic batch:

- ordinary steps: all methods in alternating rounds of --chunk_steps steps, so that
  drifts of the machine (clocks, caches, other load) fall on every method alike; each
  round starts one method later than the one before, so that no method always runs
  first or right after dense;
- one mask update alone (`SparseOptimizer.update_masks` on fixed gradients), timed
  --update_repeats times.

The mean step over a mask-update cycle of --cycle_steps (the paper's Delta T = 100)
steps is then `ordinary + update / cycle_steps`: a cycle is cycle_steps - 1 ordinary
steps and one step that also updates the masks (for RigL, one that updates the masks
instead of taking the optimizer step, so this slightly overstates its cost). For the
FC model, where whole cycles are cheap, --direct_cycles cycles of every method are also
timed step by step, with the real schedule, to check that formula.

Ratios to dense are taken round by round (same round, same machine state) and reported
as median [min, max]. ResNet-50's RigL update is also compared with one dense ResNet-50
step at batch --resnet_reference_batch. Writes step_overhead.json and .md (with
--jit_compile: step_overhead_xla.*) under --output_dir.

  python benchmarks/step_overhead.py                      # all four models, CPU sizes
  python benchmarks/step_overhead.py --models=mnist_fc --jit_compile
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import statistics
import time
from typing import Callable

from absl import app
from absl import flags
import tensorflow as tf
import tf_keras

import rigl
from rigl import models
from rigl import training

REPO = pathlib.Path(__file__).resolve().parent.parent
FLAGS = flags.FLAGS
# The methods timed, with their report labels.
METHODS = {name: rigl.TRAINING_METHODS[name].label
           for name in ("baseline", "scratch", "set", "momentum", "rigl", "prune")}
SPARSITY = 0.9
DROP_FRACTION = 0.3
# A step never reached (schedules that never fire, endless runs).
NEVER = 10**9


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  architecture: str
  input_shape: tuple[int, ...]
  num_classes: int


MODELS = {
    "mnist_fc": ModelSpec("mnist_fc", (784,), 10),
    "wrn_22_2": ModelSpec("wrn_22_2", (32, 32, 3), 10),
    "resnet50": ModelSpec("resnet50", (224, 224, 3), 1000),
    "mobilenet_v1": ModelSpec("mobilenet_v1", (224, 224, 3), 1000),
}

flags.DEFINE_list("models", list(MODELS), f"Models, of {', '.join(MODELS)}.")
flags.DEFINE_list("batch_sizes", ["100", "32", "8", "16"],
                  "Global batch per model, in the order of --models.")
flags.DEFINE_list("rounds", ["300", "6", "5", "5"],
                  "Timed rounds of ordinary steps per model (the spread's samples).")
flags.DEFINE_list("chunk_steps", ["10", "4", "2", "3"],
                  "Ordinary steps per method per round, per model.")
flags.DEFINE_integer("update_repeats", 9, "Timed mask updates per method.")
flags.DEFINE_integer("cycle_steps", 100, "Steps between mask updates (Delta T).")
flags.DEFINE_integer("direct_cycles", 20,
                     "Whole cycles timed step by step for mnist_fc (0: none).")
flags.DEFINE_integer("resnet_reference_batch", 32,
                     "Batch of the dense ResNet-50 step that one RigL update is compared "
                     "with (0: skip).")
flags.DEFINE_integer("reference_steps", 3, "Timed dense steps at that batch.")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the whole training step.")
flags.DEFINE_string("output_dir", str(REPO / "benchmarks" / "results"),
                    "Where the results go.")


def build_trainer(spec: ModelSpec, method: str, batch: int,
                  updates_masks: bool) -> training.Trainer:
  """A trainer of `spec` with `method`, with or without scheduled mask updates.

  Without, ordinary steps still compile the update branch but never take it; pruning
  then targets its final sparsity, so that a forced update does real work.
  """
  tf_keras.utils.set_random_seed(0)
  model = models.build(spec.architecture)
  if updates_masks:
    schedule = rigl.MaskUpdateSchedule(0, -1, FLAGS.cycle_steps, DROP_FRACTION)
    pruning = dict(pruning_begin_step=0, pruning_end_step=NEVER,
                   pruning_frequency=FLAGS.cycle_steps)
  else:
    schedule = rigl.MaskUpdateSchedule(NEVER, -1, FLAGS.cycle_steps, DROP_FRACTION)
    pruning = dict(pruning_begin_step=0, pruning_end_step=1, pruning_frequency=NEVER)
  optimizer = rigl.create_sparse_optimizer(
      method, tf_keras.optimizers.SGD(0.1, momentum=0.9), model,
      rigl.SparsityConfig(SPARSITY, "erdos_renyi_kernel"), schedule=schedule, **pruning)
  config = training.RunConfig(train_steps=NEVER, global_batch_size=batch,
                              steps_per_epoch=NEVER,
                              jit_compile=FLAGS.jit_compile, log=lambda line: None)
  return training.Trainer(model, optimizer, config)


def synthetic_batch(spec: ModelSpec, batch: int) -> tuple[tf.Tensor, tf.Tensor]:
  generator = tf.random.Generator.from_seed(0)
  return (generator.uniform((batch,) + spec.input_shape),
          generator.uniform((batch,), 0, spec.num_classes, tf.int32))


def seconds_per_call(function: Callable[[], object], calls: int) -> float:
  """Mean wall time of `calls` calls, waiting for the last result."""
  start = time.perf_counter()
  result = None
  for _ in range(calls):
    result = function()
  if isinstance(result, tf.Tensor):
    result.numpy()
  return (time.perf_counter() - start) / calls


def rotated(methods: list[str], shift: int) -> list[str]:
  """`methods` starting at index `shift` (mod its length), wrapping around."""
  shift %= len(methods)
  return methods[shift:] + methods[:shift]


def summary(values: list[float]) -> dict[str, float]:
  return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def time_mask_update(trainer: training.Trainer, repeats: int) -> list[float]:
  """Seconds of one `update_masks` call on fixed gradients (after a compiling call)."""
  optimizer = trainer.optimizer
  gradients = [tf.random.stateless_normal(kernel.shape, [1, index])
               for index, kernel in enumerate(optimizer.kernels.values())]
  update = tf.function(lambda: optimizer.update_masks(gradients))

  def update_and_wait():
    update()
    return tf.add_n([tf.reduce_sum(mask) for mask in optimizer.masks.values()])

  update_and_wait().numpy()
  return [seconds_per_call(update_and_wait, 1) for _ in range(repeats)]


def measure_model(name: str, batch: int, rounds: int, chunk: int) -> dict[str, object]:
  """Ordinary-step and mask-update times of every method on one model."""
  spec = MODELS[name]
  tf_keras.backend.clear_session()
  images, labels = synthetic_batch(spec, batch)
  trainers = {method: build_trainer(spec, method, batch, False) for method in METHODS}
  for method, trainer in trainers.items():
    print(f"{name}: warming up {method}", flush=True)
    seconds_per_call(lambda trainer=trainer: trainer._train_step(images, labels), 2)  # pylint: disable=protected-access
  ordinary = {method: [] for method in METHODS}
  for round_index in range(rounds):
    for method in rotated(list(METHODS), round_index):
      ordinary[method].append(seconds_per_call(
          lambda trainer=trainers[method]: trainer._train_step(images, labels), chunk))  # pylint: disable=protected-access
    print(f"{name}: round {round_index + 1}/{rounds}: " + "  ".join(
        f"{method} {ordinary[method][-1] * 1e3:.1f} ms" for method in METHODS), flush=True)
  updates = {}
  for method, trainer in trainers.items():
    if method not in ("baseline", "scratch"):
      updates[method] = time_mask_update(trainer, FLAGS.update_repeats)
      print(f"{name}: {method} mask update {statistics.median(updates[method]):.3f} s",
            flush=True)
  rows = []
  for method in METHODS:
    update = statistics.median(updates[method]) if method in updates else 0.0
    cycle = [step + update / FLAGS.cycle_steps for step in ordinary[method]]
    ratios = [mean / dense for mean, dense in zip(cycle, ordinary["baseline"])]
    ordinary_ratios = [step / dense for step, dense in zip(ordinary[method],
                                                          ordinary["baseline"])]
    rows.append({
        "model": name, "method": method, "batch": batch,
        "ordinary_step_s": summary(ordinary[method]),
        "ordinary_ratio_to_dense": summary(ordinary_ratios),
        "mask_update_s": summary(updates[method]) if method in updates else None,
        "cycle_mean_step_s": summary(cycle),
        "cycle_ratio_to_dense": summary(ratios)})
  return {"model": name, "batch": batch, "rounds": rounds, "chunk_steps": chunk,
          "rows": rows}


def measure_direct_cycles(name: str, batch: int, cycles: int) -> dict[str, object]:
  """Whole cycles with the real schedule, step by step, all methods alternating."""
  spec = MODELS[name]
  tf_keras.backend.clear_session()
  images, labels = synthetic_batch(spec, batch)
  trainers = {method: build_trainer(spec, method, batch, True)
              for method in METHODS}
  step = {method: (lambda trainer=trainer: trainer._train_step(images, labels))  # pylint: disable=protected-access
          for method, trainer in trainers.items()}
  for method in METHODS:  # One whole cycle first: tracing and the first updates.
    seconds_per_call(step[method], FLAGS.cycle_steps + 1)
  means = {method: [] for method in METHODS}
  for cycle in range(cycles):
    for method in rotated(list(METHODS), cycle):
      means[method].append(seconds_per_call(step[method], FLAGS.cycle_steps))
  return {"model": name, "batch": batch, "cycles": cycles, "rows": [
      {"method": method, "cycle_mean_step_s": summary(means[method]),
       "cycle_ratio_to_dense": summary([mean / dense for mean, dense in
                                        zip(means[method], means["baseline"])])}
      for method in METHODS]}


def measure_resnet_reference(batch: int, steps: int) -> dict[str, object]:
  """A dense ResNet-50 step at `batch`, the yardstick for one RigL update."""
  spec = MODELS["resnet50"]
  tf_keras.backend.clear_session()
  images, labels = synthetic_batch(spec, batch)
  trainer = build_trainer(spec, "baseline", batch, False)
  seconds_per_call(lambda: trainer._train_step(images, labels), 1)  # pylint: disable=protected-access
  times = [seconds_per_call(lambda: trainer._train_step(images, labels), 1)  # pylint: disable=protected-access
           for _ in range(steps)]
  print(f"resnet50: dense step at batch {batch}: {statistics.median(times):.2f} s",
        flush=True)
  return {"batch": batch, "dense_step_s": summary(times)}


def device_description() -> str:
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"{len(gpus)} x {details.get('device_name', 'GPU')}"
  return f"CPU ({platform.processor() or platform.machine()}), no GPU"


def _span(values: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
  return (f"{values['median'] * scale:.{digits}f} [{values['min'] * scale:.{digits}f}, "
          f"{values['max'] * scale:.{digits}f}]")


def write_report(results: dict[str, object], directory: pathlib.Path) -> pathlib.Path:
  """Writes the JSON and a markdown table; returns the markdown's path."""
  directory.mkdir(parents=True, exist_ok=True)
  stem = "step_overhead_xla" if FLAGS.jit_compile else "step_overhead"
  (directory / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
  lines = [
      "# Per-step cost of sparse training against dense training", "",
      f"Device: {results['device']}; {results['cpu_cores']} CPU cores. ERK "
      f"{SPARSITY} sparsity, drop fraction {DROP_FRACTION}, one mask update every "
      f"{FLAGS.cycle_steps} steps, SGD with momentum, one fixed synthetic batch. "
      f"XLA (whole step): {FLAGS.jit_compile}. Written by `benchmarks/step_overhead.py` "
      "(see its docstring for the method).", "",
      "Cycle mean = ordinary step + one mask update / "
      f"{FLAGS.cycle_steps}. Values are median [min, max] over rounds; ratios are "
      "paired within rounds. Static's ordinary step is dense plus gradient masking. "
      "The loop decides on the host which calls update masks and runs a separately "
      "compiled step for them, so the ordinary steps of SET, SNFS and RigL carry no "
      "conditional; they add the host's schedule check (microseconds), and SNFS's its "
      "per-step gradient average.", "",
      "| Model | Batch | Method | Ordinary step (ms) | Ordinary / dense | "
      "Mask update (ms) | Cycle mean step (ms) | Cycle / dense |",
      "|---|---|---|---|---|---|---|---|"]
  for model in results["models"]:
    for row in model["rows"]:
      update = _span(row["mask_update_s"], 1e3, 1) if row["mask_update_s"] else "-"
      lines.append(
          f"| {row['model']} | {row['batch']} | {METHODS[row['method']]} | "
          f"{_span(row['ordinary_step_s'], 1e3, 1)} | "
          f"{_span(row['ordinary_ratio_to_dense'], 1.0, 3)} | {update} | "
          f"{_span(row['cycle_mean_step_s'], 1e3, 1)} | "
          f"{_span(row['cycle_ratio_to_dense'], 1.0, 3)} |")
  direct = results.get("direct_cycles")
  if direct:
    lines += ["", f"Check of the formula on {direct['model']} (batch {direct['batch']}): "
              f"{direct['cycles']} whole cycles of {FLAGS.cycle_steps} steps per method, "
              "with the real schedule.", "",
              "| Method | Cycle mean step (ms) | Cycle / dense |", "|---|---|---|"]
    for row in direct["rows"]:
      lines.append(f"| {METHODS[row['method']]} | "
                   f"{_span(row['cycle_mean_step_s'], 1e3, 2)} | "
                   f"{_span(row['cycle_ratio_to_dense'], 1.0, 3)} |")
  reference = results.get("resnet_reference")
  if reference:
    rigl_update = next(row["mask_update_s"] for model in results["models"]
                       for row in model["rows"]
                       if row["model"] == "resnet50" and row["method"] == "rigl")
    ratio = rigl_update["median"] / reference["dense_step_s"]["median"]
    lines += ["", f"One RigL mask update on ResNet-50: {_span(rigl_update)} s; one dense "
              f"ResNet-50 training step at batch {reference['batch']}: "
              f"{_span(reference['dense_step_s'])} s (update / step = {ratio:.2f})."]
  path = directory / f"{stem}.md"
  path.write_text("\n".join(lines) + "\n")
  return path


def per_model(values: list[str], name: str) -> list[int]:
  if len(values) < len(FLAGS.models):
    raise ValueError(f"--{name} needs one value per model in --models; got {values}.")
  return [int(value) for value in values]


def main(argv: list[str]) -> None:
  del argv
  tf.get_logger().setLevel("ERROR")  # One trainer per method: retracing warnings.
  unknown = [name for name in FLAGS.models if name not in MODELS]
  if unknown:
    raise app.UsageError(f"--models: unknown {unknown}; allowed values: "
                         f"{', '.join(MODELS)}.")
  batches = per_model(FLAGS.batch_sizes, "batch_sizes")
  rounds = per_model(FLAGS.rounds, "rounds")
  chunks = per_model(FLAGS.chunk_steps, "chunk_steps")
  results: dict[str, object] = {"device": device_description(),
                                "cpu_cores": len(os.sched_getaffinity(0)),
                                "jit_compile": FLAGS.jit_compile,
                                "cycle_steps": FLAGS.cycle_steps, "models": []}
  for name, batch, model_rounds, chunk in zip(FLAGS.models, batches, rounds, chunks):
    results["models"].append(measure_model(name, batch, model_rounds, chunk))
    if name == "mnist_fc" and FLAGS.direct_cycles:
      results["direct_cycles"] = measure_direct_cycles(name, batch, FLAGS.direct_cycles)
    if name == "resnet50" and FLAGS.resnet_reference_batch:
      results["resnet_reference"] = measure_resnet_reference(
          FLAGS.resnet_reference_batch, FLAGS.reference_steps)
  print(f"Wrote {write_report(results, pathlib.Path(FLAGS.output_dir))}")


if __name__ == "__main__":
  app.run(main)
