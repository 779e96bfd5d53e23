r"""Results of finished runs as a README-style table and an accuracy/FLOPs plot.

Reads each run directory's `results.json` and `run_config.json` (see
`rigl.run_directory`), or any results JSON named directly (e.g. `eval_once_*.json`,
with the `run_config.json` beside it when there is one), and writes a markdown table
(method, distribution, sparsity, training and inference FLOPs relative to dense, model
size, top-1) and a PNG of top-1 against training FLOPs, one marker per method::

  python -m rigl.report runs/rigl_erk_s80 runs/dense --output=report.md \
      --plot=acc_vs_flops.png
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import pathlib
import sys
from typing import Any, Mapping, Sequence

from rigl import flops
from rigl import methods
from rigl import models
from rigl import run_directory

DISTRIBUTION_LABELS = {"random": "Uniform", "erdos_renyi": "ER",
                       "erdos_renyi_kernel": "ERK", "str": "Custom"}
# Plot markers, given to the registered methods in order.
METHOD_MARKERS = "*osv^DP<X"
OTHER_MARKER = "o"
NOT_AVAILABLE = "n/a"
PERCENT = 100
NOTES = (
    "Sparsity: the target `end_sparsity` (the measured global sparsity of all conv and "
    "dense kernels).",
    "Training FLOPs: counted during the run; the ratio is to dense training of the "
    "standard (1x) length: `training_flops_ratio` (dense on the same batches) x "
    "`training_steps_multiplier`.",
    "Inference FLOPs: per example, at the final masks, relative to the dense network.",
    "Model size: `rigl.flops` accounting (32-bit non-zero weights, a 1-bit mask per "
    "weight of a sparse layer, 32-bit biases) of the network that `run_config.json` "
    "describes, at the per-layer sparsities in the results; n/a where it describes "
    "none.",
)


def method_label(method: str) -> str:
  """The registered method's report label; an unknown one is named by its flag value."""
  cls = methods.TRAINING_METHODS.get(method)
  return cls.label if cls else method


def method_marker(method: str) -> str:
  """A plot marker per registered method (OTHER_MARKER for others)."""
  names = list(methods.TRAINING_METHODS)
  if method not in names or names.index(method) >= len(METHOD_MARKERS):
    return OTHER_MARKER
  return METHOD_MARKERS[names.index(method)]


class ReportError(ValueError):
  """A run that cannot be read; the message names it."""


@dataclasses.dataclass(frozen=True)
class Run:
  """One row of the report."""
  name: str
  method: str
  distribution: str
  target_sparsity: float
  global_sparsity: float
  training_steps_multiplier: float
  training_flops: float
  training_flops_ratio: float
  inference_flops: float
  inference_flops_ratio: float
  size_mb: float | None
  top_1: float

  @property
  def method_label(self) -> str:
    label = method_label(self.method)
    if self.training_steps_multiplier != 1:
      label += f" {self.training_steps_multiplier:g}x"
    return label


def _read_json(path: pathlib.Path) -> dict[str, Any]:
  try:
    values = json.loads(path.read_text())
  except (OSError, ValueError) as error:
    raise ReportError(f"{path}: cannot read JSON ({error})") from error
  if not isinstance(values, dict):
    raise ReportError(f"{path}: not a JSON object")
  return values


@functools.lru_cache(maxsize=None)
def _layer_specs(description: str) -> tuple[flops.LayerSpec, ...]:
  """The countable layers of the network a model description (as JSON) names."""
  return tuple(flops.layer_specs(models.from_description(json.loads(description))))


def model_size_mb(config: Mapping[str, Any],
                  per_layer_sparsity: Mapping[str, float]) -> float | None:
  """Size of the run's network at these sparsities (absent layers dense); None if
  `config` (a run_config.json) describes no network `rigl.models` can build."""
  try:
    description = run_directory.model_description(config)
    specs = _layer_specs(json.dumps(description, sort_keys=True))
  except ValueError:
    return None
  return flops.count(specs, per_layer_sparsity).size_mb


