"""The ImageNet learning-rate schedules against hand-computed values."""

import math

import pytest

from rigl import learning_rates

# 1281167 images at batch 4096: epochs are fractional, as in the original.
STEPS_PER_EPOCH = 1281167 / 4096


def first_step_of(epoch: float) -> int:
  return math.ceil(epoch * STEPS_PER_EPOCH)


def resnet_schedule(multiplier=1.0):
  return learning_rates.PiecewiseWithWarmup(
      learning_rates.scaled_learning_rate(0.1, 4096), STEPS_PER_EPOCH,
      learning_rates.schedule_for("resnet"), multiplier)


@pytest.mark.parametrize("epoch,expected", [(0, 1.6), (29.99, 1.6), (30, 0.16),
                                            (70, 0.016), (95, 0.0016), (130, 1.6e-4)])
def test_resnet_schedule_has_no_warmup(epoch, expected):
  assert float(resnet_schedule()(first_step_of(epoch))) == pytest.approx(expected, rel=1e-5)


def test_drops_happen_at_fractional_epochs():
  boundary = first_step_of(30)  # 9384, not 30 * 312 = 9360.
  assert boundary == 9384
  assert float(resnet_schedule()(boundary - 1)) == pytest.approx(1.6)
  assert float(resnet_schedule()(boundary)) == pytest.approx(0.16)


@pytest.mark.parametrize("epoch,expected", [(8, 0.4), (40, 0.04), (96, 4e-4),
                                            (121, 1.2e-4)])
def test_mobilenet_schedule_after_warmup(epoch, expected):
  schedule = learning_rates.PiecewiseWithWarmup(
      learning_rates.scaled_learning_rate(0.1, 1024), STEPS_PER_EPOCH,
      learning_rates.schedule_for("mobilenet_v1"))
  assert float(schedule(first_step_of(epoch))) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("step", [0, 100, 1000, 2400])
def test_mobilenet_warms_up_linearly_over_8_epochs(step):
  schedule = learning_rates.PiecewiseWithWarmup(
      0.4, STEPS_PER_EPOCH, learning_rates.schedule_for("mobilenet_v2"))
  assert float(schedule(step)) == pytest.approx(0.4 * step / STEPS_PER_EPOCH / 8, abs=1e-7)


def test_steps_multiplier_stretches_the_epochs():
  boundary = 150 * STEPS_PER_EPOCH  # Epoch 30, stretched 5 times: step 46,921.9.
  assert float(resnet_schedule(5.0)(int(boundary))) == pytest.approx(1.6)
  assert float(resnet_schedule(5.0)(int(boundary) + 1)) == pytest.approx(0.16)
