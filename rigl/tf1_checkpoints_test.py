"""Loading TF1 checkpoints: synthetic `tf.compat.v1.train.Saver` checkpoints with the
original's variable names and shapes (written here from the spec's naming rules, not
from the loader's), checked variable by variable and against a `tf.nn` forward pass."""

from __future__ import annotations

import dataclasses
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import rigl
from rigl import tf1_checkpoints
from rigl import models

SCOPE = "resnet_model/"
BN_EPSILON = 1e-5
IMAGE_SIZE = 32  # Small inputs keep the forward passes fast; names/shapes are real.
NUM_CLASSES = 1000
SPARSITY = 0.8
GLOBAL_STEP = 32000
BATCH = 2
# Logits must agree to this fraction of their largest magnitude.
LOGIT_RTOL = 1e-4
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Conv/dense spellings of the original (spec 4.1).
MASKED, UNMASKED, DOUBLED = "masked", "unmasked", "doubled"
PLAIN, PLAIN_DOUBLED = "plain", "plain_doubled"


def _bn_name(index: int) -> str:
  return "batch_normalization" + (f"_{index}" if index else "")


def _random_mask(rng, shape, sparsity):
  size = math.prod(shape)
  flat = np.ones(size, np.float32)
  flat[:int(np.floor(sparsity * size))] = 0
  return rng.permutation(flat).reshape(shape)


@dataclasses.dataclass
class Tf1Checkpoint:
  """A written checkpoint and what the model must hold after loading it."""
  prefix: str = ""
  scope: str = SCOPE
  arrays: dict = dataclasses.field(default_factory=dict)  # Every variable written.
  masks: dict = dataclasses.field(default_factory=dict)  # Layer -> mask.
  expected: dict = dataclasses.field(default_factory=dict)  # (layer, attr) -> value.
  kernels: dict = dataclasses.field(default_factory=dict)  # Layer -> mask * weights.
  biases: dict = dataclasses.field(default_factory=dict)
  bns: dict = dataclasses.field(default_factory=dict)  # Index -> (gamma, beta, mean, var).

  def add(self, key, value):
    assert key not in self.arrays, key
    self.arrays[key] = value

  def conv(self, rng, name, shape, spelling, sparsity=0.0, bias=False):
    """Writes a conv/dense layer under one of the original's spellings (spec 4.1)."""
    fan_in = math.prod(shape[:-1])
    weights = (rng.standard_normal(shape) *
               np.sqrt(2.0 / (fan_in * (1.0 - sparsity)))).astype(np.float32)
    doubled = spelling in (DOUBLED, PLAIN_DOUBLED)
    base = f"{self.scope}{name}/{name}" if doubled else f"{self.scope}{name}"
    plain = spelling in (PLAIN, PLAIN_DOUBLED)
    kernel_leaf, bias_leaf = ("kernel", "bias") if plain else ("weights", "biases")
    kernel = weights
    if spelling == MASKED:
      mask = _random_mask(rng, shape, sparsity)
      self.add(f"{base}/mask", mask)
      self.add(f"{base}/threshold", np.float32(0.0))
      self.masks[name] = mask
      kernel = weights * mask
    self.add(f"{base}/{kernel_leaf}", weights)
    self.expected[(name, "kernel")] = kernel
    self.kernels[name] = kernel
    if bias:
      value = (0.1 * rng.standard_normal(shape[-1:])).astype(np.float32)
      self.add(f"{base}/{bias_leaf}", value)
      self.expected[(name, "bias")] = value
      self.biases[name] = value

  def depthwise(self, rng, name, channels):
    value = (rng.standard_normal((3, 3, channels, 1)) / 3.0).astype(np.float32)
    self.add(f"{self.scope}{name}/depthwise_weights", value)
    self.expected[(name, "depthwise_kernel")] = value
    self.kernels[name] = value

  def batch_norm(self, rng, index, channels):
    values = (rng.uniform(0.5, 1.5, channels), 0.1 * rng.standard_normal(channels),
              0.1 * rng.standard_normal(channels), rng.uniform(0.5, 1.5, channels))
    values = tuple(v.astype(np.float32) for v in values)
    for leaf, value in zip(("gamma", "beta", "moving_mean", "moving_variance"), values):
      self.add(f"{self.scope}{_bn_name(index)}/{leaf}", value)
      self.expected[(_bn_name(index), leaf)] = value
    self.bns[index] = values

  def write(self, directory, momentum_of=()):
    """Saves every array as a TF1 graph variable of that exact name, plus bookkeeping."""
    arrays = dict(self.arrays)
    for key in momentum_of:
      arrays[f"{key}/Momentum"] = np.zeros_like(arrays[key])
    arrays["last_mask_update_step"] = np.int32(GLOBAL_STEP - 100)
    with tf.Graph().as_default():
      variables = {
          key: tf.compat.v1.get_variable(
              key, shape=np.shape(value), dtype=tf.as_dtype(np.asarray(value).dtype),
              initializer=tf.compat.v1.zeros_initializer(), use_resource=False)
          for key, value in arrays.items()}
      global_step = tf.compat.v1.train.get_or_create_global_step()
      saver = tf.compat.v1.train.Saver()
      variables["global_step"] = global_step
      arrays["global_step"] = np.int64(GLOBAL_STEP)
      with tf.compat.v1.Session() as sess:
        # One run that feeds every initial value (a run per variable is much slower).
        sess.run([v.initializer for v in variables.values()],
                 {v.initializer.inputs[1]: arrays[k] for k, v in variables.items()})
        self.prefix = saver.save(sess, str(directory / "model.ckpt"),
                                 global_step=GLOBAL_STEP)
    return self


