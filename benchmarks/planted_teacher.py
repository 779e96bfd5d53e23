r"""A planted sparse teacher: does a method find the connections that matter?

A fixed random teacher network has a sparse first layer with known connectivity
(`fan_in` of the `inputs` Gaussian inputs per hidden unit) and a dense output layer;
students of the same shape, first layer at the teacher's density, learn its outputs
(regression) or their argmax (classification) from fresh Gaussian inputs at every step.
Support recovery is the fraction of the teacher's first-layer connections present in the
student's mask, with the student's hidden units matched one-to-one to the teacher's so
as to share the most connections (hidden units are interchangeable); with `hidden=0`
both are linear (one sparse layer) and nothing needs matching.

The paper's mechanism predicts: RigL, growing where the dense gradient is large, finds
the support; SET, growing at random, finds it only by chance; Static keeps its random
initial support.

  python -m benchmarks.planted_teacher                 # 3 tasks x 6 methods x 3 seeds
  python -m benchmarks.planted_teacher --report_only   # rewrite the table and plot

Writes benchmarks/results/planted_teacher.{md,json,png}.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from typing import TYPE_CHECKING

from absl import app
from absl import flags
import numpy as np

from benchmarks import fashion_mnist_runs
from benchmarks import report_files
from benchmarks import train_step

if TYPE_CHECKING:
  import rigl
  import tf_keras

NAME = "planted_teacher"
REGRESSION, CLASSIFICATION = "regression", "classification"
# Methods compared, with their labels; `baseline` is the dense student.
METHODS = (("scratch", "Static"), ("set", "SET"), ("momentum", "SNFS"), ("rigl", "RigL"),
           ("prune", "Pruning"), ("baseline", "Dense"))
FIRST_LAYER, OUTPUT_LAYER = "layer1", "layer2"
TEST_EXAMPLES = 4096
# Mask updates (and gradual pruning) stop at this fraction of training, as in the paper.
UPDATE_END_FRACTION = 0.75
# Gradual pruning prunes from this fraction of training to the updates' end.
PRUNING_BEGIN_FRACTION = 0.1
# A mask counts as denser than the teacher's beyond this factor of its density.
DENSER_TOLERANCE = 1.01


@dataclasses.dataclass(frozen=True)
class Task:
  """The teacher's shape and the students' training."""
  inputs: int = 200
  hidden: int = 16
  fan_in: int = 4
  outputs: int = 1
  kind: str = REGRESSION
  steps: int = 3000
  batch_size: int = 128
  learning_rate: float = 0.05
  momentum: float = 0.9
  mask_update_frequency: int = 100
  drop_fraction: float = 0.3
  record_every: int = 100

  @property
  def first_layer_units(self) -> int:
    return self.hidden or self.outputs

  @property
  def density(self) -> float:
    return self.fan_in / self.inputs


class Teacher:
  """The planted network: `fan_in` random inputs per first-layer unit, Gaussian weights."""

  def __init__(self, task: Task, seed: int):
    rng = np.random.default_rng(seed)
    units = task.first_layer_units
    self.task = task
    self.support = np.zeros((task.inputs, units), bool)
    for unit in range(units):
      self.support[rng.choice(task.inputs, task.fan_in, replace=False), unit] = True
    # Unit-variance pre-activations for unit-variance inputs.
    self.first = np.where(self.support, rng.normal(size=self.support.shape) /
                          np.sqrt(task.fan_in), 0.0).astype(np.float32)
    self.second = (rng.normal(size=(task.hidden, task.outputs)) / np.sqrt(task.hidden)
                   ).astype(np.float32) if task.hidden else None

  def outputs(self, x: np.ndarray) -> np.ndarray:
    hidden = x @ self.first
    if self.second is None:
      return hidden
    return np.maximum(hidden, 0.0) @ self.second

  def targets(self, x: np.ndarray) -> np.ndarray:
    outputs = self.outputs(x)
    if self.task.kind == CLASSIFICATION:
      return np.argmax(outputs, axis=1).astype(np.int32)
    return outputs


def support_recovery(student_mask: np.ndarray, teacher_support: np.ndarray,
                     match_units: bool) -> float:
  """Share of the teacher's connections in the student's mask.

  With `match_units`, student units (columns) are first matched one-to-one to teacher
  units so that the matched pairs share the most connections (Hungarian assignment).
  """
  student = np.asarray(student_mask, bool)
  if match_units:
    from scipy import optimize  # pylint: disable=import-outside-toplevel
    overlap = teacher_support.T.astype(np.int64) @ student.astype(np.int64)
    rows, columns = optimize.linear_sum_assignment(overlap, maximize=True)
    shared = overlap[rows, columns].sum()
  else:
    shared = np.logical_and(student, teacher_support).sum()
  return float(shared / teacher_support.sum())


def input_recovery(student_mask: np.ndarray, teacher_support: np.ndarray) -> float:
  """Share of the inputs the teacher reads that the student reads too (any unit)."""
  used = teacher_support.any(axis=1)
  return float(np.asarray(student_mask, bool).any(axis=1)[used].mean())


def build_student(task: Task) -> "tf_keras.Model":
  import tf_keras  # pylint: disable=import-outside-toplevel
  layers = [tf_keras.Input((task.inputs,))]
  if task.hidden:
    layers.append(tf_keras.layers.Dense(task.hidden, activation="relu", name=FIRST_LAYER))
    layers.append(tf_keras.layers.Dense(task.outputs, name=OUTPUT_LAYER))
  else:
    layers.append(tf_keras.layers.Dense(task.outputs, use_bias=False, name=FIRST_LAYER))
  return tf_keras.Sequential(layers)


def sparse_optimizer(task: Task, method: str, model: "tf_keras.Model",
                     seed: int) -> "rigl.SparseOptimizer":
  """The method's optimizer: first layer at the teacher's density, output layer dense."""
  import rigl  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  update_end = int(UPDATE_END_FRACTION * task.steps)
  config = rigl.SparsityConfig(1.0 - task.density, "random", custom_sparsity_map=(
      {OUTPUT_LAYER: 0.0} if task.hidden else {}))
  return rigl.create_sparse_optimizer(
      method, tf_keras.optimizers.SGD(task.learning_rate, momentum=task.momentum), model,
      config, seed=seed,
      schedule=rigl.MaskUpdateSchedule(0, update_end, task.mask_update_frequency,
                                       task.drop_fraction, "cosine"),
      pruning_begin_step=int(PRUNING_BEGIN_FRACTION * task.steps),
      pruning_end_step=update_end, pruning_frequency=task.mask_update_frequency)


def train_student(task: Task, method: str, seed: int) -> dict:
  """Trains one student; returns its curve of (step, support recovery, test metric)."""
  import tf_keras  # pylint: disable=import-outside-toplevel
  teacher = Teacher(task, seed)
  data = np.random.default_rng(seed + 1)
  test_x = data.normal(size=(TEST_EXAMPLES, task.inputs)).astype(np.float32)
  test_y = teacher.targets(test_x)
  tf_keras.utils.set_random_seed(seed)
  model = build_student(task)
  optimizer = sparse_optimizer(task, method, model, seed)
  if task.kind == CLASSIFICATION:
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  else:
    loss_fn = tf_keras.losses.MeanSquaredError()
  step = train_step.make_train_step(model, optimizer, loss_fn)

  def record(at: int) -> dict:
    outputs = model(test_x).numpy()
    if task.kind == CLASSIFICATION:
      metric = float(np.mean(np.argmax(outputs, axis=1) == test_y))
    else:
      # Test MSE relative to the targets' variance: 1 is predicting the mean.
      metric = float(np.mean((outputs - test_y)**2) / np.var(test_y))
    mask = optimizer.masks.get(FIRST_LAYER) if hasattr(optimizer, "masks") else None
    point = {"step": at, "test_metric": metric, "support_recovery": None,
             "input_recovery": None, "density": None}
    if mask is not None:
      student = mask.numpy() > 0
      point["density"] = float(student.mean())
      point["support_recovery"] = support_recovery(student, teacher.support,
                                                   bool(task.hidden))
      point["input_recovery"] = input_recovery(student, teacher.support)
    return point

  curve = [record(0)]
  for at in range(1, task.steps + 1):
    x = data.normal(size=(task.batch_size, task.inputs)).astype(np.float32)
    step(x, teacher.targets(x))
    if at % task.record_every == 0:
      curve.append(record(at))
  return {"method": method, "seed": seed, "curve": curve}


# ----- benchmark ------------------------------------------------------------------------

# The tasks of the benchmark: a sparse linear teacher (its support is unambiguous) as
# regression and as classification (argmax of 10 outputs), and a one-hidden-layer ReLU
# teacher, whose hidden units a student may permute.
TASKS = {
    "linear regression": Task(hidden=0, outputs=20),
    "linear classification": Task(hidden=0, outputs=10, kind=CLASSIFICATION),
    "MLP regression": Task(hidden=16, outputs=1),
}

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Defines the command-line flags (only when run as a program: others import this)."""
  flags.DEFINE_integer("seeds", 3, "Seeds per task and method (0, 1, ...).")
  flags.DEFINE_integer("workers", 2, "Parallel processes (one TensorFlow thread each).")
  flags.DEFINE_boolean("report_only", False, "Only rewrite the report from the JSON.")


