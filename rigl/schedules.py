"""When masks change, and how much of each layer is dropped at each change.

`MaskUpdateSchedule` reproduces the original's timing: an update happens at step t when
begin_step <= t, (t <= end_step or end_step < 0) and last_update_step + frequency <= t,
where last_update_step starts at -frequency. The drop fraction is annealed with
`constant`, `cosine` (over end_step - begin_step, evaluated at the raw step) or
`exponential_<k>` ((1 - (t - begin) / (end - begin)) ** k).
"""

from __future__ import annotations

import dataclasses
import math
import re

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