# ----- the architectures, from the spec's tables (4.2, 4.3, 4.6) ---------------------


def resnet50_layout():
  """Blocks of ResNet-50 v1.5 in TF1 creation order: (projection, convs), BN indices."""
  blocks, bn, channels = [], 1, 64
  for group, (count, filters, stride) in enumerate(
      zip((3, 4, 6, 3), (64, 128, 256, 512), (1, 2, 2, 2)), start=1):
    for block in range(count):
      projection = None
      if block == 0:
        suffix = f"block_group_projection_block_group{group}"
        projection = (f"bottleneck_projection_{suffix}", (1, 1, channels, 4 * filters),
                      stride, bn)
        bn += 1
      else:
        suffix = f"block_group{group}_{block}_1"
      convs = [(f"bottleneck_1_{suffix}", (1, 1, channels, filters), 1, bn),
               (f"bottleneck_2_{suffix}", (3, 3, filters, filters),
                stride if block == 0 else 1, bn + 1),
               (f"bottleneck_3_{suffix}", (1, 1, filters, 4 * filters), 1, bn + 2)]
      bn += 3
      channels = 4 * filters
      blocks.append((projection, convs))
  assert bn == 53  # batch_normalization ... batch_normalization_52.
  return blocks


def write_resnet50(directory, distribution, first_layer_masked, seed):
  rng = np.random.default_rng(seed)
  blocks = resnet50_layout()
  shapes = {"initial_conv": (7, 7, 3, 64)}
  for projection, convs in blocks:
    for name, shape, _, _ in ([projection] if projection else []) + convs:
      shapes[name] = shape
  shapes["final_dense"] = (2048, NUM_CLASSES)
  assert len(shapes) == 54
  masked = {k: v for k, v in shapes.items() if first_layer_masked or k != "initial_conv"}
  sparsities = rigl.get_sparsities(masked, distribution, SPARSITY)
  ckpt = Tf1Checkpoint()
  ckpt.conv(rng, "initial_conv", shapes["initial_conv"],
            MASKED if first_layer_masked else DOUBLED, sparsities.get("initial_conv", 0))
  ckpt.batch_norm(rng, 0, 64)
  for projection, convs in blocks:
    for name, shape, _, bn in ([projection] if projection else []) + convs:
      ckpt.conv(rng, name, shape, MASKED, sparsities[name])
      ckpt.batch_norm(rng, bn, shape[-1])
  ckpt.conv(rng, "final_dense", shapes["final_dense"], MASKED, sparsities["final_dense"],
            bias=True)
  first = "initial_conv/weights" if first_layer_masked else "initial_conv/initial_conv/weights"
  return ckpt.write(directory, momentum_of=(
      SCOPE + first, SCOPE + "batch_normalization_3/gamma", SCOPE + "final_dense/biases"))


