"""One compiled training step of a sparse optimizer, for benchmarks with their own loop."""

from __future__ import annotations

from typing import Callable


def make_train_step(model, optimizer, loss_fn) -> Callable:
  """A `tf.function` that takes one step on a batch `(x, y)` (the optimizer decides
  whether it updates masks instead)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  @tf.function
  def step(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, model(x, training=True))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))

  return step
