"""Tiny MNIST-format (IDX) data sets for tests of the MNIST script."""

from __future__ import annotations

import gzip
import pathlib
import struct

import numpy as np

# The class c of an image shows as a bright row 2c + 3, so that training can learn.
_FIRST_CLASS_ROW, _ROWS_PER_CLASS = 3, 2
_NOISE_LEVEL, _BRIGHT = 60, 255
_IDX_UNSIGNED_BYTE = 0x08


def write_idx(path: pathlib.Path, array: np.ndarray) -> None:
  """Writes `array` as a gzipped IDX file of unsigned bytes (MNIST's format)."""
  header = struct.pack(">HBB", 0, _IDX_UNSIGNED_BYTE, array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def write_dataset(directory: pathlib.Path, train_examples: int, test_examples: int,
                  seed: int = 0) -> pathlib.Path:
  """Writes train and t10k image and label files into `directory`; returns it."""
  rng = np.random.default_rng(seed)
  for split, count in (("train", train_examples), ("t10k", test_examples)):
    labels = rng.integers(0, 10, count)
    images = rng.integers(0, _NOISE_LEVEL, (count, 28, 28))
    images[np.arange(count), labels * _ROWS_PER_CLASS + _FIRST_CLASS_ROW, :] = _BRIGHT
    write_idx(directory / f"{split}-images-idx3-ubyte.gz", images)
    write_idx(directory / f"{split}-labels-idx1-ubyte.gz", labels)
  return directory