MOBILENET_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1),
                    (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
MOBILENET_FINAL_SPARSITY = 0.9


def mobilenet_sparsity(index: int) -> float:
  return 0.5 + 0.03 * index


def write_mobilenet_v1(directory, seed=1, drop=(), replace=None):
  rng = np.random.default_rng(seed)
  ckpt = Tf1Checkpoint()
  ckpt.conv(rng, "initial_conv", (3, 3, 3, 32), PLAIN)
  ckpt.batch_norm(rng, 0, 32)
  channels = 32
  for index, (filters, _) in enumerate(MOBILENET_BLOCKS):
    ckpt.depthwise(rng, f"depthwise_nxn_{index}", channels)
    ckpt.batch_norm(rng, 2 * index + 1, channels)
    ckpt.conv(rng, f"contraction_1x1_{index}", (1, 1, channels, filters), MASKED,
              mobilenet_sparsity(index))
    ckpt.batch_norm(rng, 2 * index + 2, filters)
    channels = filters
  ckpt.conv(rng, "final_dense", (1024, NUM_CLASSES), MASKED, MOBILENET_FINAL_SPARSITY,
            bias=True)
  for key in drop:
    del ckpt.arrays[key]
  ckpt.arrays.update(replace or {})
  return ckpt.write(directory, momentum_of=(SCOPE + "contraction_1x1_3/weights",))


def write_mnist_fc(directory, seed=2, extra=None, drop=(), spellings=(MASKED,) * 3):
  rng = np.random.default_rng(seed)
  ckpt = Tf1Checkpoint(scope="")
  for index, (shape, spelling) in enumerate(
      zip(((784, 300), (300, 100), (100, 10)), spellings), start=1):
    ckpt.conv(rng, f"layer{index}", shape, spelling, 0.5 if spelling == MASKED else 0.0,
              bias=True)
  for key in drop:
    del ckpt.arrays[key]
  ckpt.arrays.update(extra or {})
  return ckpt.write(directory, momentum_of=[
      key for key in ckpt.arrays if key.endswith(("weights", "kernel"))][:1])


# ----- an independent forward pass with tf.nn ----------------------------------------


def _fixed_pad(x, kernel_size):
  total = kernel_size - 1
  pad = [total // 2, total - total // 2]
  return tf.pad(x, [[0, 0], pad, pad, [0, 0]])


def _conv(x, kernel, stride):
  """The original's conv2d_fixed_padding."""
  if stride > 1:
    return tf.nn.conv2d(_fixed_pad(x, kernel.shape[0]), kernel, stride, "VALID")
  return tf.nn.conv2d(x, kernel, 1, "SAME")


def _depthwise(x, kernel, stride):
  if stride > 1:
    return tf.nn.depthwise_conv2d(_fixed_pad(x, kernel.shape[0]), kernel,
                                  [1, stride, stride, 1], "VALID")
  return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")


def _bn(x, values):
  gamma, beta, mean, variance = (v.astype(np.float64) for v in values)
  return (x - mean) / np.sqrt(variance + BN_EPSILON) * gamma + beta


def _f64(array):
  return array.astype(np.float64)


def resnet50_reference(ckpt, images):
  kernels = {name: _f64(value) for name, value in ckpt.kernels.items()}
  x = tf.nn.relu(_bn(_conv(images, kernels["initial_conv"], 2), ckpt.bns[0]))
  x = tf.nn.max_pool2d(x, 3, 2, "SAME")
  for projection, convs in resnet50_layout():
    shortcut = x
    if projection:
      name, _, stride, bn = projection
      shortcut = _bn(_conv(x, kernels[name], stride), ckpt.bns[bn])
    y = x
    for position, (name, _, stride, bn) in enumerate(convs):
      y = _bn(_conv(y, kernels[name], stride), ckpt.bns[bn])
      y = y if position == len(convs) - 1 else tf.nn.relu(y)
    x = tf.nn.relu(y + shortcut)
  x = tf.reduce_mean(x, [1, 2])
  return (tf.matmul(x, kernels["final_dense"]) + _f64(ckpt.biases["final_dense"])).numpy()


def mobilenet_reference(ckpt, images):
  kernels = {name: _f64(value) for name, value in ckpt.kernels.items()}
  x = tf.nn.relu(_bn(_conv(images, kernels["initial_conv"], 2), ckpt.bns[0]))
  for index, (_, stride) in enumerate(MOBILENET_BLOCKS):
    x = tf.nn.relu(_bn(_depthwise(x, kernels[f"depthwise_nxn_{index}"], stride),
                       ckpt.bns[2 * index + 1]))
    x = tf.nn.relu(_bn(_conv(x, kernels[f"contraction_1x1_{index}"], 1),
                       ckpt.bns[2 * index + 2]))
  x = tf.reduce_mean(x, [1, 2])
  return (tf.matmul(x, kernels["final_dense"]) + _f64(ckpt.biases["final_dense"])).numpy()


# ----- helpers ---------------------------------------------------------------------


def _model_values(model):
  return {v.name: v.numpy().copy() for v in model.variables}


def _check_all_variables(model, ckpt):
  """Every model variable holds its expected array (kernels as mask * weights)."""
  checked = set()
  for layer in model.layers:
    for attr in ("kernel", "bias", "depthwise_kernel", "gamma", "beta", "moving_mean",
                 "moving_variance"):
      variable = getattr(layer, attr, None)
      if isinstance(variable, tf.Variable):
        np.testing.assert_array_equal(variable.numpy(), ckpt.expected[(layer.name, attr)],
                                      err_msg=f"{layer.name}.{attr}")
        checked.add(id(variable))
  assert checked == {id(v) for v in model.variables}
  assert len(checked) == len(ckpt.expected)


def _check_logits(model, reference, ckpt, seed=3):
  images = np.random.default_rng(seed).standard_normal(
      (BATCH, IMAGE_SIZE, IMAGE_SIZE, 3))
  expected = reference(ckpt, images)
  logits = model(images.astype(np.float32), training=False).numpy()
  scale = np.max(np.abs(expected))
  assert np.isfinite(scale) and scale > 0
  np.testing.assert_allclose(logits, expected, rtol=0, atol=LOGIT_RTOL * scale)


def _sgd():
  return tf_keras.optimizers.SGD(0.1, momentum=0.9)


def _fraction_zeros(mask):
  return float(np.mean(mask == 0))


# ----- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet_erk(tmp_path_factory):
  return write_resnet50(tmp_path_factory.mktemp("resnet_erk"), "erdos_renyi_kernel",
                        first_layer_masked=True, seed=10)


@pytest.fixture(scope="module")
def resnet_uniform(tmp_path_factory):
  return write_resnet50(tmp_path_factory.mktemp("resnet_uniform"), "random",
                        first_layer_masked=False, seed=11)


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
  return write_mobilenet_v1(tmp_path_factory.mktemp("mobilenet"))


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
  return write_mnist_fc(tmp_path_factory.mktemp("mnist"))


def _resnet50():
  return models.build("resnet50", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))


def _mobilenet_v1():
  return models.build("mobilenet_v1", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))


