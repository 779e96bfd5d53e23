"""Building blocks shared by the models: fixed padding and numbered BN.

Builders that also serve Keras 3 take the Keras module to build with (`tf_keras`, the
default, or `keras`): both expose the same `layers`, `Input` and `Model`.
"""

from __future__ import annotations

from types import ModuleType

import tf_keras

# TF1 batch normalisation settings of the original models.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def fixed_padding_conv(x, filters: int, kernel_size: int, strides: int, name: str,
                       kernel_initializer, depthwise: bool = False):
  """A convolution whose padding does not depend on the input size.

  Strided convolutions pad (k - 1) // 2 before and the rest after, then run VALID;
  stride-1 convolutions use SAME, as the original's `conv2d_fixed_padding`.
  """
  if strides > 1:
    pad_total = kernel_size - 1
    pad_begin = pad_total // 2
    padding = ((pad_begin, pad_total - pad_begin),) * 2
    x = tf_keras.layers.ZeroPadding2D(padding, name=f"{name}_padding")(x)
  padding = "valid" if strides > 1 else "same"
  if depthwise:
    return tf_keras.layers.DepthwiseConv2D(
        kernel_size, strides, padding=padding, use_bias=False, name=name,
        depthwise_initializer=kernel_initializer)(x)
  return tf_keras.layers.Conv2D(
      filters, kernel_size, strides, padding=padding, use_bias=False, name=name,
      kernel_initializer=kernel_initializer)(x)


class BatchNormFactory:
  """Creates BatchNormalization layers named like TF1's unnamed ones, in order.

  TF1 named them `batch_normalization`, `batch_normalization_1`, ... in creation
  order; checkpoints are matched by these names.
  """

  def __init__(self, keras_module: ModuleType = tf_keras):
    self._count = 0
    self._keras = keras_module

  def __call__(self, x, gamma_zeros: bool = False):
    name = "batch_normalization" + (f"_{self._count}" if self._count else "")
    self._count += 1
    return self._keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name,
        gamma_initializer="zeros" if gamma_zeros else "ones")(x)


def relu(x, keras_module: ModuleType = tf_keras):
  return keras_module.layers.ReLU()(x)
