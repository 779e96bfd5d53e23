"""Tests for rigl.stateless_random: process-stable hashing and stateless seeds."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import tensorflow as tf

from rigl import stateless_random

NAMES = ["resnet_model/initial_conv/kernel:0drop", "dense/kernel:0grow", "", "é"]

# Loads stateless_random.py by path with a stub `tensorflow` module, so that the
# subprocess runs the real `stable_hash` without paying for a TensorFlow import.
_CHILD = """
import importlib.util, json, sys, types
sys.modules["tensorflow"] = types.ModuleType("tensorflow")
spec = importlib.util.spec_from_file_location("sr", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
names = json.loads(sys.argv[2])
print(json.dumps({"stable": [module.stable_hash(n) for n in names],
                  "builtin": [hash(n) for n in names]}))
"""


def _hashes_in_subprocess(hash_seed):
  path = pathlib.Path(stateless_random.__file__)
  env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
  output = subprocess.run([sys.executable, "-c", _CHILD, str(path), json.dumps(NAMES)],
                          env=env, check=True, capture_output=True, text=True).stdout
  return json.loads(output)


def test_stable_hash_same_across_processes():
  """Different PYTHONHASHSEED values change hash() but not stable_hash()."""
  first = _hashes_in_subprocess(1)
  second = _hashes_in_subprocess(12345)
  assert first["builtin"][:2] != second["builtin"][:2]  # The seeds took effect.
  assert first["stable"] == second["stable"]
  assert first["stable"] == [stateless_random.stable_hash(n) for n in NAMES]
  for value in first["stable"]:
    assert 0 <= value < 2**31


def test_stable_hash_distinguishes_names():
  hashes = {stateless_random.stable_hash(f"layer_{i}/kernel:0grow") for i in range(100)}
  assert len(hashes) == 100


def test_seed_shape_dtype_and_variation():
  """seed() is an int32 [2] tensor that depends on the tag and on the step."""
  base = stateless_random.seed("dense/kernel", "drop", 0, tf.constant(5, tf.int64))
  assert base.dtype == tf.int32
  assert base.shape == (2,)
  again = stateless_random.seed("dense/kernel", "drop", 0, tf.constant(5, tf.int64))
  np.testing.assert_array_equal(base.numpy(), again.numpy())
  other_tag = stateless_random.seed("dense/kernel", "grow", 0, tf.constant(5, tf.int64))
  other_step = stateless_random.seed("dense/kernel", "drop", 0, tf.constant(6, tf.int64))
  other_name = stateless_random.seed("dense_1/kernel", "drop", 0, tf.constant(5))
  other_offset = stateless_random.seed("dense/kernel", "drop", 3, tf.constant(5))
  for other in (other_tag, other_step, other_name, other_offset):
    assert not np.array_equal(base.numpy(), other.numpy())
  assert int(other_step[1]) == 6


def test_seed_handles_large_steps_and_offsets():
  """Huge steps and offsets still give a valid int32 seed."""
  value = stateless_random.seed("w", "grow", 2**40, tf.constant(2**33 + 7, tf.int64))
  assert value.dtype == tf.int32
  assert 0 <= int(value[0]) < 2**31 and 0 <= int(value[1]) < 2**31
  draw = tf.random.stateless_uniform([3], value)
  assert draw.shape == (3,)