# ----- eval_once: include="all" ------------------------------------------------------


def test_resnet50_erk_first_layer_masked(resnet_erk):
  model = _resnet50()
  optimizer = rigl.create_sparse_optimizer(
      "rigl", _sgd(), model,
      rigl.SparsityConfig(SPARSITY, "erdos_renyi_kernel", first_layer_sparsity=-1))
  report = tf1_checkpoints.restore_tf1_checkpoint(resnet_erk.prefix, model, optimizer)

  _check_all_variables(model, resnet_erk)
  assert report.scope == SCOPE and report.global_step == GLOBAL_STEP
  assert len(report.layer_sparsities) == 54 and len(report.masked_layers) == 54
  for name, mask in resnet_erk.masks.items():
    assert report.layer_sparsities[name] == _fraction_zeros(mask)
    np.testing.assert_array_equal(optimizer.masks[name].numpy(), mask)
  assert set(optimizer.masks) == set(resnet_erk.masks)
  sizes = {name: mask.size for name, mask in resnet_erk.masks.items()}
  zeros = sum(np.sum(mask == 0) for mask in resnet_erk.masks.values())
  assert report.global_sparsity == pytest.approx(zeros / sum(sizes.values()))
  assert report.global_sparsity == pytest.approx(SPARSITY, abs=1e-3)
  assert report.spellings["initial_conv"] == tf1_checkpoints.MASKED
  assert report.spellings["batch_normalization_52"] == tf1_checkpoints.BATCH_NORM
  assert report.ones_masks == () and report.unmanaged_masks == ()
  assert report.assigned["final_dense.bias"] == SCOPE + "final_dense/biases"
  _check_logits(model, resnet50_reference, resnet_erk)


