"""Dead-unit removal on hand-made masks."""

import numpy as np

from rigl import compression


def test_dense_masks_are_not_compressed():
  masks = {"a": np.ones((4, 3)), "b": np.ones((3, 2))}
  assert compression.compressed_shapes(masks) == {"a": [4, 3], "b": [3, 2]}


def test_removal_cascades_through_layers():
  first = np.ones((4, 3))
  first[3] = 0  # Input 3 feeds nothing.
  second = np.ones((3, 3))
  second[:, 2] = 0  # Hidden unit 2 of the second layer has no input...
  third = np.zeros((3, 2))
  third[0, 0] = third[2, 1] = 1  # ...and hidden unit 1 has no output.
  shapes = compression.compressed_shapes({"a": first, "b": second, "c": third})
  # Layer-2 units: 1 (no output) and 2 (no input) die; layer-1 units survive through 0.
  assert shapes == {"a": [3, 3], "b": [3, 1], "c": [1, 2]}
  report = compression.compression_report({"a": first, "b": second, "c": third})
  assert report["compressed_dense_params"] == 3 * 3 + 3 * 1 + 1 * 2
