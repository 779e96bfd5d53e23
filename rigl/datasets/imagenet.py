"""ImageNet input pipelines: standard TFRecords, tensorflow-datasets, or synthetic data.

Real data is preprocessed as the original (tensorflow/tpu `imagenet_input`):
- training: an Inception-style random crop (object coverage >= 0.1, area 8%-100%,
  aspect ratio 3/4-4/3, 10 attempts, centre crop if none fits), bicubic resize to
  224x224 and a random horizontal flip;
- evaluation: a centre crop of 224/256 of the shorter side, bicubic resize;
- pixels normalised with the ImageNet mean and standard deviation (x255), as the
  original's model function did; TFRecord labels 1..1000 become 0..999.

Randomness is stateless, seeded per example from the run seed and the epoch, so an
epoch's batches are the same on every run; a resumed run skips the records already
trained on before decoding them. Pipelines return per-replica batches for one input
pipeline of a `tf.distribute.InputContext` (files, or records, are sharded per host).
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

IMAGE_SIZE = 224
# The evaluation crop keeps IMAGE_SIZE / (IMAGE_SIZE + CROP_PADDING) of the short side.
CROP_PADDING = 32
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
MIN_OBJECT_COVERED = 0.1
AREA_RANGE = (0.08, 1.0)
ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)
MAX_CROP_ATTEMPTS = 10
SHUFFLE_BUFFER = 1024
INTERLEAVE_CYCLE = 16
TFRECORD_BUFFER_BYTES = 8 * 1024 * 1024
TRAIN_FILES, EVAL_FILES = "train-*", "validation-*"
TFDS_NAME = "imagenet2012"
# Shuffle and augmentation seeds: (run seed * SEED_STRIDE + epoch) * PIPELINE_STRIDE
# + input pipeline, distinct for every (seed, epoch, host).
SEED_STRIDE = 100003
PIPELINE_STRIDE = 4096


@dataclasses.dataclass(frozen=True)
class InputConfig:
  """Where the images come from and how they are prepared.

  Attributes:
    data_directory: TFRecords `train-*` / `validation-*` with `image/encoded` and
      `image/class/label` (1..1000); used when set.
    tfds_data_dir: tensorflow-datasets `imagenet2012` directory; used when set and
      `data_directory` is not.
    use_synthetic_data: random images and labels, for benchmarks and smoke runs.
    image_size: side of the square model input.
    num_classes: labels are in [0, num_classes).
    num_parallel_calls: parallel decoding calls.
    seed: run seed (shuffling, crops, flips).
  """
  data_directory: str = ""
  tfds_data_dir: str = ""
  use_synthetic_data: bool = False
  image_size: int = IMAGE_SIZE
  num_classes: int = 1000
  num_parallel_calls: int = 64
  seed: int = 0

  def __post_init__(self):
    if self.use_synthetic_data and (self.data_directory or self.tfds_data_dir):
      raise ValueError("--use_synthetic_data cannot be combined with --data_directory "
                       "or --tfds_data_dir.")
    if not (self.use_synthetic_data or self.data_directory or self.tfds_data_dir):
      raise ValueError("No training data: set --data_directory (ImageNet TFRecords), "
                       "--tfds_data_dir (tensorflow-datasets imagenet2012) or "
                       "--use_synthetic_data.")


def _seed(config: InputConfig, epoch: int, pipeline: int = 0) -> int:
  return (config.seed * SEED_STRIDE + epoch) * PIPELINE_STRIDE + pipeline


def normalize(image: tf.Tensor) -> tf.Tensor:
  """Pixels in [0, 255] -> (pixel - mean) / std per channel."""
  return (image - tf.constant(MEAN_RGB)) / tf.constant(STDDEV_RGB)


def _resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
  return tf.image.resize(image, [image_size, image_size], method="bicubic")


def decode_and_center_crop(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
  """The evaluation crop: centre image_size/(image_size+32) of the short side."""
  shape = tf.image.extract_jpeg_shape(image_bytes)
  height, width = shape[0], shape[1]
  crop = tf.cast(image_size / (image_size + CROP_PADDING)
                 * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
  window = tf.stack([(height - crop + 1) // 2, (width - crop + 1) // 2, crop, crop])
  image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
  return _resize(image, image_size)


def decode_and_random_crop(image_bytes: tf.Tensor, image_size: int,
                           seed: tf.Tensor) -> tf.Tensor:
  """The Inception crop; the centre crop when no sampled box fits."""
  shape = tf.image.extract_jpeg_shape(image_bytes)
  whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4])
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, whole_image, seed=seed, min_object_covered=MIN_OBJECT_COVERED,
      aspect_ratio_range=ASPECT_RATIO_RANGE, area_range=AREA_RANGE,
      max_attempts=MAX_CROP_ATTEMPTS, use_image_if_no_bounding_boxes=True)
  failed = tf.reduce_all(tf.equal(size[:2], shape[:2]))

  def random_crop():
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    return _resize(tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3),
                   image_size)

  return tf.cond(failed, lambda: decode_and_center_crop(image_bytes, image_size),
                 random_crop)


def preprocess(image_bytes: tf.Tensor, is_training: bool, image_size: int,
               seed: tf.Tensor | None = None) -> tf.Tensor:
  """JPEG bytes -> a normalised float32 [image_size, image_size, 3] image."""
  if is_training:
    image = decode_and_random_crop(image_bytes, image_size, seed)
    image = tf.image.stateless_random_flip_left_right(image, seed=seed[::-1])
  else:
    image = decode_and_center_crop(image_bytes, image_size)
  return normalize(tf.reshape(image, [image_size, image_size, 3]))


def parse_tfrecord(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(JPEG bytes, label in 0..999) from a record of the standard TPU layout."""
  features = tf.io.parse_single_example(serialized, {
      "image/encoded": tf.io.FixedLenFeature((), tf.string, ""),
      "image/class/label": tf.io.FixedLenFeature([], tf.int64)})
  return features["image/encoded"], tf.cast(features["image/class/label"] - 1, tf.int32)


