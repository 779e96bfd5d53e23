"""The MNIST fully connected network 784-300-100-10 of the original MNIST script."""

from __future__ import annotations

from types import ModuleType

import tf_keras

HIDDEN_UNITS = (300, 100)
NUM_CLASSES = 10
INPUT_SIZE = 784


def mnist_fc(width: float = 1.0, num_classes: int = NUM_CLASSES, *,
             kernel_regularizer=None, keras_module: ModuleType = tf_keras):
  """Layers `layer1`, `layer2` (ReLU) and `layer3` (logits), glorot-uniform init.

  `keras_module` is `tf_keras` (default) or Keras 3's `keras`, whose model this returns.
  """
  layers = keras_module.layers
  inputs = keras_module.Input((INPUT_SIZE,))
  x = inputs
  for index, units in enumerate(HIDDEN_UNITS, start=1):
    x = layers.Dense(int(units * width), activation="relu", name=f"layer{index}",
                     kernel_regularizer=kernel_regularizer)(x)
  outputs = layers.Dense(num_classes, name=f"layer{len(HIDDEN_UNITS) + 1}",
                         kernel_regularizer=kernel_regularizer)(x)
  return keras_module.Model(inputs, outputs, name="mnist_fc")
