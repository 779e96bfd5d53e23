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

from rigl import array_ops

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


def _masked_moments(ops, kernel, mask):
  """Standard deviation and mean absolute value of the active weights."""
  count = ops.maximum(ops.sum(mask), 1.0)
  mean = ops.sum(kernel * mask) / count
  variance = ops.sum(ops.square(kernel - mean) * mask) / count
  mean_abs = ops.sum(ops.abs(kernel) * mask) / count
  return ops.sqrt(variance), mean_abs


def grow_values(init: GrowInit, kernel, mask, random: array_ops.Random,
                gradient=None, initial_kernel=None, ops=array_ops.TENSORFLOW):
  """Values for every position of `kernel`; the caller keeps those of new connections.

  Args:
    init: the parsed grow_init.
    kernel, mask: the layer's weights and its mask before the update (float).
    random: the layer's stateless random draws at this step.
    gradient: dense loss gradient, needed by the gradient kinds.
    initial_kernel: the layer's kernel at initialisation, needed by initial_dist.
    ops: the array namespace (`array_ops.TENSORFLOW` or `keras.ops`).
  """
  shape, dtype = ops.shape(kernel), kernel.dtype
  if init.kind == ZEROS:
    return ops.zeros_like(kernel)
  if init.kind == INITIAL_DIST:
    flat = ops.reshape(initial_kernel, [-1])
    order = ops.argsort(random.uniform("grow_init_s", ops.shape(flat), "float32"))
    values = ops.reshape(ops.take(flat, order), shape)
  elif init.kind == RANDOM_NORMAL:
    std, _ = _masked_moments(ops, kernel, mask)
    values = random.normal("grow_init_n", shape, dtype, stddev=std)
  elif init.kind == RANDOM_UNIFORM:
    _, mean_abs = _masked_moments(ops, kernel, mask)
    values = random.uniform("grow_init_u", shape, dtype, minval=-1.0,
                            maxval=1.0) * mean_abs
  elif init.kind == GRAD_SCALE:
    values = gradient
  else:
    values = ops.sign(gradient)
  return ops.cast(values, dtype) / ops.cast(init.divisor, dtype)
