"""Masks under MirroredStrategy: identical on every replica and to a one-device run.

The test session has two logical CPU devices (see conftest.py). Each run trains the
same model on the same global batches, once split over two replicas and once on a
single device; gradients are all-reduced before any score is computed, and random
draws are stateless, so the masks must agree exactly.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import rigl
from rigl import strategies
from rigl import kernel_selection

GLOBAL_BATCH = 8


def _train(strategy, method):
  data = np.random.default_rng(0).standard_normal((32, 6)).astype(np.float32)
  labels = np.random.default_rng(1).integers(0, 4, 32)
  with strategy.scope():
    tf_keras.utils.set_random_seed(3)
    model = tf_keras.Sequential([
        tf_keras.Input((6,)),
        tf_keras.layers.Dense(16, activation="relu", name="hidden"),
        tf_keras.layers.Dense(4, name="logits")])
    optimizer = rigl.create_sparse_optimizer(
        method, tf_keras.optimizers.SGD(0.1, momentum=0.9), model,
        rigl.SparsityConfig(0.7, "erdos_renyi"),
        schedule=rigl.MaskUpdateSchedule(0, 100, 2, 0.5), grow_init="random_normal")
  loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(
      from_logits=True, reduction=tf_keras.losses.Reduction.NONE)
  dataset = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices((data, labels)).batch(GLOBAL_BATCH))

  def replica_step(x, y):
    with tf.GradientTape() as tape:
      loss = tf.nn.compute_average_loss(loss_fn(y, model(x, training=True)),
                                        global_batch_size=GLOBAL_BATCH)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))

  step = tf.function(lambda x, y: strategy.run(replica_step, args=(x, y)))
  for _ in range(3):
    for x, y in dataset:
      step(x, y)
  return optimizer


@pytest.mark.parametrize("method", ["rigl", "set", "momentum", "snip"])
def test_masks_identical_across_replicas_and_to_single_device(method):
  mirrored = _train(strategies.create_strategy("mirrored"), method)
  single = _train(tf.distribute.get_strategy(), method)
  assert int(mirrored.iterations.numpy()) == int(single.iterations.numpy())
  for name, mask in mirrored.masks.items():
    replicas = [component.numpy() for component in mask.values]
    assert len(replicas) == 2
    np.testing.assert_array_equal(replicas[0], replicas[1])
    np.testing.assert_array_equal(replicas[0], single.masks[name].numpy())
    kernels = [component.numpy() for component in mirrored.kernels[name].values]
    np.testing.assert_array_equal(kernels[0], kernels[1])
    np.testing.assert_allclose(kernels[0], single.kernels[name].numpy(), atol=1e-5)
    assert np.all(kernels[0][replicas[0] == 0] == 0)
    initial = kernel_selection.initial_mask(name, replicas[0].shape,
                                          mirrored.layer_sparsities[name], seed=0)
    assert not np.array_equal(replicas[0], initial)  # The masks really changed.
