"""Tests for rigl.schedules: mask-update timing and drop-fraction annealing."""

import math

import pytest
import tensorflow as tf

from rigl.schedules import MaskUpdateSchedule


def simulate(schedule, steps):
  """Steps at which masks update, with last_update_step starting at -frequency."""
  last = -schedule.frequency
  updates = []
  for t in steps:
    if bool(schedule.is_update_step(tf.constant(t, tf.int64), tf.constant(last, tf.int64))):
      updates.append(t)
      last = t
  return updates


@pytest.mark.parametrize("begin, end, frequency, expected", [
    (1, 4, 2, [1, 3]),
    (0, 4, 1, [0, 1, 2, 3, 4]),
    (0, 10, 3, [0, 3, 6, 9]),
    (3, 7, 2, [3, 5, 7]),
    (2, 2, 5, [2]),
])
def test_update_steps(begin, end, frequency, expected):
  """Updates happen every `frequency` steps within [begin, end], from step begin."""
  schedule = MaskUpdateSchedule(begin_step=begin, end_step=end, frequency=frequency)
  assert simulate(schedule, range(11)) == expected


def test_update_step_with_int32_inputs():
  """Plain int32 steps work too."""
  schedule = MaskUpdateSchedule(begin_step=1, end_step=4, frequency=2)
  assert bool(schedule.is_update_step(tf.constant(3), tf.constant(1)))
  assert not bool(schedule.is_update_step(tf.constant(2), tf.constant(1)))


def test_negative_end_step_updates_forever():
  schedule = MaskUpdateSchedule(begin_step=2, end_step=-1, frequency=3)
  assert simulate(schedule, range(15)) == [2, 5, 8, 11, 14]
  assert bool(schedule.is_update_step(tf.constant(10**7, tf.int64),
                                      tf.constant(10**7 - 3, tf.int64)))
  bounded = MaskUpdateSchedule(begin_step=2, end_step=10, frequency=3)
  assert not bool(bounded.is_update_step(tf.constant(11, tf.int64),
                                         tf.constant(8, tf.int64)))


def test_constant_drop_fraction():
  schedule = MaskUpdateSchedule(begin_step=5, end_step=50, drop_fraction=0.3)
  for t in (0, 5, 30, 50, 1000):
    assert float(schedule.drop_fraction_at(tf.constant(t))) == pytest.approx(0.3)


def test_cosine_drop_fraction_uses_raw_step():
  """alpha / 2 * (1 + cos(pi * min(t, T) / T)) with T = end - begin and raw t."""
  schedule = MaskUpdateSchedule(begin_step=10, end_step=110, frequency=1,
                                drop_fraction=0.3, drop_fraction_anneal="cosine")
  span = 100
  for t in (0, 10, 25, 50, 99, 100, 110, 500):
    expected = 0.3 / 2 * (1 + math.cos(math.pi * min(t, span) / span))
    got = float(schedule.drop_fraction_at(tf.constant(t)))
    assert got == pytest.approx(expected, abs=1e-6), t
  # The raw step matters: at t = begin the value is already below alpha.
  assert float(schedule.drop_fraction_at(tf.constant(10))) < 0.3 - 1e-3


@pytest.mark.parametrize("anneal, k", [
    ("exponential_3", 3.0), ("exponential_.5", 0.5), ("exponential_0.5", 0.5),
    ("exponential_1", 1.0)])
def test_exponential_drop_fraction(anneal, k):
  """alpha * (1 - (t - begin) / (end - begin)) ** k."""
  schedule = MaskUpdateSchedule(begin_step=20, end_step=120, frequency=10,
                                drop_fraction=0.4, drop_fraction_anneal=anneal)
  for t in (20, 45, 70, 100, 120):
    expected = 0.4 * (1 - (t - 20) / 100) ** k
    got = float(schedule.drop_fraction_at(tf.constant(t)))
    assert got == pytest.approx(expected, abs=1e-6), t


@pytest.mark.parametrize("kwargs", [
    dict(frequency=0),
    dict(frequency=-5),
    dict(begin_step=10, end_step=5),
    dict(begin_step=-1),
    dict(drop_fraction=1.5),
    dict(drop_fraction=-0.1),
    dict(drop_fraction_anneal="linear"),
    dict(drop_fraction_anneal="exponential"),
    dict(drop_fraction_anneal="exponential_x"),
    dict(begin_step=5, end_step=5, drop_fraction_anneal="cosine"),
    dict(begin_step=0, end_step=-1, drop_fraction_anneal="cosine"),
    dict(begin_step=5, end_step=5, drop_fraction_anneal="exponential_3"),
])
def test_invalid_schedule_raises(kwargs):
  with pytest.raises(ValueError):
    MaskUpdateSchedule(**kwargs)


def test_unknown_anneal_message_lists_allowed():
  with pytest.raises(ValueError) as info:
    MaskUpdateSchedule(drop_fraction_anneal="linear")
  message = str(info.value)
  assert "linear" in message and "constant" in message and "cosine" in message


def test_valid_edge_schedules():
  """Negative end with constant anneal, end == begin, alpha 0 and 1 are accepted."""
  MaskUpdateSchedule(begin_step=0, end_step=-1)
  MaskUpdateSchedule(begin_step=5, end_step=5)
  MaskUpdateSchedule(drop_fraction=0.0)
  MaskUpdateSchedule(drop_fraction=1.0)
