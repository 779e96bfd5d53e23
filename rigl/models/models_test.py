"""Model builders: layer names, shapes and settings the original's checkpoints rely on,
and model descriptions."""

import json

import numpy as np
import pytest
import tf_keras

from rigl import models
from rigl.models import mobilenet


def _kernel_layers(model):
  return [layer for layer in model.layers
          if isinstance(layer, (tf_keras.layers.Conv2D, tf_keras.layers.Dense,
                                tf_keras.layers.DepthwiseConv2D))]


def _batch_norms(model):
  return [layer for layer in model.layers
          if isinstance(layer, tf_keras.layers.BatchNormalization)]


@pytest.fixture(scope="module")
def resnet50():
  return models.build("resnet50")


def test_resnet50_layout(resnet50):
  kernels = _kernel_layers(resnet50)
  assert len(kernels) == 54
  assert sum(int(np.prod(layer.kernel.shape)) for layer in kernels) == 25502912
  names = [layer.name for layer in kernels]
  assert names[0] == "initial_conv"
  assert set(names[1:5]) == {
      "bottleneck_projection_block_group_projection_block_group1",
      "bottleneck_1_block_group_projection_block_group1",
      "bottleneck_2_block_group_projection_block_group1",
      "bottleneck_3_block_group_projection_block_group1"}
  assert "bottleneck_2_block_group4_2_1" in names and names[-1] == "final_dense"
  shapes = {layer.name: tuple(layer.kernel.shape) for layer in kernels}
  # v1.5: the stride sits on the 3x3 convolution.
  block = resnet50.get_layer("bottleneck_2_block_group_projection_block_group2")
  assert block.strides == (2, 2) and shapes[block.name] == (3, 3, 128, 128)
  assert resnet50.get_layer("bottleneck_1_block_group_projection_block_group2").strides == (1, 1)
  assert resnet50.get_layer("initial_conv").output_shape[1] == 112
  assert resnet50.output_shape == (None, 1000)


def test_resnet50_batch_norms(resnet50):
  norms = _batch_norms(resnet50)
  assert len(norms) == 53 and norms[-1].name == "batch_normalization_52"
  assert all(bn.epsilon == 1e-5 and bn.momentum == 0.9 for bn in norms)
  # Group 1, block 0: projection BN _1, then _2, _3, _4 (zero gamma); block 1 from _5.
  zero_gamma = [bn.name for bn in norms if not np.any(bn.gamma.numpy())]
  assert zero_gamma[0] == "batch_normalization_4"
  assert len(zero_gamma) == 16  # The last BN of each of the 16 blocks.
  consumer = resnet50.get_layer("batch_normalization_5")
  assert consumer.input.node.layer.name == "bottleneck_1_block_group1_1_1"


@pytest.mark.parametrize("depth,convs,parameters", [(18, 21, 11_689_512),
                                                    (34, 37, 21_797_672)])
def test_basic_block_resnets(depth, convs, parameters):
  # Trainable parameters of the standard ResNet-18/34, plus the projection the
  # original builds in group 1 too (a 64x64 kernel and its BN's gamma and beta).
  model = models.resnet(depth=depth, input_shape=(32, 32, 3))
  conv_layers = [l for l in model.layers if isinstance(l, tf_keras.layers.Conv2D)]
  assert len(conv_layers) == convs
  assert model.get_layer("residual_projection_block_group_projection_block_group1")
  assert model.get_layer("residual_2_block_group4_1_1").kernel.shape == (3, 3, 512, 512)
  assert model.get_layer("final_dense").kernel.shape == (512, 1000)
  trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  assert trainable == parameters + 64 * 64 + 2 * 64


def test_resnet_rejects_unknown_depth():
  with pytest.raises(ValueError, match="resnet_depth"):
    models.resnet(depth=42)


