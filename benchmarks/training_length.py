r"""Accuracy against training length: does RigL's edge grow with longer training?

RigL, SET and Static at 1x, 2x and 5x a base length, with the schedule stretched the
`--training_steps_multiplier` way, on:
- the planted-teacher tasks of `benchmarks/planted_teacher.py` (MLP regression, linear
  classification; base 3,000 steps),
- Fashion-MNIST FC at 98% (base 3 epochs, learning rate 0.2) and LeNet-5 at 95% (base 3
  epochs, learning rate 0.05: at 0.1, RigL collapses to chance with one of three seeds
  at every length), through `mnist/mnist_train_eval.py` on the real data, with its
  schedule shortened to the run (`shortened_schedule`): the last mask update at 5/12 of
  training in every run, the one learning-rate drop at the epoch nearest 3/8 of it
  (epoch 1 of 3, 2 of 6, 6 of 15; the second drop, 20 epochs later, falls beyond these
  runs).

  python -m benchmarks.training_length

Writes benchmarks/results/training_length.{md,json,png}.
"""

from __future__ import annotations

import dataclasses
import multiprocessing

from absl import app
from absl import flags
import numpy as np

from benchmarks import fashion_mnist_runs
from benchmarks import planted_teacher
from benchmarks import report_files

NAME = "training_length"
MULTIPLIERS = (1, 2, 5)
METHODS = (("scratch", "Static"), ("set", "SET"), ("rigl", "RigL"))
TEACHER_TASKS = ("MLP regression", "linear classification")
BASE_EPOCHS = 3
# Fashion-MNIST networks: (flag values, metric label).
FASHION_MNIST_TASKS = {
    "Fashion-MNIST FC 98%": {"network_type": "fc", "end_sparsity": 0.98,
                             "learning_rate": 0.2},
    "Fashion-MNIST LeNet-5 95%": {"network_type": "lenet5", "end_sparsity": 0.95,
                                  "learning_rate": 0.05},
}

flags.DEFINE_integer("seeds", 3, "Seeds per task, method and length (0, 1, ...).")
flags.DEFINE_integer("workers", 2, "Parallel processes (one TensorFlow thread each).")
flags.DEFINE_boolean("report_only", False, "Only rewrite the report from the JSON.")
flags.DEFINE_list("tasks", [], "Only (re)run these tasks, keeping the JSON's runs of the "
                  "others; empty: every task.")
FLAGS = flags.FLAGS


def planned_jobs(seeds: int, tasks: list[str]) -> list[dict]:
  known = (*TEACHER_TASKS, *FASHION_MNIST_TASKS)
  unknown = sorted(set(tasks) - set(known))
  if unknown:
    raise app.UsageError(f"--tasks: unknown {unknown}; allowed values: {', '.join(known)}.")
  jobs = []
  for multiplier in MULTIPLIERS:
    for method, _ in METHODS:
      for seed in range(seeds):
        for task in tasks or known:
          jobs.append({"task": task, "method": method, "multiplier": multiplier,
                       "seed": seed})
  # Longest first, so that the pool ends with short jobs.
  return sorted(jobs, key=lambda job: -job["multiplier"])


