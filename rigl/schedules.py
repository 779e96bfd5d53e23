"""When masks change: the schedule objects the sparse optimizers are driven by.

Each schedule answers one question, whether masks change at a step, from the step and
at most one checkpointed state variable that the optimizer keeps for it:

| schedule             | used by              | masks change                           | state          |
| `MaskUpdateSchedule` | SET, SNFS, RigL, ... | every `frequency` steps in [begin, end] | last update step |
| `OneShot`            | SNIP                 | once, on the first call                 | done           |
| `EveryStep`          | DNW                  | on every step                           | -              |
| `PolynomialSparsity` | gradual pruning      | every `frequency` steps in [begin, end], | -              |
|                      |                      | towards a cubic sparsity ramp           |                |

`MaskUpdateSchedule` reproduces the original's timing: an update happens at step t when
begin_step <= t, (t <= end_step or end_step < 0) and last_update_step + frequency <= t,
where last_update_step starts at -frequency. The drop fraction is annealed with
`constant`, `cosine` (over end_step - begin_step, evaluated at the raw step) or
`exponential_<k>` ((1 - (t - begin) / (end - begin)) ** k).

`PolynomialSparsity` is the one implementation of the gradual-pruning ramp (Zhu &
Gupta, 2017): training prunes with it and `rigl.flops` averages the FLOPs over it.
Its arithmetic is tensorflow-model-optimization's `PolynomialDecay` (float32), so
masks match tfmot's `prune_low_magnitude` (a test checks it).
"""

from __future__ import annotations

import dataclasses
import math
import re

from typing import Any, Protocol

import numpy as np

from rigl import array_ops

# A tensor of the array namespace in use (TensorFlow, JAX or PyTorch).
Tensor = Any

CONSTANT = "constant"
COSINE = "cosine"
EXPONENTIAL = "exponential_<k>"
DROP_FRACTION_ANNEALS = (CONSTANT, COSINE, EXPONENTIAL)
_EXPONENTIAL_PATTERN = re.compile(r"exponential_(\d*\.?\d+)")


def parse_exponent(anneal: str) -> float | None:
  """The k of `exponential_<k>` (`_3`, `_.3`, `_0.3`), or None for other names."""
  match = _EXPONENTIAL_PATTERN.fullmatch(anneal)
  return float(match.group(1)) if match else None


@dataclasses.dataclass(frozen=True)
class MaskUpdateSchedule:
  """Mask-update timing and drop-fraction annealing.

  Attributes:
    begin_step: first step at which masks may change.
    end_step: last step at which masks may change; negative means never stop.
    frequency: steps between two mask updates (the paper's Delta T).
    drop_fraction: fraction of each layer's active weights dropped (and regrown).
    drop_fraction_anneal: `constant`, `cosine` or `exponential_<k>`.
  """
  begin_step: int = 0
  end_step: int = 25000
  frequency: int = 100
  drop_fraction: float = 0.3
  drop_fraction_anneal: str = CONSTANT

  def __post_init__(self):
    if self.frequency <= 0:
      raise ValueError(f"`maskupdate_frequency` must be > 0; got {self.frequency}.")
    if self.begin_step < 0:
      raise ValueError(f"`maskupdate_begin_step` must be >= 0; got {self.begin_step}.")
    if 0 <= self.end_step < self.begin_step:
      raise ValueError(f"`maskupdate_end_step` ({self.end_step}) is before "
                       f"`maskupdate_begin_step` ({self.begin_step}); use a negative end "
                       "step to update forever.")
    if not 0.0 <= self.drop_fraction <= 1.0:
      raise ValueError(f"`drop_fraction` must be in [0, 1]; got {self.drop_fraction}.")
    anneal = self.drop_fraction_anneal
    if anneal not in (CONSTANT, COSINE) and parse_exponent(anneal) is None:
      raise ValueError(f"Unknown `drop_fraction_anneal` {anneal!r}; allowed values: "
                       f"{', '.join(DROP_FRACTION_ANNEALS)} (e.g. exponential_3).")
    if anneal != CONSTANT and self.end_step <= self.begin_step:
      raise ValueError(f"`drop_fraction_anneal={anneal}` needs maskupdate_end_step > "
                       f"maskupdate_begin_step; got {self.begin_step}..{self.end_step}.")

  # The checkpointed state: the step of the last update (its checkpoint key).
  state_name = "last_mask_update_step"
  state_attribute = "_last_update_step"

  def initial_state(self) -> np.int64:
    return np.int64(-self.frequency)

  def state_after_update(self, step: Tensor) -> Tensor:
    return step

  def is_update_step(self, step: Tensor, last_update_step: Tensor,
                     ops=array_ops.TENSORFLOW) -> Tensor:
    """Whether masks are updated at `step`, given the step of the last update."""
    step = ops.convert_to_tensor(step)
    last_update_step = ops.cast(last_update_step, step.dtype)
    started = step >= self.begin_step
    due = last_update_step + self.frequency <= step
    if self.end_step < 0:
      return ops.logical_and(started, due)
    return ops.logical_and(ops.logical_and(started, step <= self.end_step), due)

  def drop_fraction_at(self, step: Tensor, ops=array_ops.TENSORFLOW) -> Tensor:
    """The annealed drop fraction alpha_t (float32) at `step`."""
    step = ops.cast(step, "float32")
    alpha = ops.cast(self.drop_fraction, "float32")
    if self.drop_fraction_anneal == CONSTANT:
      return alpha
    span = float(self.end_step - self.begin_step)
    if self.drop_fraction_anneal == COSINE:
      progress = ops.minimum(step, span) / span
      return alpha * 0.5 * (1.0 + ops.cos(math.pi * progress))
    exponent = parse_exponent(self.drop_fraction_anneal)
    progress = (step - self.begin_step) / span
    return alpha * ops.power(1.0 - progress, exponent)