def _train_job(job: tuple[str, str, int]) -> dict:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  task_name, method, seed = job
  start = time.perf_counter()
  result = train_student(TASKS[task_name], method, seed)
  return dict(result, task=task_name, wall_time_s=round(time.perf_counter() - start, 1))


def _mean_std(values: list[float]) -> str:
  mean, std = fashion_mnist_runs.mean_std(values)
  return f"{mean:.2f} +- {std:.2f}"


def _at_fraction(curve: list[dict], fraction: float) -> dict:
  target = fraction * curve[-1]["step"]
  return min(curve, key=lambda point: abs(point["step"] - target))


def summarize(runs: list[dict]) -> list[dict]:
  rows = []
  for task_name, task in TASKS.items():
    for method, label in METHODS:
      group = [r for r in runs if r["task"] == task_name and r["method"] == method]
      if not group:
        continue
      row = {"task": task_name, "method": label, "metric": (
          "test accuracy" if task.kind == CLASSIFICATION else "test MSE / var")}
      for key in ("support_recovery", "input_recovery", "test_metric"):
        finals = [r["curve"][-1][key] for r in group]
        early = [_at_fraction(r["curve"], 0.25)[key] for r in group]
        row[key] = None if finals[0] is None else {"final": finals, "quarter": early}
      # A mask still denser than the teacher's (pruning early on) holds its support for
      # free: its recovery says nothing then.
      quarter_density = max(_at_fraction(r["curve"], 0.25)["density"] or 0 for r in group)
      row["quarter_is_denser"] = quarter_density > DENSER_TOLERANCE * task.density
      rows.append(row)
  return rows


