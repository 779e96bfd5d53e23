"""Replica-consistent randomness: stateless draws seeded by (name, tag, offset, step).

Every replica that computes a mask update draws the same numbers for the same variable
at the same step, so masks stay identical without communication. The name hash is
CRC-32, stable across processes (Python's `hash` of a string is not).
"""

from __future__ import annotations

import zlib

import tensorflow as tf

_INT32_RANGE = 2**31


def stable_hash(text: str) -> int:
  """A process-independent non-negative 31-bit hash of `text`."""
  return zlib.crc32(text.encode("utf-8")) % _INT32_RANGE


def seed(name: str, tag: str, offset: int, step: tf.Tensor) -> tf.Tensor:
  """The `[2]` int32 seed of a stateless op for variable `name`, purpose `tag`."""
  first = (int(offset) + stable_hash(name + tag)) % _INT32_RANGE
  step = tf.cast(tf.math.floormod(tf.cast(step, tf.int64), _INT32_RANGE), tf.int32)
  return tf.stack([tf.constant(first, tf.int32), step])