class MaskSchedule(Protocol):
  """What the sparse optimizer asks of a schedule.

  `state_name` (None: no state) names the one variable the optimizer keeps for the
  schedule, created from `initial_state()` and set to `state_after_update(step)` after
  every update; `state_attribute` is the optimizer attribute holding it (a checkpoint
  key). `is_update_step` returns a Python bool when the answer never depends on the
  step, so that no conditional is built.
  """
  state_name: str | None
  state_attribute: str | None

  def initial_state(self) -> Any: ...

  def state_after_update(self, step: Tensor) -> Any: ...

  def is_update_step(self, step: Tensor, state: Tensor | None,
                     ops=array_ops.TENSORFLOW) -> Tensor | bool: ...


@dataclasses.dataclass(frozen=True)
class Never:
  """Masks never change (dense training, fixed random masks)."""
  state_name = None
  state_attribute = None

  def initial_state(self) -> None:
    return None

  def state_after_update(self, step: Tensor) -> None:
    del step

  def is_update_step(self, step: Tensor, state: None, ops=array_ops.TENSORFLOW) -> bool:
    del step, state, ops
    return False


@dataclasses.dataclass(frozen=True)
class EveryStep(Never):
  """Masks change after every optimizer step (DNW)."""

  def is_update_step(self, step: Tensor, state: None, ops=array_ops.TENSORFLOW) -> bool:
    del step, state, ops
    return True


@dataclasses.dataclass(frozen=True)
class OneShot:
  """Masks change once, on the first call at step 0 (SNIP), then never again."""
  state_name = "is_snipped"
  state_attribute = "_is_snipped"

  def initial_state(self) -> bool:
    return False

  def state_after_update(self, step: Tensor) -> bool:
    del step
    return True

  def is_update_step(self, step: Tensor, done: Tensor, ops=array_ops.TENSORFLOW
                     ) -> Tensor:
    return ops.logical_and(ops.equal(step, 0), ops.logical_not(done))


@dataclasses.dataclass(frozen=True)
class PolynomialSparsity:
  """Gradual pruning: sparsity ramps from 0 to the target as 1 - (1 - progress)**power.

  Masks change every `frequency` steps from `begin_step` to `end_step` (for ever if
  `end_step` is negative), counted from `begin_step`, as tfmot's schedules do.

  Attributes:
    begin_step: first pruning step.
    end_step: last pruning step; the target is reached there.
    frequency: steps between two pruning updates.
    power: exponent of the ramp (3: Zhu & Gupta's cubic schedule).
  """
  begin_step: int = 0
  end_step: int = 10000
  frequency: int = 100
  power: int = 3
  state_name = None
  state_attribute = None

  def __post_init__(self):
    if self.frequency <= 0:
      raise ValueError(f"`pruning_frequency` must be > 0; got {self.frequency}.")
    if not 0 <= self.begin_step < self.end_step:
      raise ValueError(f"Pruning needs 0 <= begin_step < end_step; got "
                       f"{self.begin_step}..{self.end_step}.")

  def initial_state(self) -> None:
    return None

  def state_after_update(self, step: Tensor) -> None:
    del step

  def is_update_step(self, step: Tensor, state: None = None, ops=array_ops.TENSORFLOW
                     ) -> Tensor:
    del state
    in_range = ops.logical_and(
        ops.greater_equal(step, self.begin_step),
        ops.logical_or(ops.less_equal(step, self.end_step), self.end_step < 0))
    due = ops.equal(ops.mod(step - self.begin_step, self.frequency), 0)
    return ops.logical_and(in_range, due)

  def sparsity_at(self, step, target: float, ops=array_ops.TENSORFLOW) -> Tensor:
    """The scheduled sparsity (float32) at `step` for a final sparsity `target`."""
    progress = ops.minimum(1.0, ops.maximum(0.0, ops.divide(
        ops.cast(step - self.begin_step, "float32"), self.end_step - self.begin_step)))
    return ops.add(ops.multiply(-target, ops.power(1 - progress, self.power)), target)