def write_report(runs: list[dict], settings: dict) -> None:
  rows = summarize(runs)
  denser = "(mask denser)"
  cell = lambda values: "-" if values is None else _mean_std(values)  # pylint: disable=unnecessary-lambda-assignment
  task = TASKS["linear regression"]  # Every task trains the same way.
  update_end = int(UPDATE_END_FRACTION * task.steps)
  quarter_step = _at_fraction(runs[0]["curve"], 0.25)["step"]
  lines = [
      "# Planted sparse teacher: support recovery", "",
      f"Mean +- std over {settings['seeds']} seeds. Inputs N(0, I), {task.inputs} of them; "
      f"teacher first layer with {task.fan_in} inputs per unit ({task.density:.0%} dense); "
      "students at the teacher's density in the first layer (output layer dense), SGD "
      f"with momentum {task.momentum}, learning rate {task.learning_rate}, batch "
      f"{task.batch_size}, {task.steps} steps of fresh examples; mask updates every "
      f"{task.mask_update_frequency} steps until step {update_end}, drop fraction "
      f"{task.drop_fraction} (cosine); pruning from step "
      f"{int(PRUNING_BEGIN_FRACTION * task.steps)} to {update_end}. Support recovery: "
      "share of the teacher's connections in the student's mask (MLP: hidden units "
      "matched one-to-one); input recovery: share of the teacher's inputs the student "
      f"reads. 'early': at step {quarter_step}, the recorded step nearest a quarter of "
      "training ('mask denser': pruning has not reached the teacher's density yet, so its "
      "mask holds the support for free). Written by `python -m benchmarks.planted_teacher`;"
      " curves in [planted_teacher.png](planted_teacher.png).", "",
      "| Task | Method | support recovery | early | input recovery | test metric | early |",
      "|---|---|---|---|---|---|---|"]
  for row in rows:
    recovery, inputs, metric = row["support_recovery"], row["input_recovery"], row["test_metric"]
    lines.append(
        f"| {row['task']} | {row['method']} | {cell(recovery and recovery['final'])} | "
        f"{denser if row['quarter_is_denser'] else cell(recovery and recovery['quarter'])} | "
        f"{cell(inputs and inputs['final'])} | "
        f"{row['metric']} {cell(metric['final'])} | {cell(metric['quarter'])} |")
  report_files.write(NAME, lines, {"settings": settings, "summary": rows, "runs": runs},
                     indent=None)
  plot(runs)