def test_resnet50_uniform_first_layer_unmasked_doubled_scope(resnet_uniform):
  model = _resnet50()
  optimizer = rigl.create_sparse_optimizer(
      "scratch", _sgd(), model, rigl.SparsityConfig(SPARSITY, "random",
                                                    first_layer_sparsity=0))
  report = tf1_checkpoints.restore_tf1_checkpoint(resnet_uniform.prefix, model, optimizer)

  _check_all_variables(model, resnet_uniform)
  assert report.spellings["initial_conv"] == tf1_checkpoints.UNMASKED_DOUBLED
  assert report.assigned["initial_conv.kernel"] == (
      "resnet_model/initial_conv/initial_conv/weights")
  assert report.layer_sparsities["initial_conv"] == 0.0
  assert "initial_conv" not in report.masked_layers and len(report.masked_layers) == 53
  assert "initial_conv" not in optimizer.masks
  for name, mask in resnet_uniform.masks.items():
    assert report.layer_sparsities[name] == _fraction_zeros(mask) == pytest.approx(
        SPARSITY, abs=1e-3)
    np.testing.assert_array_equal(optimizer.masks[name].numpy(), mask)
  _check_logits(model, resnet50_reference, resnet_uniform)


def test_mobilenet_v1_plain_first_conv_depthwise_and_masked_dense(mobilenet):
  model = _mobilenet_v1()
  # The optimizer masks the first conv, which the checkpoint does not: all-ones mask.
  optimizer = rigl.create_sparse_optimizer("rigl", _sgd(), model,
                                           rigl.SparsityConfig(SPARSITY, "random"))
  report = tf1_checkpoints.restore_tf1_checkpoint(mobilenet.prefix, model, optimizer)

  _check_all_variables(model, mobilenet)
  assert report.spellings["initial_conv"] == tf1_checkpoints.PLAIN
  assert report.spellings["depthwise_nxn_4"] == tf1_checkpoints.DEPTHWISE
  assert report.spellings["final_dense"] == tf1_checkpoints.MASKED
  assert report.ones_masks == ("initial_conv",)
  np.testing.assert_array_equal(optimizer.masks["initial_conv"].numpy(), 1.0)
  assert report.layer_sparsities["initial_conv"] == 0.0
  assert report.masked_layers == tuple(f"contraction_1x1_{i}" for i in range(13)) + (
      "final_dense",)
  for name, mask in mobilenet.masks.items():
    assert report.layer_sparsities[name] == _fraction_zeros(mask)
    np.testing.assert_array_equal(optimizer.masks[name].numpy(), mask)
  assert report.layer_sparsities["final_dense"] == pytest.approx(
      MOBILENET_FINAL_SPARSITY, abs=1e-4)
  _check_logits(model, mobilenet_reference, mobilenet)


def test_mnist_checkpoint_without_outer_scope(mnist):
  model = models.build("mnist_fc")
  report = tf1_checkpoints.restore_tf1_checkpoint(mnist.prefix, model)
  _check_all_variables(model, mnist)
  assert report.scope == "" and report.masked_layers == ("layer1", "layer2", "layer3")
  # Without an optimizer the checkpoint's masks live only in the kernels.
  assert report.unmanaged_masks == report.masked_layers


