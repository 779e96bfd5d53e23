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

import tensorflow as tf

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

  def initial_state(self) -> tf.Tensor:
    return tf.constant(-self.frequency, tf.int64)

  def state_after_update(self, step: tf.Tensor) -> tf.Tensor:
    return step

  def is_update_step(self, step: tf.Tensor, last_update_step: tf.Tensor) -> tf.Tensor:
    """Whether masks are updated at `step`, given the step of the last update."""
    step = tf.cast(step, tf.int64)
    last_update_step = tf.cast(last_update_step, tf.int64)
    started = step >= self.begin_step
    not_ended = tf.constant(True) if self.end_step < 0 else step <= self.end_step
    due = last_update_step + self.frequency <= step
    return started & not_ended & due

  def drop_fraction_at(self, step: tf.Tensor) -> tf.Tensor:
    """The annealed drop fraction alpha_t (float32) at `step`."""
    step = tf.cast(step, tf.float32)
    alpha = tf.constant(self.drop_fraction, tf.float32)
    if self.drop_fraction_anneal == CONSTANT:
      return alpha
    span = float(self.end_step - self.begin_step)
    if self.drop_fraction_anneal == COSINE:
      progress = tf.minimum(step, span) / span
      return alpha * 0.5 * (1.0 + tf.cos(math.pi * progress))
    exponent = parse_exponent(self.drop_fraction_anneal)
    progress = (step - self.begin_step) / span
    return alpha * tf.pow(1.0 - progress, exponent)


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

  def state_after_update(self, step: tf.Tensor) -> Any: ...

  def is_update_step(self, step: tf.Tensor, state: tf.Variable | None
                     ) -> tf.Tensor | bool: ...


@dataclasses.dataclass(frozen=True)
class Never:
  """Masks never change (dense training, fixed random masks)."""
  state_name = None
  state_attribute = None

  def initial_state(self) -> None:
    return None

  def state_after_update(self, step: tf.Tensor) -> None:
    del step

  def is_update_step(self, step: tf.Tensor, state: None) -> bool:
    del step, state
    return False


@dataclasses.dataclass(frozen=True)
class EveryStep(Never):
  """Masks change after every optimizer step (DNW)."""

  def is_update_step(self, step: tf.Tensor, state: None) -> bool:
    del step, state
    return True


@dataclasses.dataclass(frozen=True)
class OneShot:
  """Masks change once, on the first call at step 0 (SNIP), then never again."""
  state_name = "is_snipped"
  state_attribute = "_is_snipped"

  def initial_state(self) -> tf.Tensor:
    return tf.constant(False)

  def state_after_update(self, step: tf.Tensor) -> tf.Tensor:
    del step
    return tf.constant(True)

  def is_update_step(self, step: tf.Tensor, done: tf.Variable) -> tf.Tensor:
    return tf.logical_and(tf.equal(step, 0), tf.logical_not(done))


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

  def state_after_update(self, step: tf.Tensor) -> None:
    del step

  def is_update_step(self, step: tf.Tensor, state: None = None) -> tf.Tensor:
    del state
    in_range = tf.logical_and(
        tf.greater_equal(step, self.begin_step),
        tf.logical_or(tf.less_equal(step, self.end_step), tf.less(self.end_step, 0)))
    due = tf.equal(tf.math.floormod(step - self.begin_step, self.frequency), 0)
    return tf.logical_and(in_range, due)

  def sparsity_at(self, step, target: float) -> tf.Tensor:
    """The scheduled sparsity (float32) at `step` for a final sparsity `target`."""
    progress = tf.minimum(1.0, tf.maximum(0.0, tf.math.divide(
        tf.cast(step - self.begin_step, tf.float32), self.end_step - self.begin_step)))
    return tf.add(tf.multiply(-target, tf.pow(1 - progress, self.power)), target)
