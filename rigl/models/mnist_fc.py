"""The MNIST fully connected network 784-300-100-10 of the original MNIST script."""

from __future__ import annotations

import tf_keras

HIDDEN_UNITS = (300, 100)
NUM_CLASSES = 10
INPUT_SIZE = 784


def mnist_fc(width: float = 1.0, num_classes: int = NUM_CLASSES) -> tf_keras.Model:
  """Layers `layer1`, `layer2` (ReLU) and `layer3` (logits), glorot-uniform init."""
  inputs = tf_keras.Input((INPUT_SIZE,))
  x = inputs
  for index, units in enumerate(HIDDEN_UNITS, start=1):
    x = tf_keras.layers.Dense(int(units * width), activation="relu",
                              name=f"layer{index}")(x)
  outputs = tf_keras.layers.Dense(num_classes, name=f"layer{len(HIDDEN_UNITS) + 1}")(x)
  return tf_keras.Model(inputs, outputs, name="mnist_fc")
