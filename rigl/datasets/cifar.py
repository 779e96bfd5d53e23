"""CIFAR-10/100 input from tensorflow-datasets, preprocessed as the original.

Every image is standardised (`per_image_standardization`) first; training images are
then mirror-padded by 4 pixels (edge rows repeated: 3 2 1 0 | 0 1 2 ...), randomly cropped back to 32x32 and randomly flipped.
Augmentation is stateless, seeded per example from the run seed and the epoch, so a
resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import tensorflow as tf

IMAGE_SIZE = 32
PAD_PIXELS = 4
TRAIN_SPLIT, TEST_SPLIT = "train", "test"
DATASETS = {10: "cifar10", 100: "cifar100"}
# Seeds of the per-example augmentation stream: run seed * this + epoch.
SEED_STRIDE = 100003
# The original shuffled the whole training set.
SHUFFLE_BUFFER = 50000


def dataset_name(num_classes: int) -> str:
  if num_classes not in DATASETS:
    raise ValueError(f"--num_classes must be one of {sorted(DATASETS)} (CIFAR-10 or "
                     f"CIFAR-100); got {num_classes}.")
  return DATASETS[num_classes]


def augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Symmetric mirror padding, a random 32x32 crop and a random horizontal flip."""
  padded = tf.pad(image, [[PAD_PIXELS, PAD_PIXELS], [PAD_PIXELS, PAD_PIXELS], [0, 0]],
                  mode="SYMMETRIC")
  cropped = tf.image.stateless_random_crop(padded, [IMAGE_SIZE, IMAGE_SIZE, 3], seed=seed)
  return tf.image.stateless_random_flip_left_right(cropped, seed=seed[::-1])


def load_split(num_classes: int, split: str, data_dir: str | None,
               context: tf.distribute.InputContext) -> tf.data.Dataset:
  """(uint8 image, int label) pairs of one split, sharded for this input pipeline."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  dataset = tfds.load(dataset_name(num_classes), split=split, as_supervised=True,
                      data_dir=data_dir or None)
  if context.num_input_pipelines > 1:
    dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
  return dataset


def train_dataset(records: tf.data.Dataset, batch_size: int, seed: int, epoch: int,
                  skip_batches: int = 0) -> tf.data.Dataset:
  """One shuffled, augmented epoch of `records`, without its first `skip_batches`."""
  records = records.shuffle(SHUFFLE_BUFFER, seed=seed * SEED_STRIDE + epoch,
                            reshuffle_each_iteration=False)
  seeds = tf.data.Dataset.random(seed=seed * SEED_STRIDE + epoch).batch(2)
  records = tf.data.Dataset.zip((records, seeds)).skip(skip_batches * batch_size)
  dataset = records.map(
      lambda record, example_seed: (
          augment(tf.image.per_image_standardization(record[0]), example_seed),
          tf.cast(record[1], tf.int32)),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(records: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
  """Standardised test images in order, the last partial batch kept."""
  dataset = records.map(
      lambda image, label: (tf.image.per_image_standardization(image),
                            tf.cast(label, tf.int32)),
      num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