@pytest.mark.parametrize("spellings", [(UNMASKED, PLAIN, DOUBLED),
                                       (PLAIN_DOUBLED, MASKED, UNMASKED)])
def test_other_unmasked_spellings(tmp_path, spellings):
  ckpt = write_mnist_fc(tmp_path, spellings=spellings)
  model = models.build("mnist_fc")
  optimizer = rigl.create_sparse_optimizer("scratch", _sgd(), model,
                                           rigl.SparsityConfig(0.5, "random"))
  report = tf1_checkpoints.restore_tf1_checkpoint(ckpt.prefix, model, optimizer)
  _check_all_variables(model, ckpt)
  labels = {MASKED: tf1_checkpoints.MASKED, UNMASKED: tf1_checkpoints.UNMASKED,
            DOUBLED: tf1_checkpoints.UNMASKED_DOUBLED, PLAIN: tf1_checkpoints.PLAIN,
            PLAIN_DOUBLED: tf1_checkpoints.PLAIN_DOUBLED}
  assert report.spellings == {f"layer{i}": labels[spelling]
                              for i, spelling in enumerate(spellings, start=1)}
  assert report.ones_masks == tuple(f"layer{i}" for i, spelling in
                                    enumerate(spellings, start=1) if spelling != MASKED)
  for name in report.ones_masks:
    np.testing.assert_array_equal(optimizer.masks[name].numpy(), 1.0)
  listing = tf1_checkpoints.inspect_checkpoint(ckpt.prefix)
  assert [layer.spelling for layer in listing.layers] == list(report.spellings.values())


# ----- errors: one error listing every name, nothing assigned ------------------------


@pytest.mark.parametrize("case, expected_names", [
    ("missing", ["layer2/biases"]),
    ("shape", ["layer3/weights"]),
    ("unused", ["layer4/weights", "layer4/mask"]),
    ("ambiguous", ["layer1/weights", "layer1/layer1/weights"]),
    ("several", ["layer2/biases", "layer3/weights", "layer4/weights"]),
])
def test_mismatch_raises_one_error_and_assigns_nothing(tmp_path, case, expected_names):
  rng = np.random.default_rng(5)
  extra, drop = {}, ()
  if case in ("missing", "several"):
    drop = ("layer2/biases",)
  if case in ("shape", "several"):
    extra["layer3/weights"] = rng.standard_normal((100, 11)).astype(np.float32)
  if case in ("unused", "several"):
    extra["layer4/weights"] = np.ones((10, 10), np.float32)
    extra["layer4/mask"] = np.ones((10, 10), np.float32)
  if case == "ambiguous":
    extra["layer1/layer1/weights"] = np.ones((784, 300), np.float32)
  ckpt = write_mnist_fc(tmp_path, extra=extra, drop=drop)
  model = models.build("mnist_fc")
  optimizer = rigl.create_sparse_optimizer("rigl", _sgd(), model,
                                           rigl.SparsityConfig(0.5, "random"))
  before = _model_values(model)
  masks_before = {name: mask.numpy().copy() for name, mask in optimizer.masks.items()}
  with pytest.raises(ValueError) as error:
    tf1_checkpoints.restore_tf1_checkpoint(ckpt.prefix, model, optimizer)
  assert isinstance(error.value, tf1_checkpoints.CheckpointMismatchError)
  for name in expected_names:
    assert name in str(error.value)
  assert "Momentum" not in str(error.value) and "global_step" not in str(error.value)
  for variable in model.variables:
    np.testing.assert_array_equal(variable.numpy(), before[variable.name])
  for name, mask in optimizer.masks.items():
    np.testing.assert_array_equal(mask.numpy(), masks_before[name])


