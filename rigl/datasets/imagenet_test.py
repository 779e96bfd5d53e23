"""The ImageNet input pipeline on tiny TFRecord files the tests write themselves."""

import numpy as np
import pytest
import tensorflow as tf

from rigl.datasets import imagenet
from rigl.testing import fake_imagenet

NUM_CLASSES, IMAGE_SIZE, BATCH = 10, 32, 4
TRAIN_FILES, IMAGES_PER_FILE, EVAL_IMAGES = 2, 6, 8


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return fake_imagenet.write_dataset(tmp_path_factory.mktemp("imagenet"), TRAIN_FILES,
                                     IMAGES_PER_FILE, EVAL_IMAGES, NUM_CLASSES)


def test_input_pipeline_labels_crops_and_resume(data_dir):
  config = imagenet.InputConfig(data_directory=str(data_dir), image_size=IMAGE_SIZE)
  context = tf.distribute.InputContext()
  evaluation = list(imagenet.dataset(config, False, BATCH, context))
  images = np.concatenate([batch[0].numpy() for batch in evaluation])
  labels = np.concatenate([batch[1].numpy() for batch in evaluation])
  assert images.shape == (EVAL_IMAGES, IMAGE_SIZE, IMAGE_SIZE, 3)
  assert labels.min() >= 0 and labels.max() < NUM_CLASSES
  # Normalised pixels: (p - mean) / std of uniform noise is roughly centred.
  assert abs(images.mean()) < 1.0 and 0.5 < images.std() < 2.5
  again = np.concatenate([b[0].numpy() for b in imagenet.dataset(config, False, BATCH,
                                                                 context)])
  np.testing.assert_array_equal(images, again)  # Evaluation crops are deterministic.
  epoch = list(imagenet.dataset(config, True, BATCH, context, epoch=1))
  resumed = list(imagenet.dataset(config, True, BATCH, context, epoch=1, skip_batches=1))
  assert len(epoch) == TRAIN_FILES * IMAGES_PER_FILE // BATCH
  assert len(resumed) == len(epoch) - 1
  for full, tail in zip(epoch[1:], resumed):
    np.testing.assert_array_equal(full[0].numpy(), tail[0].numpy())
    np.testing.assert_array_equal(full[1].numpy(), tail[1].numpy())
  other_epoch = list(imagenet.dataset(config, True, BATCH, context, epoch=2))
  assert not np.array_equal(epoch[0][0].numpy(), other_epoch[0][0].numpy())


def test_labels_are_shifted_to_zero_based(tmp_path):
  labels = fake_imagenet.write_tfrecords(tmp_path, "validation", 1, 5, seed=3,
                                         num_classes=NUM_CLASSES)
  config = imagenet.InputConfig(data_directory=str(tmp_path), image_size=8)
  batches = imagenet.dataset(config, False, 5, tf.distribute.InputContext())
  np.testing.assert_array_equal(next(iter(batches))[1].numpy(), np.array(labels) - 1)


def test_center_crop_matches_the_original_rule():
  image = np.arange(40 * 64 * 3, dtype=np.uint8).reshape(40, 64, 3)
  jpeg = tf.io.encode_jpeg(image, quality=100)
  crop = int(IMAGE_SIZE / (IMAGE_SIZE + imagenet.CROP_PADDING) * 40)
  top, left = (40 - crop + 1) // 2, (64 - crop + 1) // 2
  window = tf.io.decode_and_crop_jpeg(jpeg, [top, left, crop, crop], channels=3)
  expected = tf.image.resize(window, [IMAGE_SIZE] * 2, method="bicubic").numpy()
  np.testing.assert_allclose(
      imagenet.decode_and_center_crop(jpeg, IMAGE_SIZE).numpy(), expected, atol=1e-3)
