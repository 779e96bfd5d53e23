"""Wide ResNet for CIFAR-10, as in the original `cifar_resnet/resnet_model.py`.

Pre-activation blocks, depth 6n + 4 with n blocks per group, widening factor k:
`conv_1` (16 channels), groups `conv_2`/`conv_3`/`conv_4` with 16k/32k/64k channels
(stride 2 in the first block of `conv_3` and `conv_4`), a 1x1 `skip_<group>`
convolution on the activated input when the channel count changes, dropout between
the two 3x3 convolutions of a block, and a `logits` dense layer.
"""

from __future__ import annotations

from types import ModuleType

import tf_keras

from rigl.models.layers import BatchNormFactory
from rigl.models.layers import relu

STEM_FILTERS = 16
GROUP_FILTERS = (16, 32, 64)
GROUP_STRIDES = (1, 2, 2)
DROPOUT_RATE = 0.3
FINAL_POOL_SIZE = 8


def wide_resnet(depth: int = 16, width: int = 4, num_classes: int = 10,
                input_shape: tuple[int, int, int] = (32, 32, 3),
                dropout_rate: float = DROPOUT_RATE, *,
                keras_module: ModuleType = tf_keras):
  """Builds WRN-`depth`-`width`; the paper's CIFAR-10 model is WRN-22-2.

  `keras_module` is `tf_keras` (default) or Keras 3's `keras`, whose model this returns.
  """
  if (depth - 4) % 6:
    raise ValueError(f"`resnet_depth` must be 6n + 4 (e.g. 16, 22, 28); got {depth}.")
  layers = keras_module.layers

  def conv(x, filters: int, kernel_size: int, strides: int, name: str,
           padding: str = "same"):
    return layers.Conv2D(filters, kernel_size, strides, padding=padding, use_bias=False,
                         name=name, kernel_initializer="glorot_uniform")(x)

  def relu_(x):
    return relu(x, keras_module)

  blocks = (depth - 4) // 6
  batch_norm = BatchNormFactory(keras_module)
  inputs = keras_module.Input(input_shape)
  x = conv(inputs, STEM_FILTERS, 3, 1, "conv_1")
  for group_index, (filters, strides) in enumerate(zip(GROUP_FILTERS, GROUP_STRIDES)):
    group = f"conv_{group_index + 2}"
    filters *= width
    for block in range(blocks):
      block_strides = strides if block == 0 else 1
      activated = relu_(batch_norm(x))
      shortcut = x
      if x.shape[-1] != filters:
        shortcut = conv(activated, filters, 1, block_strides, f"skip_{group}",
                        padding="valid")
      y = conv(activated, filters, 3, block_strides, f"{group}_{block}_1")
      y = relu_(batch_norm(y))
      y = layers.Dropout(dropout_rate)(y)
      y = conv(y, filters, 3, 1, f"{group}_{block}_2")
      x = layers.Add()([y, shortcut])
  x = relu_(batch_norm(x))
  x = layers.AveragePooling2D(FINAL_POOL_SIZE)(x)
  x = layers.Flatten()(x)
  outputs = layers.Dense(num_classes, name="logits")(x)
  return keras_module.Model(inputs, outputs, name=f"wrn_{depth}_{width}")