def test_mobilenet_missing_batch_norm_statistic_and_wrong_shape(tmp_path):
  missing = SCOPE + "batch_normalization_7/moving_variance"
  wrong = SCOPE + "depthwise_nxn_2/depthwise_weights"
  ckpt = write_mobilenet_v1(tmp_path, drop=(missing,),
                            replace={wrong: np.ones((3, 3, 64, 1), np.float32)})
  model = _mobilenet_v1()
  before = _model_values(model)
  with pytest.raises(ValueError) as error:
    tf1_checkpoints.restore_tf1_checkpoint(ckpt.prefix, model)
  assert missing in str(error.value) and wrong in str(error.value)
  assert error.value.missing == (f"{missing} (batch_normalization_7.moving_variance)",)
  assert len(error.value.shape_mismatches) == 1 and not error.value.unused
  for variable in model.variables:
    np.testing.assert_array_equal(variable.numpy(), before[variable.name])


def test_another_architecture_is_rejected(mnist):
  with pytest.raises(ValueError, match="layer1/weights"):
    tf1_checkpoints.restore_tf1_checkpoint(mnist.prefix, models.build("lenet5"))


def test_bad_arguments(mnist):
  model = models.build("mnist_fc")
  with pytest.raises(ValueError, match="include"):
    tf1_checkpoints.restore_tf1_checkpoint(mnist.prefix, model, include="weights")
  with pytest.raises(ValueError, match="optimizer"):
    tf1_checkpoints.restore_tf1_checkpoint(mnist.prefix, model, include="masks")
  # A dense baseline keeps no masks, so the checkpoint's masks have nowhere to go.
  baseline = rigl.create_sparse_optimizer("baseline", _sgd(), model)
  with pytest.raises(ValueError, match="masks 'layer1' but the optimizer does not"):
    tf1_checkpoints.restore_tf1_checkpoint(mnist.prefix, model, baseline, include="masks")


# ----- load_mask_dir and initial_value_checkpoint ------------------------------------


def test_include_masks_loads_masks_and_remasks_kernels(mobilenet):
  model = _mobilenet_v1()
  optimizer = rigl.create_sparse_optimizer("scratch", _sgd(), model,
                                           rigl.SparsityConfig(SPARSITY, "random"))
  before = _model_values(model)
  report = tf1_checkpoints.restore_tf1_checkpoint(mobilenet.prefix, model, optimizer,
                                              include="masks")
  assert report.assigned == {f"contraction_1x1_{i}.mask": f"{SCOPE}contraction_1x1_{i}/mask"
                             for i in range(13)} | {"final_dense.mask":
                                                    SCOPE + "final_dense/mask"}
  assert report.ones_masks == ("initial_conv",)
  for layer in model.layers:
    for variable in layer.weights:
      if layer.name in optimizer.masks and variable is layer.kernel:
        mask = mobilenet.masks.get(layer.name, 1.0)
        np.testing.assert_array_equal(optimizer.masks[layer.name].numpy(),
                                      np.broadcast_to(mask, variable.shape))
        np.testing.assert_array_equal(variable.numpy(), before[variable.name] * mask)
      else:
        np.testing.assert_array_equal(variable.numpy(), before[variable.name])
  kernels = [layer.kernel.numpy() for layer in model.layers
             if isinstance(layer, (tf_keras.layers.Conv2D, tf_keras.layers.Dense))]
  assert report.global_sparsity == pytest.approx(
      sum(np.sum(k == 0) for k in kernels) / sum(k.size for k in kernels))
  assert report.layer_sparsities["contraction_1x1_5"] == _fraction_zeros(
      mobilenet.masks["contraction_1x1_5"])


