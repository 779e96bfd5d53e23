"""MNIST-format IDX reading and the tensorflow-datasets path (on mock data)."""

import gzip
import struct

import numpy as np
import pytest

from rigl.datasets import mnist
from rigl.testing import fake_mnist

BATCH = 20
TRAIN_EXAMPLES, TEST_EXAMPLES = 30, 10


def test_reads_the_four_idx_files(tmp_path):
  fake_mnist.write_dataset(tmp_path, TRAIN_EXAMPLES, TEST_EXAMPLES)
  train, test = mnist.load("fashion_mnist", data_dir=str(tmp_path))
  assert train.images.shape == (TRAIN_EXAMPLES, mnist.IMAGE_SIZE, mnist.IMAGE_SIZE)
  assert train.images.dtype == np.uint8
  assert test.labels.shape == (TEST_EXAMPLES,) and test.labels.max() < mnist.NUM_CLASSES


def test_idx_reader_rejects_wrong_header(tmp_path):
  path = tmp_path / "labels.gz"
  with gzip.open(path, "wb") as f:
    f.write(struct.pack(">HBBI", 0, 0x0D, 1, 1) + b"\x00\x00\x00\x00")
  with pytest.raises(ValueError, match="labels.gz"):
    mnist.read_idx(path, 1)


def test_tensorflow_datasets_path_with_mock_data(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  with tfds.testing.mock_data(num_examples=BATCH * 3):
    train, test = mnist.load("fashion_mnist", data_dir="", tfds_dir=str(tmp_path))
  assert train.images.shape == (BATCH * 3, 28, 28) and train.images.dtype == np.uint8
  assert test.labels.dtype == np.int64 and test.labels.max() < 10
