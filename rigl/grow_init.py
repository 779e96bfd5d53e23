"""Initial values of newly grown connections (`grow_init`).

| name                 | value of a new weight                              |
| zeros                | 0                                                  |
| initial_dist[_d]     | a random entry of the layer's initial kernel, / d  |
| random_normal[_d]    | N(0, std of the active weights), / d               |
| random_uniform[_d]   | U(-mean |w|, mean |w|) over the active weights, / d |
| grad_scale[_d]       | the dense gradient (RigL only), / d                |
| grad_sign[_d]        | sign of the dense gradient (RigL only), / d        |
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable

import tensorflow as tf

ZEROS = "zeros"
INITIAL_DIST = "initial_dist"
RANDOM_NORMAL = "random_normal"
RANDOM_UNIFORM = "random_uniform"
GRAD_SCALE = "grad_scale"
GRAD_SIGN = "grad_sign"
GRADIENT_KINDS = (GRAD_SCALE, GRAD_SIGN)
ALL_KINDS = (ZEROS, INITIAL_DIST, RANDOM_NORMAL, RANDOM_UNIFORM) + GRADIENT_KINDS
_PATTERN = re.compile(r"(initial_dist|random_normal|random_uniform|grad_scale|grad_sign)"
                      r"(?:_(\d*\.?\d+))?")

SeedFn = Callable[[str], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class GrowInit:
  """A parsed `grow_init`: its kind and the divisor d."""
  kind: str
  divisor: float = 1.0

  @property
  def uses_gradient(self) -> bool:
    return self.kind in GRADIENT_KINDS

  @property
  def uses_initial_kernel(self) -> bool:
    return self.kind == INITIAL_DIST


def parse(grow_init: str, allow_gradient: bool = False) -> GrowInit:
  """Parses `grow_init`; gradient-based kinds only where `allow_gradient` (RigL)."""
  allowed = ALL_KINDS if allow_gradient else ALL_KINDS[:4]
  message = (f"Unknown `grow_init` {grow_init!r}; allowed values: {', '.join(allowed)}, "
             "each but zeros with an optional divisor suffix such as _2.")
  if not isinstance(grow_init, str):
    raise ValueError(message)
  if grow_init == ZEROS:
    return GrowInit(ZEROS)
  match = _PATTERN.fullmatch(grow_init)
  if not match or match.group(1) not in allowed:
    raise ValueError(message)
  divisor = float(match.group(2)) if match.group(2) else 1.0
  if divisor == 0:
    raise ValueError(f"`grow_init` {grow_init!r} divides by zero.")
  return GrowInit(match.group(1), divisor)


def _masked_moments(kernel: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Standard deviation and mean absolute value of the active weights."""
  count = tf.maximum(tf.reduce_sum(mask), 1.0)
  mean = tf.reduce_sum(kernel * mask) / count
  variance = tf.reduce_sum(tf.square(kernel - mean) * mask) / count
  mean_abs = tf.reduce_sum(tf.abs(kernel) * mask) / count
  return tf.sqrt(variance), mean_abs


def grow_values(init: GrowInit, kernel: tf.Tensor, mask: tf.Tensor, seed_fn: SeedFn,
                gradient: tf.Tensor | None = None,
                initial_kernel: tf.Tensor | None = None) -> tf.Tensor:
  """Values for every position of `kernel`; the caller keeps those of new connections.

  Args:
    init: the parsed grow_init.
    kernel, mask: the layer's weights and its mask before the update (float).
    seed_fn: returns a stateless seed for a tag.
    gradient: dense loss gradient, needed by the gradient kinds.
    initial_kernel: the layer's kernel at initialisation, needed by initial_dist.
  """
  shape, dtype = tf.shape(kernel), kernel.dtype
  if init.kind == ZEROS:
    return tf.zeros_like(kernel)
  if init.kind == INITIAL_DIST:
    flat = tf.reshape(initial_kernel, [-1])
    order = tf.argsort(tf.random.stateless_uniform(tf.shape(flat), seed_fn("grow_init_s")))
    values = tf.reshape(tf.gather(flat, order), shape)
  elif init.kind == RANDOM_NORMAL:
    std, _ = _masked_moments(kernel, mask)
    values = tf.random.stateless_normal(shape, seed_fn("grow_init_n"), stddev=std,
                                        dtype=dtype)
  elif init.kind == RANDOM_UNIFORM:
    _, mean_abs = _masked_moments(kernel, mask)
    values = tf.random.stateless_uniform(shape, seed_fn("grow_init_u"), dtype=dtype,
                                         minval=-1.0, maxval=1.0) * mean_abs
  elif init.kind == GRAD_SCALE:
    values = gradient
  else:
    values = tf.sign(gradient)
  return tf.cast(values, dtype) / tf.cast(init.divisor, dtype)
