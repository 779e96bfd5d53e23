"""The planted-teacher experiment on a tiny instance, and its support measures."""

import numpy as np
import pytest

from benchmarks import planted_teacher

# 100 inputs, 10 linear outputs with 4 inputs each (4% dense): 40 teacher connections.
TINY = planted_teacher.Task(inputs=100, hidden=0, outputs=10, steps=800, record_every=400,
                            mask_update_frequency=50)


def test_teacher_has_fan_in_connections_per_unit():
  teacher = planted_teacher.Teacher(planted_teacher.Task(), seed=3)
  assert teacher.support.shape == (200, 16)
  np.testing.assert_array_equal(teacher.support.sum(axis=0), 4)
  assert np.all((teacher.first != 0) == teacher.support)


def test_support_recovery_matches_permuted_units():
  teacher = np.zeros((6, 3), bool)
  teacher[[0, 1], 0] = teacher[[2, 3], 1] = teacher[[4, 5], 2] = True
  student = teacher[:, [2, 0, 1]].copy()  # The same units, in another order.
  student[5, 0] = False  # Loses one of unit 2's connections.
  assert planted_teacher.support_recovery(student, teacher, match_units=True) == 5 / 6
  # Without matching, only connections at the same (input, unit) count.
  assert planted_teacher.support_recovery(student, teacher, match_units=False) == 0.0
  assert planted_teacher.input_recovery(student, teacher) == 5 / 6


@pytest.fixture(scope="module")
def final_points():
  return {method: planted_teacher.train_student(TINY, method, seed=0)["curve"]
          for method in ("scratch", "set", "rigl")}


def test_rigl_finds_the_support_that_set_and_static_miss(final_points):
  rigl, set_, static = (final_points[m][-1] for m in ("rigl", "set", "scratch"))
  assert rigl["support_recovery"] >= 0.9
  assert rigl["test_metric"] < 0.05  # MSE over the targets' variance.
  assert set_["support_recovery"] <= 0.3 and static["support_recovery"] <= 0.3
  assert set_["test_metric"] > 0.5 and static["test_metric"] > 0.5


def test_static_keeps_its_initial_support(final_points):
  curve = final_points["scratch"]
  assert {point["support_recovery"] for point in curve} == {curve[0]["support_recovery"]}
  assert all(point["density"] == pytest.approx(TINY.density) for point in curve)