def test_include_initial_values_skips_moving_statistics_and_plain_kernels(mobilenet):
  model = _mobilenet_v1()
  optimizer = rigl.create_sparse_optimizer("rigl", _sgd(), model,
                                           rigl.SparsityConfig(SPARSITY, "random"))
  before = _model_values(model)
  masks_before = {name: mask.numpy().copy() for name, mask in optimizer.masks.items()}
  report = tf1_checkpoints.restore_tf1_checkpoint(mobilenet.prefix, model, optimizer,
                                              include="initial_values")
  for layer in model.layers:
    for attr in ("kernel", "bias", "depthwise_kernel", "gamma", "beta", "moving_mean",
                 "moving_variance"):
      variable = getattr(layer, attr, None)
      if not isinstance(variable, tf.Variable):
        continue
      value = variable.numpy()
      if attr in ("moving_mean", "moving_variance") or layer.name == "initial_conv":
        # Not restored: moving statistics, and the plain `initial_conv/kernel`.
        np.testing.assert_array_equal(value, before[variable.name])
      elif attr == "kernel":
        # Checkpoint weights (masked by the checkpoint's mask) under our own mask.
        expected = mobilenet.expected[(layer.name, attr)] * masks_before[layer.name]
        np.testing.assert_array_equal(value, expected)
      else:  # gamma, beta, biases and depthwise_weights (suffix `weights`).
        np.testing.assert_array_equal(value, mobilenet.expected[(layer.name, attr)])
  for name, mask in optimizer.masks.items():
    np.testing.assert_array_equal(mask.numpy(), masks_before[name])
  assert "initial_conv.kernel" not in report.assigned
  assert "batch_normalization_3.moving_mean" not in report.assigned
  assert report.assigned["depthwise_nxn_0.depthwise_kernel"] == (
      SCOPE + "depthwise_nxn_0/depthwise_weights")


# ----- inspect, is_tf1_checkpoint ----------------------------------------------------


def test_inspect_listing(resnet_erk, resnet_uniform, mobilenet):
  listing = tf1_checkpoints.inspect_checkpoint(resnet_erk.prefix)
  assert listing.scope == SCOPE and listing.global_step == GLOBAL_STEP
  kernel_layers = [layer for layer in listing.layers if layer.is_kernel_layer]
  assert len(kernel_layers) == 54 and all(layer.masked for layer in kernel_layers)
  assert sum(layer.spelling == tf1_checkpoints.BATCH_NORM for layer in listing.layers) == 53
  for name, mask in resnet_erk.masks.items():
    layer = listing.layer(name)
    assert layer.sparsity == _fraction_zeros(mask) and layer.shape == mask.shape
  zeros = sum(np.sum(mask == 0) for mask in resnet_erk.masks.values())
  total = sum(mask.size for mask in resnet_erk.masks.values())
  assert listing.global_sparsity == pytest.approx(zeros / total)
  assert all("Momentum" not in v for layer in listing.layers for v in layer.variables)

  first = tf1_checkpoints.inspect_checkpoint(resnet_uniform.prefix).layer("initial_conv")
  assert (first.spelling, first.masked, first.sparsity, first.shape) == (
      tf1_checkpoints.UNMASKED_DOUBLED, False, 0.0, (7, 7, 3, 64))

  listing = tf1_checkpoints.inspect_checkpoint(mobilenet.prefix)
  assert listing.layer("initial_conv").spelling == tf1_checkpoints.PLAIN
  assert listing.layer("depthwise_nxn_12").shape == (3, 3, 1024, 1)
  assert listing.layer("final_dense").masked
  total = sum(math.prod(layer.shape) for layer in listing.layers
              if layer.is_kernel_layer)
  zeros = sum(np.sum(mask == 0) for mask in mobilenet.masks.values())
  assert listing.global_sparsity == pytest.approx(zeros / total)
  assert "contraction_1x1_3" in listing.format()


def test_inspect_command_line(mobilenet):
  result = subprocess.run(
      [sys.executable, "-m", "rigl.tf1_checkpoints", "inspect", mobilenet.prefix],
      cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert "contraction_1x1_3" in result.stdout and "global sparsity" in result.stdout


def test_is_tf1_checkpoint(tmp_path, mnist):
  assert tf1_checkpoints.is_tf1_checkpoint(mnist.prefix)
  tf2_prefix = tf.train.Checkpoint(v=tf.Variable(1.0)).write(str(tmp_path / "tf2"))
  assert not tf1_checkpoints.is_tf1_checkpoint(tf2_prefix)
  with pytest.raises(ValueError, match="TF2"):
    tf1_checkpoints.restore_tf1_checkpoint(tf2_prefix, models.build("mnist_fc"))
  missing = str(tmp_path / "nowhere" / "model.ckpt-1")
  with pytest.raises(ValueError, match="nowhere/model.ckpt-1"):
    tf1_checkpoints.is_tf1_checkpoint(missing)
