"""One layer's mask update as pure functions, shared by both Keras implementations.

Each function takes the layer's current values and returns the new ones; the caller
(the tf_keras core per device, the Keras 3 optimizer per backend) assigns them. `ops`
is the array namespace and `selection` the module choosing top entries
(`rigl.mask_ops` on tf_keras, `rigl.keras3.mask_ops` on Keras 3): both offer
`keep_top`, `kth_largest` and `drop_and_grow` with the same tie-breaking.

Block masks (`block_size` > 1, for 2-D kernels): scores are averaged over blocks of
`block_size` consecutive rows (`pool_blocks`), whole blocks are selected, and the
block mask is repeated back to the kernel's shape (`expand_blocks`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from rigl import grow_init as grow_init_lib
from rigl import sparsity as sparsity_lib

Tensor = Any


@dataclasses.dataclass(frozen=True)
class Rewiring:
  """The outcome of a drop/grow update: the new mask and what new connections get."""
  new_mask: Tensor
  new_connections: Tensor
  kernel_values: Tensor
  slot_values: Tensor


def pool_blocks(ops, values, block_size: int):
  """The mean of `values` (rows, columns) over blocks of `block_size` consecutive rows."""
  if block_size == 1:
    return values
  rows, columns = (int(d) for d in values.shape)
  return ops.mean(ops.reshape(values, (rows // block_size, block_size, columns)), axis=1)


def expand_blocks(ops, block_values, block_size: int):
  """Each row of `block_values` repeated `block_size` times: back to the kernel's rows."""
  if block_size == 1:
    return block_values
  return ops.repeat(block_values, block_size, axis=0)


def drop_and_grow(method, ops, selection, random, weights, old_mask, dense_grad,
                  state: dict[str, Tensor], drop_fraction,
                  block_size: int = 1) -> Rewiring:
  """Drops the `int(n_active * drop_fraction)` lowest drop scores, grows as many.

  `method` supplies the scores (`_drop_score`, `_grow_score`, `_new_slot_values`),
  `reinit_when_same` and the parsed `_grow_init`. With `block_size` > 1, counts and
  scores are of blocks.
  """
  block_mask = pool_blocks(ops, old_mask, block_size)
  n_ones = ops.sum(ops.cast(block_mask, "int32"))
  # float32 as in the original, so counts match it exactly.
  n_prune = ops.cast(ops.cast(n_ones, "float32") * drop_fraction, "int32")
  kept, grown = selection.drop_and_grow(
      pool_blocks(ops, method._drop_score(ops, weights, old_mask, random), block_size),
      pool_blocks(ops, method._grow_score(ops, weights, old_mask, dense_grad, state,
                                          random), block_size),
      n_ones - n_prune, n_prune)
  kept = expand_blocks(ops, kept, block_size)
  grown = expand_blocks(ops, grown, block_size)
  new_connections = grown if method.reinit_when_same else grown * (1.0 - old_mask)
  kernel_values = grow_init_lib.grow_values(
      method._grow_init, weights, old_mask, random, gradient=dense_grad,
      initial_kernel=state.get("initial_kernel"), ops=ops)
  return Rewiring(kept + grown, new_connections, kernel_values,
                  method._new_slot_values(ops, dense_grad))


def rewired(ops, current, new_connections, values, new_mask):
  """`current` set to `values` at `new_connections` and to 0 off `new_mask`."""
  dtype = current.dtype
  return ops.where(new_connections > 0, ops.cast(values, dtype), current) * ops.cast(
      new_mask, dtype)


def keep_top_at_sparsity(ops, selection, scores, sparsity: float, block_size: int = 1):
  """A mask keeping the n - floor(sparsity * n) highest scores (of blocks)."""
  scores = pool_blocks(ops, scores, block_size)
  size = math.prod(int(d) for d in scores.shape)
  return expand_blocks(ops, selection.keep_top(
      scores, size - sparsity_lib.get_n_zeros(size, sparsity)), block_size)


def magnitude_pruning(ops, selection, weights, threshold, sparsity, decay: float,
                      block_size: int = 1):
  """(new mask, new threshold): keeps |w| at or above the smoothed k-th largest |w|.

  k = max(round(n * (1 - sparsity)), 1) (tfmot's rule); the threshold is the
  exponential average (`decay`) of the k-th largest magnitudes over updates. With
  `block_size` > 1, magnitudes are blocks' mean |w| (tfmot's average block pooling).
  """
  magnitudes = pool_blocks(ops, ops.abs(weights), block_size)
  size = math.prod(int(d) for d in magnitudes.shape)
  keep = ops.maximum(ops.cast(ops.round(ops.cast(size, "float32") * (
      1.0 - ops.cast(sparsity, "float32"))), "int32"), 1)
  new_threshold = decay * threshold + (1.0 - decay) * selection.kth_largest(
      magnitudes, keep)
  new_mask = ops.cast(magnitudes >= new_threshold, magnitudes.dtype)
  return expand_blocks(ops, new_mask, block_size), new_threshold
