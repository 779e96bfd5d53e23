"""The ImageNet learning-rate schedules of the original, per architecture.

The rate for batch B is `base_learning_rate * B / 256`, scaled by a piecewise-constant
list of (multiplier, start epoch); a first entry starting after epoch 0 is a linear
warm-up from 0. Epochs (and so the whole schedule) stretch with
`--training_steps_multiplier`.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tf_keras

REFERENCE_BATCH_SIZE = 256
# (multiplier, start epoch) pairs of the original `imagenet_train_eval.py`.
RESNET_SCHEDULE = ((1.0, 0), (0.1, 30), (0.01, 70), (0.001, 90), (1e-4, 120))
MOBILENET_SCHEDULE = ((1.0, 8), (0.1, 40), (0.01, 75), (0.001, 95), (3e-4, 120))


def scaled_learning_rate(base_learning_rate: float, batch_size: int) -> float:
  return base_learning_rate * batch_size / REFERENCE_BATCH_SIZE


def schedule_for(architecture: str) -> tuple[tuple[float, float], ...]:
  return MOBILENET_SCHEDULE if architecture.startswith("mobilenet") else RESNET_SCHEDULE


class PiecewiseWithWarmup(tf_keras.optimizers.schedules.LearningRateSchedule):
  """`peak * multiplier` from each start epoch on, after a linear warm-up.

  Args:
    peak: the scaled learning rate.
    steps_per_epoch: steps in one epoch (fractional epochs are used).
    schedule: (multiplier, start epoch) pairs in increasing epoch order.
    epochs_multiplier: stretches every start epoch (`--training_steps_multiplier`).
  """

  def __init__(self, peak: float, steps_per_epoch: float,
               schedule: Sequence[tuple[float, float]], epochs_multiplier: float = 1.0):
    self.peak = float(peak)
    self.steps_per_epoch = float(steps_per_epoch)
    self.schedule = tuple((float(m), float(e) * epochs_multiplier) for m, e in schedule)

  def __call__(self, step):
    epoch = tf.cast(step, tf.float32) / self.steps_per_epoch
    warmup_multiplier, warmup_end = self.schedule[0]
    rate = self.peak * warmup_multiplier * epoch / max(warmup_end, 1e-12)
    for multiplier, start in self.schedule:
      rate = tf.where(epoch < start, rate, self.peak * multiplier)
    return rate

  def get_config(self):
    return {"peak": self.peak, "steps_per_epoch": self.steps_per_epoch,
            "schedule": self.schedule, "epochs_multiplier": 1.0}
