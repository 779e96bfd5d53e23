"""Per-layer sparsity distributions and initial masks (pure functions, shapes in).

`get_sparsities` decides how a global sparsity budget is spread over layers:
- `random`: every layer gets the default sparsity (the paper's "Uniform");
- `erdos_renyi`: density proportional to (n_in + n_out) / (n_in * n_out);
- `erdos_renyi_kernel`: density proportional to sum(shape) / prod(shape), raised to
  `erk_power_scale` (the paper's "ERK");
- `str`: the per-layer ResNet-50 sparsities found by STR (see `published_str_sparsities`).

Layers listed in `custom_sparsity_map` get exactly their value and are left out of the
ER/ERK budget, as in the original.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from rigl import published_str_sparsities

Shape = Sequence[int]

UNIFORM = "random"
ERDOS_RENYI = "erdos_renyi"
ERDOS_RENYI_KERNEL = "erdos_renyi_kernel"
STR = "str"
DISTRIBUTIONS = (UNIFORM, ERDOS_RENYI, ERDOS_RENYI_KERNEL, STR)


def check_sparsity(value: float, name: str) -> float:
  """Returns `value` as a float, or raises if it is not a sparsity in [0, 1)."""
  value = float(value)
  if not 0.0 <= value < 1.0:
    raise ValueError(f"`{name}` must be a sparsity in [0, 1); got {value}.")
  return value


def get_n_zeros(size: int, sparsity: float) -> int:
  """Number of zeros of a layer with `size` weights: floor(sparsity * size)."""
  return int(np.floor(sparsity * size))


def random_mask(shape: Shape, sparsity: float,
                rng: np.random.Generator | None = None,
                dtype: np.dtype = np.float32, block_size: int = 1) -> np.ndarray:
  """A mask with exactly floor(sparsity * size) zeros at random positions.

  With `block_size` > 1, whole blocks of that many consecutive rows (first axis) are
  zero: floor(sparsity * n_blocks) of them.
  """
  check_sparsity(sparsity, "sparsity")
  if block_size > 1:
    blocks = random_mask((shape[0] // block_size, *shape[1:]), sparsity, rng, dtype)
    return np.repeat(blocks, block_size, axis=0)
  size = int(np.prod(shape))
  n_zeros = get_n_zeros(size, sparsity)
  flat = np.ones(size, dtype=dtype)
  flat[:n_zeros] = 0
  rng = rng if rng is not None else np.random.default_rng()
  return rng.permutation(flat).reshape(shape)


def _validate(shapes: Mapping[str, Shape], method: str, default_sparsity: float,
              custom_sparsity_map: Mapping[str, float]) -> None:
  if method not in DISTRIBUTIONS:
    raise ValueError(f"Unknown sparsity distribution (mask_init_method) {method!r}; "
                     f"allowed values: {', '.join(DISTRIBUTIONS)}.")
  check_sparsity(default_sparsity, "default_sparsity")
  unknown = sorted(set(custom_sparsity_map) - set(shapes))
  if unknown:
    raise ValueError(f"custom_sparsity_map keys {unknown} name no sparsified layer; "
                     f"known layers: {sorted(shapes)}.")
  for name, value in custom_sparsity_map.items():
    check_sparsity(value, f"custom_sparsity_map[{name!r}]")


def _raw_density(shape: Shape, method: str, erk_power_scale: float) -> float:
  """Un-normalised density of a layer under ER or ERK."""
  if method == ERDOS_RENYI:
    n_in, n_out = shape[-2], shape[-1]
    return (n_in + n_out) / (n_in * n_out)
  return (sum(shape) / math.prod(shape)) ** erk_power_scale


def _erdos_renyi_sparsities(shapes: Mapping[str, Shape], method: str,
                            default_sparsity: float,
                            custom_sparsity_map: Mapping[str, float],
                            erk_power_scale: float) -> dict[str, float]:
  """Spreads the uniform budget in proportion to the ER/ERK raw densities.

  A layer whose density would exceed 1 is made dense and the others re-balanced;
  every layer tied at the largest raw density is made dense in the same round.
  """
  dense_layers: set[str] = set()
  free = [name for name in shapes if name not in custom_sparsity_map]
  raw = {name: _raw_density(shapes[name], method, erk_power_scale) for name in free}
  epsilon = 0.0
  while True:
    rhs, divisor = 0.0, 0.0
    for name in free:
      n_param = math.prod(shapes[name])
      n_zeros = get_n_zeros(n_param, default_sparsity)
      if name in dense_layers:
        rhs -= n_zeros
      else:
        rhs += n_param - n_zeros
        divisor += raw[name] * n_param
    sparse_layers = [name for name in free if name not in dense_layers]
    if not sparse_layers:
      break
    epsilon = rhs / divisor
    max_raw = max(raw[name] for name in sparse_layers)
    if epsilon * max_raw <= 1:
      break
    dense_layers.update(name for name in sparse_layers if raw[name] == max_raw)

  sparsities = {}
  for name in shapes:
    if name in custom_sparsity_map:
      sparsities[name] = float(custom_sparsity_map[name])
    elif name in dense_layers:
      sparsities[name] = 0.0
    else:
      sparsities[name] = 1.0 - epsilon * raw[name]
  return sparsities


def get_sparsities(shapes: Mapping[str, Shape], method: str, default_sparsity: float,
                   custom_sparsity_map: Mapping[str, float] | None = None,
                   erk_power_scale: float = 1.0) -> dict[str, float]:
  """Returns `{layer_name: sparsity}` for `shapes = {layer_name: kernel_shape}`.

  Args:
    shapes: kernel shape of every sparsified layer, in model order.
    method: one of `DISTRIBUTIONS`.
    default_sparsity: the overall target sparsity S in [0, 1).
    custom_sparsity_map: exact sparsities for some layers; every key must be in `shapes`.
    erk_power_scale: exponent on the ERK raw densities (1 = ERK, 0 = uniform).

  Raises:
    ValueError: on an unknown method, a sparsity outside [0, 1) or an unknown custom key.
  """
  custom_sparsity_map = dict(custom_sparsity_map or {})
  _validate(shapes, method, default_sparsity, custom_sparsity_map)
  if method == UNIFORM:
    return {name: float(custom_sparsity_map.get(name, default_sparsity)) for name in shapes}
  if method == STR:
    if custom_sparsity_map:
      raise ValueError("The `str` distribution takes every layer's sparsity from the STR "
                       "table; it cannot be combined with custom sparsities "
                       f"({sorted(custom_sparsity_map)}).")
    return published_str_sparsities.lookup(list(shapes), default_sparsity)
  return _erdos_renyi_sparsities(shapes, method, default_sparsity, custom_sparsity_map,
                                 erk_power_scale)


@dataclasses.dataclass(frozen=True)
class SparsityConfig:
  """How sparse each layer is: a global target, its distribution and layer exceptions.

  `first_layer_sparsity` and `last_layer_sparsity` follow the original flags:
  0 leaves that layer unmasked (dense), a negative value gives it the distribution's
  share, and a value in (0, 1) sets it exactly.

  `dense_block_size` > 1 masks the 2-D (Dense) kernels in blocks of that many
  consecutive inputs of one unit: every method then drops, grows and keeps whole blocks
  (scored by the mean of its weights' scores), and a layer at sparsity s keeps
  n_blocks - floor(s * n_blocks) blocks. At 4 these are TFLite's 1x4 blocks, which its
  FULLY_CONNECTED kernel runs sparse (see `rigl.export`). Convolution kernels stay
  elementwise.
  """
  sparsity: float = 0.9
  distribution: str = UNIFORM
  custom_sparsity_map: Mapping[str, float] = dataclasses.field(default_factory=dict)
  erk_power_scale: float = 1.0
  first_layer_sparsity: float = -1.0
  last_layer_sparsity: float = -1.0
  dense_block_size: int = 1

  def __post_init__(self):
    check_sparsity(self.sparsity, "end_sparsity")
    if int(self.dense_block_size) != self.dense_block_size or self.dense_block_size < 1:
      raise ValueError(f"`dense_block_size` must be a positive integer (1: elementwise "
                       f"masks); got {self.dense_block_size!r}.")
    if self.distribution not in DISTRIBUTIONS:
      raise ValueError(f"Unknown sparsity distribution (mask_init_method) "
                       f"{self.distribution!r}; allowed values: {', '.join(DISTRIBUTIONS)}.")
    for flag in ("first_layer_sparsity", "last_layer_sparsity"):
      value = getattr(self, flag)
      if value >= 0:
        check_sparsity(value, flag)

  def layer_sparsities(self, shapes: Mapping[str, Shape]) -> dict[str, float]:
    """Sparsity of every masked layer; layers left unmasked are absent.

    Args:
      shapes: kernel shape of every candidate layer, in model order (the first and
        last entries are the first and last layers).
    """
    names = list(shapes)
    custom = dict(self.custom_sparsity_map)
    unmasked = set()
    for name, value in ((names[0], self.first_layer_sparsity),
                        (names[-1], self.last_layer_sparsity)) if names else ():
      if value == 0:
        unmasked.add(name)
      elif value > 0:
        custom[name] = value
    conflicts = sorted(unmasked & set(self.custom_sparsity_map))
    if conflicts:
      raise ValueError(f"custom_sparsity_map sets {conflicts}, which "
                       "first_layer_sparsity/last_layer_sparsity = 0 leaves unmasked.")
    masked = {name: shapes[name] for name in names if name not in unmasked}
    return get_sparsities(masked, self.distribution, self.sparsity, custom,
                          self.erk_power_scale)

  def block_size(self, name: str, shape: Shape) -> int:
    """Rows of a mask block of layer `name`'s kernel: `dense_block_size` for 2-D ones.

    Raises:
      ValueError: if the kernel's input size is not a multiple of `dense_block_size`.
    """
    if len(shape) != 2 or self.dense_block_size == 1:
      return 1
    if shape[0] % self.dense_block_size:
      raise ValueError(f"`dense_block_size` {self.dense_block_size} does not divide the "
                       f"{shape[0]} inputs of layer {name!r}; choose a divisor, or leave "
                       "the layer dense (custom_sparsity_map {name: 0}).")
    return int(self.dense_block_size)
