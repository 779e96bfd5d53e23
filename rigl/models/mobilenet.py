"""MobileNet-v1 and -v2 for ImageNet, as in the original `mobilenetv{1,2}_model.py`.

The first convolution and every depthwise convolution are never sparsified (the
original built them unmasked); pointwise convolutions and `final_dense` are.
"""

from __future__ import annotations

import tf_keras

from rigl.models.layers import BatchNormFactory
from rigl.models.layers import fixed_padding_conv
from rigl.models.layers import relu

CHANNEL_DIVISOR = 8
STEM_FILTERS = 32
# (filters, stride) of the 13 depthwise-separable blocks of MobileNet-v1.
V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1),
             (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
# (output channels, stride) of the 17 inverted-residual blocks of MobileNet-v2.
V2_BLOCKS = ((16, 1), (24, 2), (24, 1), (32, 2), (32, 1), (32, 1), (64, 2), (64, 1),
             (64, 1), (64, 1), (96, 1), (96, 1), (96, 1), (160, 2), (160, 1), (160, 1),
             (320, 1))
V2_HEAD_FILTERS = 1280


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
  """Rounds a channel count to a multiple of `divisor`, losing at most 10%."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


def _initializer():
  return tf_keras.initializers.VarianceScaling(scale=1.0, mode="fan_in",
                                              distribution="truncated_normal")


def _depthwise(x, strides: int, name: str):
  return fixed_padding_conv(x, None, 3, strides, name, "glorot_uniform", depthwise=True)


def _pointwise(x, filters: int, name: str):
  return tf_keras.layers.Conv2D(filters, 1, use_bias=False, name=name,
                                kernel_initializer=_initializer())(x)


def _stem(inputs, width: float, batch_norm: BatchNormFactory):
  x = fixed_padding_conv(inputs, make_divisible(STEM_FILTERS * width), 3, 2,
                         "initial_conv", _initializer())
  return relu(batch_norm(x))


def _head(x, num_classes: int):
  x = tf_keras.layers.GlobalAveragePooling2D(name="final_avg_pool")(x)
  return tf_keras.layers.Dense(num_classes, name="final_dense",
                               kernel_initializer=_initializer())(x)


def mobilenet_v1(width: float = 1.0, num_classes: int = 1000,
                 input_shape: tuple[int, int, int] = (224, 224, 3)) -> tf_keras.Model:
  """MobileNet-v1: layers `initial_conv`, `depthwise_nxn_{i}`, `contraction_1x1_{i}`."""
  batch_norm = BatchNormFactory()
  inputs = tf_keras.Input(input_shape)
  x = _stem(inputs, width, batch_norm)
  for index, (filters, strides) in enumerate(V1_BLOCKS):
    x = relu(batch_norm(_depthwise(x, strides, f"depthwise_nxn_{index}")))
    divisor = 1 if index == 0 else CHANNEL_DIVISOR
    x = _pointwise(x, make_divisible(int(width * filters), divisor),
                   f"contraction_1x1_{index}")
    x = relu(batch_norm(x))
  return tf_keras.Model(inputs, _head(x, num_classes), name="mobilenet_v1")


def mobilenet_v2(width: float = 1.0, num_classes: int = 1000,
                 input_shape: tuple[int, int, int] = (224, 224, 3),
                 expansion_factor: float = 6.0) -> tf_keras.Model:
  """MobileNet-v2: `expand_1x1_{i}`, `depthwise_nxn_{i}`, `contraction_1x1_{i}`, head."""
  batch_norm = BatchNormFactory()
  inputs = tf_keras.Input(input_shape)
  x = _stem(inputs, width, batch_norm)
  for index, (channels, strides) in enumerate(V2_BLOCKS):
    in_channels = x.shape[-1]
    out_channels = make_divisible(channels * width)
    y = x
    if index > 0:
      y = relu(batch_norm(_pointwise(y, int(in_channels * expansion_factor),
                                     f"expand_1x1_{index}")))
    y = relu(batch_norm(_depthwise(y, strides, f"depthwise_nxn_{index}")))
    y = batch_norm(_pointwise(y, out_channels, f"contraction_1x1_{index}"))
    if strides == 1 and in_channels == out_channels:
      y = tf_keras.layers.Add()([x, y])
    x = y
  head = max(V2_HEAD_FILTERS, make_divisible(V2_HEAD_FILTERS * width))
  x = relu(batch_norm(_pointwise(x, head, "final_1x1_conv")))
  return tf_keras.Model(inputs, _head(x, num_classes), name="mobilenet_v2")
