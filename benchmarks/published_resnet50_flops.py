r"""`rigl.flops` against every ResNet-50 row the original README publishes.

For each published row (distribution, sparsity, run length; training FLOPs, inference
FLOPs and model size) this computes our figures, says which round to the printed ones,
and, for the training FLOPs, the range of mask-update cost the printed figure allows:
a RigL run of m times the standard length costs, per example and relative to dense
training (3 f_D),

    m * (f_S / f_D + e / (3 (dT + 1)))

where e is what a mask-update step costs beyond an ordinary sparse step (3 f_S), in
units of f_D. The paper's rule (a dense weight gradient instead of the sparse one) gives
e = 1 - f_S / f_D. Each printed figure p, known to +-0.005, bounds e to an interval; the
report lists it per row, as a multiple of the paper's e, and intersects the intervals.

  python -m benchmarks.published_resnet50_flops

Writes benchmarks/results/published_resnet50_flops.md (and .json).
"""

from __future__ import annotations

import dataclasses

from absl import app

from benchmarks import report_files
from rigl import flops
from rigl import models
from rigl import sparsity as sparsity_lib

NAME = "published_resnet50_flops"
MASK_UPDATE_FREQUENCY = 100
ERK, UNIFORM = "erdos_renyi_kernel", "random"
# The README's tables print ratios to two decimals and sizes to three.
RATIO_DECIMALS, SIZE_DECIMALS = 2, 3


@dataclasses.dataclass(frozen=True)
class PublishedRow:
  """One row of the README's ResNet-50 tables.

  The README: uniform keeps the first layer dense; ERK masks every layer except in the
  99% models, whose first layer is dense.
  """
  distribution: str
  sparsity: float
  multiplier: float
  training_flops: float
  inference_flops: float
  size_mb: float

  @property
  def first_layer_dense(self) -> bool:
    return self.distribution == UNIFORM or self.sparsity >= 0.99

  @property
  def label(self) -> str:
    name = "ERK" if self.distribution == ERK else "Uniform"
    return f"{name} {self.sparsity:g}, {self.multiplier:g}x"


# "Extended Training Results" and "1x Training Results" of the original README.
PUBLISHED_ROWS = (
    PublishedRow(ERK, 0.8, 5, 2.09, 0.42, 23.683),
    PublishedRow(UNIFORM, 0.8, 5, 1.14, 0.23, 23.685),
    PublishedRow(ERK, 0.9, 5, 1.23, 0.24, 13.499),
    PublishedRow(UNIFORM, 0.9, 5, 0.66, 0.13, 13.532),
    PublishedRow(ERK, 0.95, 5, 0.63, 0.12, 8.399),
    PublishedRow(UNIFORM, 0.95, 5, 0.42, 0.08, 8.433),
    PublishedRow(ERK, 0.965, 5, 0.45, 0.09, 6.904),
    PublishedRow(UNIFORM, 0.965, 5, 0.34, 0.07, 6.904),
    PublishedRow(ERK, 0.99, 5, 0.29, 0.05, 4.354),
    PublishedRow(ERK, 0.99, 40, 2.32, 0.05, 4.354),
    PublishedRow(ERK, 0.8, 1, 0.42, 0.42, 23.683),
    PublishedRow(UNIFORM, 0.8, 1, 0.23, 0.23, 23.685),
    PublishedRow(ERK, 0.9, 1, 0.24, 0.24, 13.499),
    PublishedRow(UNIFORM, 0.9, 1, 0.13, 0.13, 13.532),
)


@dataclasses.dataclass(frozen=True)
class Interval:
  """[low, high): the values a printed figure allows."""
  low: float
  high: float

  def __and__(self, other: "Interval") -> "Interval":
    return Interval(max(self.low, other.low), min(self.high, other.high))

  def scaled(self, factor: float) -> "Interval":
    return Interval(self.low * factor, self.high * factor)

  @property
  def empty(self) -> bool:
    return self.low >= self.high

  def __str__(self) -> str:
    return f"[{self.low:.3f}, {self.high:.3f})" if not self.empty else "empty"


def printed_interval(value: float, decimals: int) -> Interval:
  half = 0.5 * 10.0**-decimals
  return Interval(value - half, value + half)


@dataclasses.dataclass(frozen=True)
class RowCheck:
  """Our figures for a published row, and what its training figure implies."""
  row: PublishedRow
  accounting: flops.Accounting

  @property
  def sparse_fraction(self) -> float:
    """f_S / f_D."""
    return self.accounting.inference_flops_ratio

  def reproduces(self) -> dict[str, bool]:
    ours = self.accounting
    return {
        "training": round(ours.training_flops_ratio, RATIO_DECIMALS) == self.row.training_flops,
        "inference": round(ours.inference_flops_ratio, RATIO_DECIMALS) == self.row.inference_flops,
        "size": round(ours.sparse.size_mb, SIZE_DECIMALS) == self.row.size_mb,
    }

  def per_length_cost(self) -> Interval:
    """The per-1x training cost (units of 3 f_D) the printed figure allows."""
    printed = printed_interval(self.row.training_flops, RATIO_DECIMALS)
    return Interval(printed.low / self.row.multiplier, printed.high / self.row.multiplier)

  def update_cost(self) -> Interval:
    """e (units of f_D) the printed figure allows, from p = f_S/f_D + e / (3 (dT + 1))."""
    steps = 3 * (MASK_UPDATE_FREQUENCY + 1)
    cost = self.per_length_cost()
    return Interval(steps * (cost.low - self.sparse_fraction),
                    steps * (cost.high - self.sparse_fraction))

  def update_cost_in_dense_gradients(self) -> Interval:
    """e as a multiple of the paper's rule, 1 - f_S / f_D."""
    paper = 1.0 - self.sparse_fraction
    cost = self.update_cost()
    return Interval(cost.low / paper, cost.high / paper)


  def sparse_flops_offset(self) -> Interval:
    """delta (units of f_D) such that f_S + delta, counted by the paper's rule, gives
    both printed figures: the training figure and the inference figure."""
    paper_share = 1.0 / (3 * (MASK_UPDATE_FREQUENCY + 1))
    cost = self.per_length_cost()
    # p = f + (1 - f) * paper_share  <=>  f = (p - paper_share) / (1 - paper_share).
    from_training = Interval((cost.low - paper_share) / (1 - paper_share) - self.sparse_fraction,
                             (cost.high - paper_share) / (1 - paper_share) - self.sparse_fraction)
    inference = printed_interval(self.row.inference_flops, RATIO_DECIMALS)
    from_inference = Interval(inference.low - self.sparse_fraction,
                              inference.high - self.sparse_fraction)
    return from_training & from_inference