def _records_from_tfrecords(config: InputConfig, split: str, shuffle: bool, epoch: int,
                            context: tf.distribute.InputContext) -> tf.data.Dataset:
  pattern = os.path.join(config.data_directory,
                         TRAIN_FILES if split == "train" else EVAL_FILES)
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise ValueError(f"--data_directory={config.data_directory}: no files match {pattern}.")
  dataset = tf.data.Dataset.from_tensor_slices(files)
  shard_files = len(files) >= context.num_input_pipelines
  if shard_files:
    dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
  if shuffle:
    # The same order on every host: records may be sharded after the interleave.
    dataset = dataset.shuffle(len(files), seed=_seed(config, epoch))
  dataset = dataset.interleave(
      lambda path: tf.data.TFRecordDataset(path, buffer_size=TFRECORD_BUFFER_BYTES),
      cycle_length=min(INTERLEAVE_CYCLE, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True)
  if not shard_files:
    dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
  return dataset.map(parse_tfrecord, num_parallel_calls=tf.data.AUTOTUNE)


def _records_from_tfds(config: InputConfig, split: str, shuffle: bool, epoch: int,
                       context: tf.distribute.InputContext) -> tf.data.Dataset:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  dataset = tfds.load(
      TFDS_NAME, split=split, data_dir=config.tfds_data_dir, shuffle_files=shuffle,
      decoders={"image": tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(input_context=context,
                                  shuffle_seed=_seed(config, epoch),
                                  interleave_cycle_length=INTERLEAVE_CYCLE))
  return dataset.map(lambda example: (example["image"], tf.cast(example["label"], tf.int32)))


def real_dataset(config: InputConfig, is_training: bool, batch_size: int,
                 context: tf.distribute.InputContext, epoch: int = 0,
                 skip_batches: int = 0, split: str | None = None) -> tf.data.Dataset:
  """Per-replica batches of one epoch of real images for one input pipeline.

  `split` ("train" or "validation") defaults to the one `is_training` implies;
  evaluating on the training images passes "train" with `is_training` False.
  """
  read = _records_from_tfrecords if config.data_directory else _records_from_tfds
  split = split or ("train" if is_training else "validation")
  records = read(config, split, is_training, epoch, context)
  if is_training:
    pipeline_seed = _seed(config, epoch, context.input_pipeline_id)
    records = records.shuffle(SHUFFLE_BUFFER, seed=pipeline_seed)
    # One stateless seed per example, fixed by (run seed, epoch, pipeline, position).
    seeds = tf.data.Dataset.random(seed=pipeline_seed).batch(2)
    records = tf.data.Dataset.zip((records, seeds)).skip(skip_batches * batch_size)
    dataset = records.map(
        lambda record, seed: (preprocess(record[0], True, config.image_size, seed),
                              record[1]),
        num_parallel_calls=config.num_parallel_calls, deterministic=True)
  else:
    dataset = records.map(
        lambda image, label: (preprocess(image, False, config.image_size), label),
        num_parallel_calls=config.num_parallel_calls, deterministic=True)
  return dataset.batch(batch_size, drop_remainder=is_training).prefetch(tf.data.AUTOTUNE)


def synthetic_dataset(config: InputConfig, batch_size: int, num_batches: int | None,
                      ) -> tf.data.Dataset:
  """One fixed random batch, repeated `num_batches` times (None: endlessly)."""
  images = tf.random.stateless_normal(
      [batch_size, config.image_size, config.image_size, 3], seed=[config.seed, 1])
  labels = tf.random.stateless_uniform([batch_size], seed=[config.seed, 2], minval=0,
                                       maxval=config.num_classes, dtype=tf.int32)
  return tf.data.Dataset.from_tensors((images, labels)).repeat(num_batches)


def dataset(config: InputConfig, is_training: bool, batch_size: int,
            context: tf.distribute.InputContext, epoch: int = 0, skip_batches: int = 0,
            num_synthetic_batches: int | None = None,
            split: str | None = None) -> tf.data.Dataset:
  """Per-replica batches from the source `config` names (see `InputConfig`)."""
  if config.use_synthetic_data:
    return synthetic_dataset(config, batch_size, num_synthetic_batches)
  return real_dataset(config, is_training, batch_size, context, epoch, skip_batches, split)