def run_job(job: dict) -> dict:
  """Trains one job in this (worker) process; returns it with its metric."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  if job["task"] in TEACHER_TASKS:
    base = planted_teacher.TASKS[job["task"]]
    task = dataclasses.replace(base, steps=base.steps * job["multiplier"],
                               record_every=base.steps * job["multiplier"])
    final = planted_teacher.train_student(task, job["method"], job["seed"])["curve"][-1]
    return dict(job, metric=final["test_metric"], support_recovery=final["support_recovery"])
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  run = dict(FASHION_MNIST_TASKS[job["task"]], training_method=job["method"],
             seed=job["seed"],
             **mnist_train_eval.shortened_schedule(BASE_EPOCHS * job["multiplier"]))
  result = fashion_mnist_runs.train(run)
  return dict(job, metric=result["test_accuracy"])


def metric_label(task: str) -> str:
  if task in TEACHER_TASKS and planted_teacher.TASKS[task].kind == planted_teacher.REGRESSION:
    return "test MSE / variance (lower is better)"
  return "test accuracy"


def summarize(runs: list[dict]) -> dict:
  summary = {}
  for task in (*TEACHER_TASKS, *FASHION_MNIST_TASKS):
    for method, label in METHODS:
      for multiplier in MULTIPLIERS:
        values = [r["metric"] for r in runs if (r["task"], r["method"], r["multiplier"])
                  == (task, method, multiplier)]
        if values:
          summary[(task, label, multiplier)] = fashion_mnist_runs.mean_std(values)
  return summary


def write_report(runs: list[dict], settings: dict) -> None:
  summary = summarize(runs)
  lines = ["# Accuracy against training length", "",
           f"Mean +- std over {settings['seeds']} seeds; 1x is "
           f"{planted_teacher.TASKS[TEACHER_TASKS[0]].steps:,} steps (teacher tasks, see "
           f"planted_teacher.md) or {BASE_EPOCHS} epochs (Fashion-MNIST; learning rate "
           + ", ".join(f"{values['learning_rate']:g} for {task.split(' ', 1)[1]}"
                       for task, values in FASHION_MNIST_TASKS.items())
           + "); the schedule is stretched with the length (Fashion-MNIST: the learning-"
           "rate drop at the epoch nearest 3/8 of training, see the module docstring). "
           "'RigL - SET' and 'RigL - Static' are "
           "differences of the means (for MSE, negative favours RigL). Written by "
           "`python -m benchmarks.training_length`; plot: "
           "[training_length.png](training_length.png).", ""]
  header = " | ".join(f"{m}x" for m in MULTIPLIERS)
  for task in (*TEACHER_TASKS, *FASHION_MNIST_TASKS):
    scale = 1 if "MSE" in metric_label(task) else 100
    lines += [f"## {task}: {metric_label(task)}" + ("" if scale == 1 else " (%)"), "",
              f"| Method | {header} |", "|---|" + "---|" * len(MULTIPLIERS)]
    for _, label in METHODS:
      cells = [f"{scale * summary[(task, label, m)][0]:.3g} +- "
               f"{scale * summary[(task, label, m)][1]:.2g}" for m in MULTIPLIERS]
      lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for other in ("SET", "Static"):
      cells = [f"{scale * (summary[(task, 'RigL', m)][0] - summary[(task, other, m)][0]):+.3g}"
               for m in MULTIPLIERS]
      lines.append(f"| RigL - {other} | " + " | ".join(cells) + " |")
    lines.append("")
  report_files.write(NAME, lines, {"settings": settings, "runs": runs})
  plot(summary)


def plot(summary: dict) -> None:
  pyplot = report_files.pyplot()
  tasks = (*TEACHER_TASKS, *FASHION_MNIST_TASKS)
  figure, axes = pyplot.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6))
  for axis, task in zip(axes, tasks):
    for _, label in METHODS:
      means, stds = zip(*(summary[(task, label, m)] for m in MULTIPLIERS))
      axis.errorbar(MULTIPLIERS, means, yerr=stds, marker="o", capsize=3, label=label)
    axis.set_xscale("log")
    axis.set_xticks(MULTIPLIERS, [f"{m}x" for m in MULTIPLIERS])
    axis.set_xticks([], minor=True)
    axis.set_title(task, fontsize=10)
    axis.set_xlabel("training length")
    axis.set_ylabel(metric_label(task), fontsize=8)
    if "MSE" in metric_label(task):
      axis.set_yscale("log")
    axis.grid(alpha=0.3)
  axes[0].legend()
  report_files.save_figure(figure, NAME)


def main(argv):
  del argv
  if FLAGS.report_only:
    saved = report_files.load(NAME)
    write_report(saved["runs"], saved["settings"])
    return
  jobs = planned_jobs(FLAGS.seeds, FLAGS.tasks)
  runs = []
  if FLAGS.tasks:
    saved = report_files.load(NAME)
    if saved["settings"]["seeds"] != FLAGS.seeds:
      raise app.UsageError(f"--tasks reruns some tasks next to saved runs of "
                           f"{saved['settings']['seeds']} seeds; --seeds={FLAGS.seeds} "
                           "would mix seed counts in one table.")
    runs = [run for run in saved["runs"] if run["task"] not in FLAGS.tasks]
  with multiprocessing.get_context("spawn").Pool(FLAGS.workers, maxtasksperchild=4) as pool:
    for count, run in enumerate(pool.imap_unordered(run_job, jobs), start=1):
      print(f"[{count}/{len(jobs)}] {run['task']}, {run['method']}, {run['multiplier']}x, "
            f"seed {run['seed']}: {run['metric']:.4f}", flush=True)
      runs.append(run)
  write_report(runs, {"seeds": FLAGS.seeds, "base_epochs": BASE_EPOCHS})


if __name__ == "__main__":
  app.run(main)
