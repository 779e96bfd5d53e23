"""One compiled training step of a sparse optimizer, for benchmarks with their own loop."""

from __future__ import annotations

from typing import Any, Callable


def make_train_step(model: Any, optimizer: Any,
                    loss_fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], None]:
  """A `tf.function` that takes one step on a batch `(x, y)`.

  `model` is a tf_keras model, `optimizer` its sparse optimizer (which decides whether
  a call updates masks instead of stepping), `loss_fn(y_true, y_pred)` the loss.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  @tf.function
  def step(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, model(x, training=True))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))

  return step
