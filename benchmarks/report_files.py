"""Where benchmark reports go, and the chores every report repeats.

Each benchmark writes `benchmarks/results/NAME.md` (the table the README links), and
most also `NAME.json` (every run, so `--report_only` can rewrite the table without
training) and `NAME.png`.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def write(name: str, lines: list[str], data: Any = None, indent: int | None = 1) -> None:
  """Writes NAME.md from `lines` (and NAME.json from `data`), and prints the table."""
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
  if data is not None:
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=indent))
  print("\n".join(lines))


def load(name: str) -> Any:
  """What `write` saved as NAME.json."""
  return json.loads((RESULTS / f"{name}.json").read_text())


def pyplot() -> Any:
  """matplotlib's pyplot module, drawing to files only (the Agg backend)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as module  # pylint: disable=import-outside-toplevel
  return module


def save_figure(figure: Any, name: str) -> None:
  """Lays out a matplotlib figure and writes it as NAME.png."""
  figure.tight_layout()
  figure.savefig(RESULTS / f"{name}.png", dpi=110)
