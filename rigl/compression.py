"""Dead-unit removal for a chain of dense masks (the original's compressed sizes).

A hidden unit with no incoming or no outgoing connection can be deleted together with
its remaining weights; an input pixel with no outgoing connection can be dropped. The
removal is repeated until nothing changes, since deleting one unit can strand others.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def compressed_shapes(masks: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
  """`{layer: [alive inputs, alive outputs]}` for masks of consecutive dense layers.

  The network's outputs (the last layer's columns) are always kept.
  """
  names = list(masks)
  binary = [np.asarray(masks[name]) != 0 for name in names]
  alive = [np.ones(binary[0].shape[0], bool)]
  alive += [np.ones(m.shape[1], bool) for m in binary]
  changed = True
  while changed:
    changed = False
    for index, mask in enumerate(binary):
      live = mask & alive[index][:, None] & alive[index + 1][None, :]
      has_out = live.any(axis=1)
      if not np.array_equal(alive[index] & has_out, alive[index]):
        alive[index] &= has_out
        changed = True
      if index + 1 < len(binary):  # Hidden units also need an input.
        has_in = live.any(axis=0)
        if not np.array_equal(alive[index + 1] & has_in, alive[index + 1]):
          alive[index + 1] &= has_in
          changed = True
  return {name: [int(alive[i].sum()), int(alive[i + 1].sum())]
          for i, name in enumerate(names)}


def compression_report(masks: Mapping[str, np.ndarray]) -> dict[str, object]:
  """Compressed layer shapes and the dense parameter count they would need."""
  shapes = compressed_shapes(masks)
  return {"compressed_shapes": shapes,
          "compressed_dense_params": int(sum(n_in * n_out for n_in, n_out in
                                             shapes.values()))}
