"""Tiny ImageNet-format (TFRecord) data sets for tests of the ImageNet input."""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow as tf

# Random image sides are drawn from [MIN_SIDE, MAX_SIDE), so every image is cropped.
MIN_SIDE, MAX_SIDE = 36, 60
_PIXEL_LEVELS = 256


def write_tfrecords(path: pathlib.Path, prefix: str, files: int, per_file: int,
                    seed: int, num_classes: int) -> list[int]:
  """JPEGs of varied sizes with labels 1..num_classes, in the standard TPU layout.

  Writes `files` files `<prefix>-<index>-of-<files>` of `per_file` examples each into
  `path`, with the `image/encoded` and `image/class/label` features; returns the labels
  in the order written.
  """
  rng = np.random.default_rng(seed)
  labels = []
  for index in range(files):
    filename = path / f"{prefix}-{index:05d}-of-{files:05d}"
    with tf.io.TFRecordWriter(str(filename)) as writer:
      for _ in range(per_file):
        height, width = rng.integers(MIN_SIDE, MAX_SIDE, 2)
        image = rng.integers(0, _PIXEL_LEVELS, (height, width, 3), dtype=np.uint8)
        label = int(rng.integers(1, num_classes + 1))
        labels.append(label)
        example = tf.train.Example(features=tf.train.Features(feature={
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[tf.io.encode_jpeg(image).numpy()])),
            "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(
                value=[label]))}))
        writer.write(example.SerializeToString())
  return labels


def write_dataset(path: pathlib.Path, train_files: int, images_per_file: int,
                  eval_images: int, num_classes: int) -> pathlib.Path:
  """Writes `train-*` and one `validation-*` file of random images; returns `path`."""
  write_tfrecords(path, "train", train_files, images_per_file, seed=0,
                  num_classes=num_classes)
  write_tfrecords(path, "validation", 1, eval_images, seed=1, num_classes=num_classes)
  return path
