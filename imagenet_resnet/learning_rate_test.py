"""The ImageNet learning-rate schedules against hand-computed values."""

import pytest

from imagenet_resnet import learning_rate

STEPS_PER_EPOCH = 100


@pytest.mark.parametrize("epoch,expected", [(0, 1.6), (29.99, 1.6), (30, 0.16),
                                            (70, 0.016), (95, 0.0016), (130, 1.6e-4)])
def test_resnet_schedule_has_no_warmup(epoch, expected):
  peak = learning_rate.scaled_learning_rate(0.1, 4096)
  schedule = learning_rate.PiecewiseWithWarmup(peak, STEPS_PER_EPOCH,
                                               learning_rate.schedule_for("resnet"))
  assert float(schedule(int(epoch * STEPS_PER_EPOCH))) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("epoch,expected", [(0, 0.0), (2, 0.4 * 2 / 8), (8, 0.4),
                                            (40, 0.04), (96, 4e-4), (121, 1.2e-4)])
def test_mobilenet_schedule_warms_up_over_8_epochs(epoch, expected):
  peak = learning_rate.scaled_learning_rate(0.1, 1024)
  schedule = learning_rate.PiecewiseWithWarmup(peak, STEPS_PER_EPOCH,
                                               learning_rate.schedule_for("mobilenet_v1"))
  assert float(schedule(epoch * STEPS_PER_EPOCH)) == pytest.approx(expected, abs=1e-7)


def test_steps_multiplier_stretches_the_epochs():
  schedule = learning_rate.PiecewiseWithWarmup(1.0, STEPS_PER_EPOCH,
                                               learning_rate.RESNET_SCHEDULE, 5.0)
  assert float(schedule(149 * STEPS_PER_EPOCH)) == 1.0
  assert float(schedule(150 * STEPS_PER_EPOCH)) == pytest.approx(0.1)
