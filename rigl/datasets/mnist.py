"""MNIST and Fashion-MNIST: the four standard IDX files, or tensorflow-datasets.

The IDX reader checks every file (magic number, dimensions, size) and names the file
in its error, so a truncated download never turns into a silent bad run.
"""

from __future__ import annotations

import dataclasses
import gzip
import pathlib
import struct

import numpy as np
import tensorflow as tf

DATASETS = ("mnist", "fashion_mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_IDX_UBYTE = 0x08
IMAGE_SIZE = 28
NUM_CLASSES = 10
PIXEL_SCALE = 255.0
_TFDS_READ_BATCH = 10000


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8 [n, 28, 28]
  labels: np.ndarray  # int64 [n]


def read_idx(path: pathlib.Path, expected_dims: int) -> np.ndarray:
  """Reads a gzipped IDX file of unsigned bytes with `expected_dims` dimensions."""
  if not path.exists():
    raise FileNotFoundError(f"Missing IDX file {path}.")
  try:
    with gzip.open(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as error:
    raise ValueError(f"Corrupt IDX file {path}: {error}") from error
  if len(data) < 4:
    raise ValueError(f"Corrupt IDX file {path}: too short for a header.")
  zero, dtype, dims = struct.unpack(">HBB", data[:4])
  if zero != 0 or dtype != _IDX_UBYTE or dims != expected_dims:
    raise ValueError(f"Corrupt IDX file {path}: expected a {expected_dims}-d unsigned-byte "
                     f"IDX header, found type {dtype:#x} with {dims} dimensions.")
  header_size = 4 + 4 * dims
  shape = struct.unpack(f">{dims}I", data[4:header_size])
  payload = np.frombuffer(data, dtype=np.uint8, offset=header_size)
  if payload.size != int(np.prod(shape)):
    raise ValueError(f"Corrupt IDX file {path}: header says {shape} "
                     f"({int(np.prod(shape))} values), file holds {payload.size}.")
  return payload.reshape(shape)


def load_idx_directory(data_dir: str) -> tuple[Split, Split]:
  """(train, test) from the four standard IDX files in `data_dir`."""
  directory = pathlib.Path(data_dir)
  arrays = {}
  for key, filename in IDX_FILES.items():
    arrays[key] = read_idx(directory / filename, 3 if key.endswith("images") else 1)
  splits = []
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if len(images) != len(labels):
      raise ValueError(f"{data_dir}: {len(images)} {split} images but {len(labels)} labels.")
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
      raise ValueError(f"{data_dir}: {split} images are {images.shape[1:]}, not 28x28.")
    if labels.size and labels.max() >= NUM_CLASSES:
      raise ValueError(f"{data_dir}: {split} labels exceed {NUM_CLASSES - 1}.")
    splits.append(Split(images, labels.astype(np.int64)))
  return splits[0], splits[1]


def load_tfds(dataset: str, tfds_dir: str | None) -> tuple[Split, Split]:
  """(train, test) from tensorflow-datasets (downloads into `tfds_dir` if needed)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  splits = []
  for split in ("train", "test"):
    batches = tfds.load(dataset, split=split, as_supervised=True,
                        data_dir=tfds_dir).batch(_TFDS_READ_BATCH)
    images, labels = zip(*tfds.as_numpy(batches))
    splits.append(Split(np.concatenate(images)[..., 0],
                        np.concatenate(labels).astype(np.int64)))
  return splits[0], splits[1]


def load(dataset: str, data_dir: str = "", tfds_dir: str | None = None
         ) -> tuple[Split, Split]:
  """Loads `dataset` from IDX files in `data_dir`, or from tfds when it is empty."""
  if dataset not in DATASETS:
    raise ValueError(f"Unknown --dataset {dataset!r}; allowed values: "
                     f"{', '.join(DATASETS)}.")
  if data_dir:
    return load_idx_directory(data_dir)
  return load_tfds(dataset, tfds_dir)


def to_dataset(split: Split, batch_size: int, flatten: bool, shuffle_seed: int | None,
               input_mask: np.ndarray | None = None,
               context: tf.distribute.InputContext | None = None,
               skip_batches: int = 0) -> tf.data.Dataset:
  """Batches of float images in [0, 1] (flattened for the FC network) and labels.

  `shuffle_seed` None keeps the order (evaluation); the last partial batch is kept
  for evaluation and dropped for training, so every step has a full batch. With an
  input `context` the examples are sharded over its input pipelines (after the
  shuffle, which every pipeline does with the same seed) and `batch_size` is per
  replica; the first `skip_batches` batches are left out.
  """
  images = split.images.astype(np.float32) / PIXEL_SCALE
  images = images.reshape(len(images), -1) if flatten else images[..., np.newaxis]
  if input_mask is not None:
    images = images * input_mask.reshape(images.shape[1:]).astype(np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((images, split.labels))
  if shuffle_seed is not None:
    dataset = dataset.shuffle(len(images), seed=shuffle_seed)
  if context and context.num_input_pipelines > 1:
    dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
  dataset = dataset.batch(batch_size, drop_remainder=shuffle_seed is not None)
  return dataset.skip(skip_batches).prefetch(tf.data.AUTOTUNE)
