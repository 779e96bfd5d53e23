"""Keras 3 copies of `rigl.models`' FC-300-100 and Wide ResNet, for the benchmarks.

Same architectures, layer names and initialisers as `rigl/models/mnist_fc.py` and
`rigl/models/wide_resnet.py` (tf_keras), so that the same sparsity rules and
distributions give the same per-layer sparsities. Import after setting
KERAS_BACKEND.
"""

from __future__ import annotations

import keras

from rigl.models.layers import BN_EPSILON
from rigl.models.layers import BN_MOMENTUM
from rigl.models.mnist_fc import HIDDEN_UNITS
from rigl.models.mnist_fc import INPUT_SIZE
from rigl.models.mnist_fc import NUM_CLASSES
from rigl.models.wide_resnet import DROPOUT_RATE
from rigl.models.wide_resnet import FINAL_POOL_SIZE
from rigl.models.wide_resnet import GROUP_FILTERS
from rigl.models.wide_resnet import GROUP_STRIDES
from rigl.models.wide_resnet import STEM_FILTERS


def mnist_fc(num_classes: int = NUM_CLASSES,
             kernel_regularizer: keras.regularizers.Regularizer | None = None
             ) -> keras.Model:
  """784-300-100-10: `layer1`, `layer2` (ReLU) and `layer3` (logits)."""
  inputs = keras.Input((INPUT_SIZE,))
  x = inputs
  for index, units in enumerate(HIDDEN_UNITS, start=1):
    x = keras.layers.Dense(units, activation="relu", name=f"layer{index}",
                           kernel_regularizer=kernel_regularizer)(x)
  output_name = f"layer{len(HIDDEN_UNITS) + 1}"
  outputs = keras.layers.Dense(num_classes, name=output_name,
                               kernel_regularizer=kernel_regularizer)(x)
  return keras.Model(inputs, outputs, name="mnist_fc")


class _BatchNorm:
  """BatchNormalization layers named `batch_normalization`, `_1`, ... in order."""

  def __init__(self):
    self._count = 0

  def __call__(self, x):
    name = "batch_normalization" + (f"_{self._count}" if self._count else "")
    self._count += 1
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                           name=name)(x)


def _conv(x, filters: int, kernel_size: int, strides: int, name: str,
          padding: str = "same"):
  return keras.layers.Conv2D(filters, kernel_size, strides, padding=padding,
                             use_bias=False, name=name,
                             kernel_initializer="glorot_uniform")(x)


def wide_resnet(depth: int = 22, width: int = 2, num_classes: int = 10,
                input_shape: tuple[int, int, int] = (32, 32, 3),
                dropout_rate: float = DROPOUT_RATE) -> keras.Model:
  """WRN-`depth`-`width` with pre-activation blocks (see `rigl.models.wide_resnet`)."""
  if (depth - 4) % 6:
    raise ValueError(f"`depth` must be 6n + 4 (e.g. 16, 22, 28); got {depth}.")
  blocks = (depth - 4) // 6
  batch_norm = _BatchNorm()
  inputs = keras.Input(input_shape)
  x = _conv(inputs, STEM_FILTERS, 3, 1, "conv_1")
  for group_index, (filters, strides) in enumerate(zip(GROUP_FILTERS, GROUP_STRIDES)):
    group = f"conv_{group_index + 2}"
    filters *= width
    for block in range(blocks):
      block_strides = strides if block == 0 else 1
      activated = keras.layers.ReLU()(batch_norm(x))
      shortcut = x
      if x.shape[-1] != filters:
        shortcut = _conv(activated, filters, 1, block_strides, f"skip_{group}",
                         padding="valid")
      y = _conv(activated, filters, 3, block_strides, f"{group}_{block}_1")
      y = keras.layers.ReLU()(batch_norm(y))
      y = keras.layers.Dropout(dropout_rate)(y)
      y = _conv(y, filters, 3, 1, f"{group}_{block}_2")
      x = keras.layers.Add()([y, shortcut])
  x = keras.layers.ReLU()(batch_norm(x))
  x = keras.layers.AveragePooling2D(FINAL_POOL_SIZE)(x)
  x = keras.layers.Flatten()(x)
  outputs = keras.layers.Dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=f"wrn_{depth}_{width}")
