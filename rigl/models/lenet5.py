"""LeNet-5 (LeCun et al., 1998) for 28x28 images, to exercise convolutions on MNIST."""

from __future__ import annotations

import tf_keras

NUM_CLASSES = 10


def lenet5(width: float = 1.0, num_classes: int = NUM_CLASSES,
           input_shape: tuple[int, int, int] = (28, 28, 1)) -> tf_keras.Model:
  """conv1 (6 5x5, same) - pool - conv2 (16 5x5) - pool - fc1 120 - fc2 84 - fc3."""
  inputs = tf_keras.Input(input_shape)
  x = tf_keras.layers.Conv2D(int(6 * width), 5, padding="same", activation="relu",
                             name="conv1")(inputs)
  x = tf_keras.layers.MaxPooling2D(2)(x)
  x = tf_keras.layers.Conv2D(int(16 * width), 5, activation="relu", name="conv2")(x)
  x = tf_keras.layers.MaxPooling2D(2)(x)
  x = tf_keras.layers.Flatten()(x)
  x = tf_keras.layers.Dense(int(120 * width), activation="relu", name="fc1")(x)
  x = tf_keras.layers.Dense(int(84 * width), activation="relu", name="fc2")(x)
  outputs = tf_keras.layers.Dense(num_classes, name="fc3")(x)
  return tf_keras.Model(inputs, outputs, name="lenet5")