def plot(runs: list[dict]) -> None:
  """Support recovery (top) and the test metric (bottom) against step, per task."""
  pyplot = report_files.pyplot()
  figure, axes = pyplot.subplots(2, len(TASKS), figsize=(5 * len(TASKS), 7), sharex=True)
  for column, (task_name, task) in enumerate(TASKS.items()):
    for method, label in METHODS:
      group = [r for r in runs if r["task"] == task_name and r["method"] == method]
      if not group:
        continue
      steps = [point["step"] for point in group[0]["curve"]]
      for row, key in enumerate(("support_recovery", "test_metric")):
        if group[0]["curve"][0][key] is None:
          continue
        values = np.array([[point[key] for point in r["curve"]] for r in group])
        axes[row, column].plot(steps, values.mean(axis=0), label=label)
    axes[0, column].set_title(task_name)
    axes[0, column].set_ylabel("support recovery")
    axes[1, column].set_ylabel("test accuracy" if task.kind == CLASSIFICATION
                               else "test MSE / variance")
    axes[1, column].set_xlabel("step")
    if task.kind != CLASSIFICATION:
      axes[1, column].set_yscale("log")
  axes[1, -1].legend()  # Every method, the dense student too.
  report_files.save_figure(figure, NAME)


def main(argv):
  del argv
  if FLAGS.report_only:
    saved = report_files.load(NAME)
    write_report(saved["runs"], saved["settings"])
    return
  jobs = [(task_name, method, seed) for task_name in TASKS for method, _ in METHODS
          for seed in range(FLAGS.seeds)]
  runs = []
  with multiprocessing.get_context("spawn").Pool(FLAGS.workers) as pool:
    for count, run in enumerate(pool.imap(_train_job, jobs), start=1):
      final = run["curve"][-1]
      print(f"[{count}/{len(jobs)}] {run['task']}, {run['method']}, seed {run['seed']}: "
            f"support recovery {final['support_recovery']}, test metric "
            f"{final['test_metric']:.4f} ({run['wall_time_s']} s)", flush=True)
      runs.append(run)
  write_report(runs, {"seeds": FLAGS.seeds, "tasks": {
      name: dataclasses.asdict(task) for name, task in TASKS.items()}})


if __name__ == "__main__":
  _define_flags()
  app.run(main)