def read_run(path: str | pathlib.Path) -> Run:
  """A run directory (its results.json) or a results JSON file, with run_config.json."""
  path = pathlib.Path(path)
  if path.is_dir():
    results_path = path / run_directory.RESULTS_FILE
    if not results_path.is_file():
      raise ReportError(f"{path}: no {run_directory.RESULTS_FILE} in this directory")
  elif path.is_file():
    results_path = path
  else:
    raise ReportError(f"{path}: no such run directory or results file")
  results = _read_json(results_path)
  try:
    config = run_directory.read_run_config(str(results_path.parent)) or {}
  except ValueError as error:
    raise ReportError(str(error)) from None
  settings = {**results, **config}
  for key in ("test_accuracy", "global_sparsity", "training_method"):
    if key not in settings:
      raise ReportError(f"{results_path}: not a results file (no {key})")
  method = settings["training_method"]
  multiplier = float(settings.get("training_steps_multiplier", 1.0))
  method_class = methods.TRAINING_METHODS.get(method)
  dense = method_class is not None and not method_class.sparsifies
  # Relative to dense training of the standard length, not of this run's.
  training_ratio = float(results.get("training_flops_ratio", math.nan)) * multiplier
  # The scripts fall back to uniform when a method needs no --mask_init_method.
  distribution = settings.get("mask_init_method") or "random"
  return Run(
      name=str(path),
      method=method,
      distribution="-" if dense else DISTRIBUTION_LABELS.get(distribution, distribution),
      target_sparsity=0.0 if dense else float(settings.get("end_sparsity", math.nan)),
      global_sparsity=float(results["global_sparsity"]),
      training_steps_multiplier=multiplier,
      training_flops=float(results.get("training_flops", math.nan)),
      training_flops_ratio=training_ratio,
      inference_flops=float(results.get("inference_flops", math.nan)),
      inference_flops_ratio=float(results.get("inference_flops_ratio", math.nan)),
      size_mb=model_size_mb(config, results.get("per_layer_sparsity", {})),
      top_1=float(results["test_accuracy"]) * PERCENT)


def _sparsity_cell(target: float, measured: float) -> str:
  if not math.isfinite(target):
    return f"{NOT_AVAILABLE} ({measured:.3f})"
  return f"{target:g} ({measured:.3f})"


def _flops_cell(value: float, ratio: float) -> str:
  if not math.isfinite(value) or not value:
    return NOT_AVAILABLE
  return f"{value:.3e} ({ratio:.3f}x)" if math.isfinite(ratio) else f"{value:.3e}"


def markdown_table(runs: Sequence[Run]) -> str:
  """The README-style table, with notes on how each column was obtained."""
  header = ("Run", "Method", "Distribution", "Sparsity", "Training FLOPs",
            "Inference FLOPs", "Model size (MB)", "Top-1 (%)")
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for run in runs:
    size = NOT_AVAILABLE if run.size_mb is None else f"{run.size_mb:.3f}"
    cells = (run.name, run.method_label, run.distribution,
             _sparsity_cell(run.target_sparsity, run.global_sparsity),
             _flops_cell(run.training_flops, run.training_flops_ratio),
             _flops_cell(run.inference_flops, run.inference_flops_ratio), size,
             f"{run.top_1:.2f}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines + [""] + [f"- {note}" for note in NOTES]) + "\n"


def plot(runs: Sequence[Run], path: str | pathlib.Path) -> None:
  """Top-1 against training FLOPs (x dense, log scale), one marker per method."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  figure, axis = plt.subplots(figsize=(7, 4.5))
  for method in dict.fromkeys(run.method for run in runs):
    points = [(run.training_flops_ratio, run.top_1) for run in runs
              if run.method == method and run.training_flops_ratio > 0]
    if points:
      xs, ys = zip(*points)
      axis.plot(xs, ys, linestyle="none", marker=method_marker(method),
                markersize=8, label=method_label(method))
  axis.set_xscale("log")
  axis.set_xlabel("training FLOPs (x dense 1x training, log scale)")
  axis.set_ylabel("top-1 accuracy (%)")
  axis.grid(alpha=0.3)
  if axis.get_legend_handles_labels()[0]:
    axis.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m rigl.report", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("runs", nargs="+", metavar="RUN",
                      help="run directory (with results.json) or results JSON file")
  parser.add_argument("--output", default="report.md", help="markdown table to write")
  parser.add_argument("--plot", default="acc_vs_flops.png", help="PNG plot to write")
  arguments = parser.parse_args(argv)
  try:
    runs = [read_run(path) for path in arguments.runs]
  except ReportError as error:
    sys.exit(f"error: {error}")
  pathlib.Path(arguments.output).write_text(markdown_table(runs))
  plot(runs, arguments.plot)
  print(f"Wrote {arguments.output} and {arguments.plot} ({len(runs)} runs).")


if __name__ == "__main__":
  main()
