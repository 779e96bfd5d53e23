"""ResNet v1.5 for ImageNet, as in the original `imagenet_resnet/resnet_model.py`.

Post-activation blocks (bottleneck for depth >= 50, basic for 18 and 34) with the
stride on the 3x3 convolution, a projection shortcut in the first block of each group,
fixed padding for strided convolutions, the last BN of every block initialised with
gamma = 0, BN momentum 0.9 and epsilon 1e-5.
"""

from __future__ import annotations

import tf_keras

from rigl.models.layers import BatchNormFactory
from rigl.models.layers import fixed_padding_conv
from rigl.models.layers import relu

BLOCKS_PER_GROUP = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3),
                    101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
# Depths below this use basic blocks (two 3x3 convolutions) instead of bottlenecks.
MIN_BOTTLENECK_DEPTH = 50
GROUP_FILTERS = (64, 128, 256, 512)
GROUP_STRIDES = (1, 2, 2, 2)
BOTTLENECK_EXPANSION = 4
STEM_FILTERS = 64
FC_INIT_STDDEV = 0.01


def _conv_initializer():
  return tf_keras.initializers.VarianceScaling(scale=1.0, mode="fan_in",
                                              distribution="truncated_normal")


def _basic_block(x, filters: int, strides: int, suffix: str, projection: bool,
                 batch_norm: BatchNormFactory):
  shortcut = x
  if projection:
    shortcut = fixed_padding_conv(x, filters, 1, strides, f"residual_projection_{suffix}",
                                  _conv_initializer())
    shortcut = batch_norm(shortcut)
  y = fixed_padding_conv(x, filters, 3, strides, f"residual_1_{suffix}", _conv_initializer())
  y = relu(batch_norm(y))
  y = fixed_padding_conv(y, filters, 3, 1, f"residual_2_{suffix}", _conv_initializer())
  y = batch_norm(y, gamma_zeros=True)
  return relu(tf_keras.layers.Add()([y, shortcut]))


def _bottleneck(x, filters: int, strides: int, suffix: str, projection: bool,
                batch_norm: BatchNormFactory):
  names = tuple(f"bottleneck_{k}_{suffix}" for k in (1, 2, 3))
  shortcut = x
  if projection:
    shortcut = fixed_padding_conv(x, BOTTLENECK_EXPANSION * filters, 1, strides,
                                  f"bottleneck_projection_{suffix}", _conv_initializer())
    shortcut = batch_norm(shortcut)
  y = fixed_padding_conv(x, filters, 1, 1, names[0], _conv_initializer())
  y = relu(batch_norm(y))
  y = fixed_padding_conv(y, filters, 3, strides, names[1], _conv_initializer())
  y = relu(batch_norm(y))
  y = fixed_padding_conv(y, BOTTLENECK_EXPANSION * filters, 1, 1, names[2],
                         _conv_initializer())
  y = batch_norm(y, gamma_zeros=True)
  return relu(tf_keras.layers.Add()([y, shortcut]))


def resnet(depth: int = 50, width: float = 1.0, num_classes: int = 1000,
           input_shape: tuple[int, int, int] = (224, 224, 3)) -> tf_keras.Model:
  """Builds ResNet-`depth` v1.5 with channel multiplier `width`.

  Layer names: `initial_conv`; in group g, block 0:
  `bottleneck_projection_block_group_projection_block_group{g}` and
  `bottleneck_{k}_block_group_projection_block_group{g}`; block n >= 1:
  `bottleneck_{k}_block_group{g}_{n}_1`; `final_dense`; BN `batch_normalization[_i]`.
  Basic blocks use `residual_projection_`, `residual_1_` and `residual_2_` instead.
  """
  if depth not in BLOCKS_PER_GROUP:
    raise ValueError(f"Unsupported `resnet_depth` {depth}; allowed values: "
                     f"{', '.join(map(str, BLOCKS_PER_GROUP))}.")
  batch_norm = BatchNormFactory()
  inputs = tf_keras.Input(input_shape)
  x = fixed_padding_conv(inputs, int(STEM_FILTERS * width), 7, 2, "initial_conv",
                         _conv_initializer())
  x = relu(batch_norm(x))
  x = tf_keras.layers.MaxPooling2D(3, 2, padding="same", name="initial_max_pool")(x)
  block_fn = _bottleneck if depth >= MIN_BOTTLENECK_DEPTH else _basic_block
  for group, (blocks, filters, strides) in enumerate(
      zip(BLOCKS_PER_GROUP[depth], GROUP_FILTERS, GROUP_STRIDES), start=1):
    filters = int(filters * width)
    for block in range(blocks):
      if block == 0:
        suffix = f"block_group_projection_block_group{group}"
      else:
        suffix = f"block_group{group}_{block}_1"
      x = block_fn(x, filters, strides if block == 0 else 1, suffix, block == 0,
                   batch_norm)
  x = tf_keras.layers.GlobalAveragePooling2D(name="final_avg_pool")(x)
  outputs = tf_keras.layers.Dense(
      num_classes, name="final_dense",
      kernel_initializer=tf_keras.initializers.RandomNormal(stddev=FC_INIT_STDDEV))(x)
  return tf_keras.Model(inputs, outputs, name=f"resnet{depth}")
