"""ResNet-50 per-layer sparsities found by STR (Kusupati et al., 2020).

The table (`data/str_resnet50_sparsities.csv`) lists, for 16 overall sparsity levels,
the sparsity STR reached in every layer, under PyTorch layer names. Here they are
mapped to this project's ResNet-50 layer names (the TF1 variable scopes:
`initial_conv`, `bottleneck_<k>_block_group<g>_<b>_1`, ..., `final_dense`), and a
layer is matched by the last `/`-separated component of its name.
"""

from __future__ import annotations

import csv
import functools
import pathlib
import re
from typing import Sequence

TABLE_PATH = pathlib.Path(__file__).parent / "data" / "str_resnet50_sparsities.csv"
# Levels are given with two decimals in percent: a flag value matches a level when it
# is equal up to this tolerance (the original compared floats exactly, which made
# 0.9805 and 0.9879 unreachable).
LEVEL_TOLERANCE = 1e-6


def project_layer_name(pytorch_name: str) -> str:
  """Maps a torchvision ResNet-50 layer name to this project's layer name."""
  if pytorch_name == "conv1":
    return "initial_conv"
  if pytorch_name == "fc":
    return "final_dense"
  projection = re.fullmatch(r"layer(\d)\.0\.downsample\.0", pytorch_name)
  if projection:
    group = projection.group(1)
    return f"bottleneck_projection_block_group_projection_block_group{group}"
  conv = re.fullmatch(r"layer(\d)\.(\d+)\.conv(\d)", pytorch_name)
  if not conv:
    raise ValueError(f"Unexpected STR layer name {pytorch_name!r}.")
  group, block, layer = (int(g) for g in conv.groups())
  if block == 0:
    return f"bottleneck_{layer}_block_group_projection_block_group{group}"
  return f"bottleneck_{layer}_block_group{group}_{block}_1"


@functools.lru_cache(maxsize=1)
def read_table() -> dict[float, dict[str, float]]:
  """Returns `{overall_sparsity: {layer_name: sparsity}}`, sparsities in [0, 1]."""
  with open(TABLE_PATH, newline="") as f:
    rows = list(csv.reader(line for line in f if not line.startswith("#")))
  header, body = rows[0], rows[1:]
  levels = [float(value) / 100 for value in header[3:]]
  table: dict[float, dict[str, float]] = {level: {} for level in levels}
  for row in body:
    name = project_layer_name(row[0])
    for level, value in zip(levels, row[3:]):
      table[level][name] = float(value) / 100
  return table


def lookup(layer_names: Sequence[str], overall_sparsity: float) -> dict[str, float]:
  """STR's sparsity of each layer at one of the published overall levels."""
  table = read_table()
  matches = [level for level in table if abs(level - overall_sparsity) < LEVEL_TOLERANCE]
  if not matches:
    raise ValueError(f"STR sparsities exist only for overall sparsities "
                     f"{sorted(table)}; got {overall_sparsity}.")
  level_table = table[matches[0]]
  result = {}
  for name in layer_names:
    short_name = name.rsplit("/", 1)[-1]
    if short_name not in level_table:
      raise ValueError(f"Layer {name!r} is not a ResNet-50 layer of the STR table; "
                       f"known layers: {sorted(level_table)}.")
    result[name] = level_table[short_name]
  return result