def test_make_divisible():
  assert mobilenet.make_divisible(32) == 32
  assert mobilenet.make_divisible(32 * 0.75) == 24
  assert mobilenet.make_divisible(10) == 16  # 8 would lose more than 10%.
  assert mobilenet.make_divisible(3) == 8


def test_mobilenet_v1_layout():
  model = models.build("mobilenet_v1")
  kernels = _kernel_layers(model)
  pointwise = [layer for layer in kernels if layer.name.startswith("contraction_1x1_")]
  assert [layer.filters for layer in pointwise] == [
      64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
  assert sum(isinstance(layer, tf_keras.layers.DepthwiseConv2D) for layer in kernels) == 13
  norms = _batch_norms(model)
  assert len(norms) == 27
  # BN 2i+1 follows depthwise i, BN 2i+2 follows pointwise i.
  assert model.get_layer("batch_normalization_7").input.node.layer.name == "depthwise_nxn_3"
  assert model.get_layer("batch_normalization_8").input.node.layer.name == (
      "contraction_1x1_3")
  half = models.build("mobilenet_v1", width=0.5)
  assert half.get_layer("contraction_1x1_12").filters == 512


def test_mobilenet_v2_layout():
  model = models.build("mobilenet_v2")
  assert len(_batch_norms(model)) == 52
  assert model.get_layer("final_1x1_conv").filters == 1280
  assert model.get_layer("expand_1x1_1").filters == 16 * 6
  adds = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.Add)]
  assert len(adds) == 10
  with pytest.raises(ValueError):
    model.get_layer("expand_1x1_0")  # Block 0 has no expansion.


def test_wide_resnet_22_2_layout():
  model = models.build("wrn_22_2")
  kernels = _kernel_layers(model)
  # conv_1 432, conv_2 51,200, conv_3 204,800, conv_4 819,200 and logits 1,280.
  assert sum(int(np.prod(layer.kernel.shape)) for layer in kernels) == 1076912
  names = {layer.name for layer in kernels}
  assert {"conv_1", "conv_2_0_1", "conv_4_2_2", "skip_conv_2", "skip_conv_3",
          "skip_conv_4", "logits"} <= names
  assert len(_batch_norms(model)) == 19
  assert model.output_shape == (None, 10)
  with pytest.raises(ValueError, match="6n"):
    models.wide_resnet(depth=20)


def test_mnist_fc_layout():
  model = models.build("mnist_fc")
  assert [(layer.name, tuple(layer.kernel.shape)) for layer in _kernel_layers(model)] == [
      ("layer1", (784, 300)), ("layer2", (300, 100)), ("layer3", (100, 10))]


def test_unknown_architecture():
  with pytest.raises(ValueError, match="model_architecture"):
    models.build("vgg_42")


def test_describe_writes_every_argument_as_json():
  description = models.describe("wide_resnet", depth=22, width=2)
  assert description == {"architecture": "wide_resnet", "depth": 22, "width": 2,
                         "num_classes": 10, "input_shape": [32, 32, 3],
                         "dropout_rate": 0.3}
  assert json.loads(json.dumps(description)) == description


def test_from_description_builds_the_described_model():
  description = json.loads(json.dumps(models.describe(
      "mobilenet_v1", width=0.5, num_classes=7, input_shape=(64, 64, 3))))
  model = models.from_description(description)
  expected = models.mobilenet_v1(0.5, 7, (64, 64, 3))
  assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 7)
  assert model.count_params() == expected.count_params()


@pytest.mark.parametrize("description, message", [
    ({"architecture": "vgg"}, "architecture.*allowed values: resnet"),
    ({"depth": 50}, "architecture.*None"),
    ({"architecture": "mnist_fc", "depth": 3}, "mnist_fc.*takes no depth.*num_classes"),
])
def test_bad_descriptions_name_what_is_wrong(description, message):
  with pytest.raises(ValueError, match=message):
    models.from_description(description)
  if "architecture" in description:
    with pytest.raises(ValueError, match=message):
      models.describe(**description)
