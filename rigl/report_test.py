"""The results report: table rows and values, the plot, the command line, errors."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from rigl import report

REPO = pathlib.Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BITS_PER_MB = 8e6
# MNIST FC kernels (fan_in, units): 784-300-100-10.
FC_LAYERS = {"layer1": (784, 300), "layer2": (300, 100), "layer3": (100, 10)}
RIGL_SPARSITIES = {"layer1": 0.98, "layer2": 0.882}


def fc_size_mb(sparsities):
  """32-bit non-zero weights, a 1-bit mask per weight of sparse layers, 32-bit biases."""
  bits = 0.0
  for name, (fan_in, units) in FC_LAYERS.items():
    sparsity = sparsities.get(name, 0.0)
    bits += fan_in * units * (32 * (1 - sparsity) + (sparsity > 0)) + 32 * units
  return bits / BITS_PER_MB


def results(accuracy, sparsity, training_ratio, inference_ratio, **extra):
  """A results.json of `rigl.training`: 5e5 dense inference and 1e12 training FLOPs."""
  return {"test_accuracy": accuracy, "top_5_accuracy": 1.0, "step": 1000,
          "global_sparsity": sparsity, "per_layer_sparsity": {},
          "inference_flops": 5e5 * inference_ratio,
          "inference_flops_ratio": inference_ratio,
          "training_flops": 1e12 * training_ratio,
          "training_flops_ratio": training_ratio, **extra}


def write_run(directory, results_values, config=None, filename="results.json"):
  directory.mkdir(parents=True)
  (directory / filename).write_text(json.dumps(results_values))
  if config is not None:
    (directory / "run_config.json").write_text(json.dumps(config))
  return directory / filename if filename != "results.json" else directory


@pytest.fixture(name="runs")
def fake_runs(tmp_path):
  """Dense and RigL MNIST runs, a RigL 5x run of an unknown network, and a bare
  results file of a pruning run."""
  mnist = {"network_type": "fc", "mask_init_method": "random", "end_sparsity": 0.98}
  return [
      write_run(tmp_path / "dense", results(0.9812, 0.0, 1.0, 1.0),
                dict(mnist, training_method="baseline")),
      write_run(tmp_path / "rigl", results(0.9755, 0.9712, 0.0391, 0.03,
                                           per_layer_sparsity=RIGL_SPARSITIES),
                dict(mnist, training_method="rigl")),
      write_run(tmp_path / "rigl_5x", results(0.7642, 0.9, 0.2, 0.18),
                {"training_method": "rigl", "mask_init_method": "erdos_renyi_kernel",
                 "end_sparsity": 0.9, "training_steps_multiplier": 5.0}),
      write_run(tmp_path / "prune", results(0.97, 0.98, 0.25, 0.03,
                                            training_method="prune", end_sparsity=0.98),
                filename="eval_once_model.ckpt-100.json"),
  ]


def table_rows(text):
  lines = [line for line in text.splitlines() if line.startswith("| ")]
  return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_table_rows_and_values(runs):
  rows = table_rows(report.markdown_table([report.read_run(run) for run in runs]))
  assert [row[:4] for row in rows] == [
      [str(runs[0]), "Dense", "-", "0 (0.000)"],
      [str(runs[1]), "RigL", "Uniform", "0.98 (0.971)"],
      [str(runs[2]), "RigL 5x", "ERK", "0.9 (0.900)"],
      [str(runs[3]), "Pruning", "Uniform", "0.98 (0.980)"]]
  # Training FLOPs relative to 1x dense training: 0.2 per batch over 5x the batches.
  assert [row[4] for row in rows] == ["1.000e+12 (1.000x)", "3.910e+10 (0.039x)",
                                      "2.000e+11 (1.000x)", "2.500e+11 (0.250x)"]
  assert rows[1][5] == "1.500e+04 (0.030x)"
  assert [row[6] for row in rows] == [f"{fc_size_mb({}):.3f}",
                                      f"{fc_size_mb(RIGL_SPARSITIES):.3f}", "n/a", "n/a"]
  assert [row[7] for row in rows] == ["98.12", "97.55", "76.42", "97.00"]


def test_plot_is_a_png(runs, tmp_path):
  path = tmp_path / "plot.png"
  report.plot([report.read_run(run) for run in runs], path)
  assert path.read_bytes().startswith(PNG_SIGNATURE)


def command(*arguments):
  return subprocess.run([sys.executable, "-m", "rigl.report", *map(str, arguments)],
                        cwd=REPO, capture_output=True, text=True, check=False)


def test_command_line_writes_table_and_plot(runs, tmp_path):
  output, plot = tmp_path / "report.md", tmp_path / "acc_vs_flops.png"
  result = command(*runs, f"--output={output}", f"--plot={plot}")
  assert result.returncode == 0, result.stderr
  assert len(table_rows(output.read_text())) == len(runs)
  assert plot.read_bytes().startswith(PNG_SIGNATURE)


def test_directory_without_results_is_named(runs, tmp_path):
  empty = tmp_path / "unfinished"
  empty.mkdir()
  result = command(runs[0], empty, f"--output={tmp_path / 'report.md'}",
                   f"--plot={tmp_path / 'plot.png'}")
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: {empty}: no results.json in this directory")
  assert not (tmp_path / "report.md").exists()


def test_json_without_results_is_refused(tmp_path):
  path = tmp_path / "settings.json"
  path.write_text(json.dumps({"training_method": "rigl"}))
  with pytest.raises(report.ReportError, match=f"{path}: not a results file"):
    report.read_run(path)