def check_rows(rows=PUBLISHED_ROWS) -> list[RowCheck]:
  specs = flops.layer_specs(models.build("resnet50"))
  checks = []
  for row in rows:
    config = sparsity_lib.SparsityConfig(
        row.sparsity, row.distribution, first_layer_sparsity=0.0 if row.first_layer_dense else -1.0,
        last_layer_sparsity=-1.0)
    checks.append(RowCheck(row, flops.account(
        specs, config, flops.DENSE_GRADIENT_ON_UPDATES, mask_update_frequency=MASK_UPDATE_FREQUENCY,
        training_steps_multiplier=row.multiplier)))
  return checks


def intersect(intervals) -> Interval:
  result = Interval(float("-inf"), float("inf"))
  for interval in intervals:
    result = result & interval
  return result


def report(checks: list[RowCheck]) -> list[str]:
  mark = lambda ok: "yes" if ok else "**no**"  # pylint: disable=unnecessary-lambda-assignment
  lines = [
      "# ResNet-50: `rigl.flops` against the published rows",
      "",
      "Written by `python -m benchmarks.published_resnet50_flops`. Ours: RigL, dT = 100, "
      "the README's first-layer rule (uniform and ERK 0.99 keep it dense). `e` is the "
      "mask-update step's cost beyond an ordinary sparse step, in units of f_D, that the "
      "printed training figure allows (the paper's rule: e = 1 - f_S/f_D); `x paper` is "
      "that interval over the paper's e.",
      "",
      "| Row | train (pub / ours) | inference (pub / ours) | size MB (pub / ours) | "
      "per-1x cost allowed | e allowed | x paper | delta allowed (1e-3 f_D) |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for check in checks:
    row, ours, ok = check.row, check.accounting, check.reproduces()
    lines.append(
        f"| {row.label} | {row.training_flops:.2f} / {ours.training_flops_ratio:.4f} "
        f"{mark(ok['training'])} | {row.inference_flops:.2f} / "
        f"{ours.inference_flops_ratio:.4f} {mark(ok['inference'])} | {row.size_mb:.3f} / "
        f"{ours.sparse.size_mb:.3f} {mark(ok['size'])} | {check.per_length_cost()} | "
        f"{check.update_cost()} | {check.update_cost_in_dense_gradients()} | "
        f"{check.sparse_flops_offset().scaled(1e3)} |")
  extended = [c for c in checks if c.row.multiplier > 1]
  dense_first = [c for c in extended if c.row.first_layer_dense]
  masked_first = [c for c in extended if not c.row.first_layer_dense]
  by_label = {c.row.label: c for c in checks}
  erk_90_short, erk_90_long = by_label["ERK 0.9, 1x"], by_label["ERK 0.9, 5x"]
  lines += [
      "",
      "## What the intervals say",
      "",
      f"- Every extended row at once: x paper in "
      f"{intersect(c.update_cost_in_dense_gradients() for c in extended)}. Rows with a "
      f"dense first layer: {intersect(c.update_cost_in_dense_gradients() for c in dense_first)}; "
      f"ERK rows with a masked first layer: "
      f"{intersect(c.update_cost_in_dense_gradients() for c in masked_first)}.",
      f"- A run m times longer costs m times as much under any per-step accounting (the "
      f"multiplier stretches train_steps and the mask-update begin/end, not dT), so a "
      f"row's 1x and 5x figures must allow a common per-1x cost. ERK 0.9: 1x allows "
      f"{erk_90_short.per_length_cost()}, 5x allows {erk_90_long.per_length_cost()}: "
      f"{intersect([erk_90_short.per_length_cost(), erk_90_long.per_length_cost()])}.",
      "- The paper's rule with sparse FLOPs delta x f_D above ours ('delta allowed': the "
      "offsets for which the row's printed training and inference figures both round "
      "right). Rows with a dense first layer, all lengths: "
      f"{intersect(c.sparse_flops_offset() for c in checks if c.row.first_layer_dense).scaled(1e3)}"
      " x 1e-3; ERK rows with a masked first layer: "
      f"{intersect(c.sparse_flops_offset() for c in checks if not c.row.first_layer_dense).scaled(1e3)}"
      " x 1e-3, or without ERK 0.9 1x: "
      f"{intersect(c.sparse_flops_offset() for c in checks if not c.row.first_layer_dense and c is not erk_90_short).scaled(1e3)}"
      " x 1e-3.",
  ]
  return lines


def main(argv):
  del argv
  checks = check_rows()
  report_files.write(NAME, report(checks), [
      {"row": dataclasses.asdict(c.row), "ours": c.accounting.as_dict(),
       "reproduces": c.reproduces(),
       "update_cost_allowed": dataclasses.asdict(c.update_cost())} for c in checks])


if __name__ == "__main__":
  app.run(main)
