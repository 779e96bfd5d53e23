"""FLOPs, parameter and model-size accounting, as the paper counted them.

Inference FLOPs follow the MicroNet-challenge rules the paper used: every convolution,
depthwise convolution and dense layer is counted with a bias and a ReLU (one multiply
per output), a sparse layer performs only its non-zero multiply-adds, and BN, pooling,
residual additions and softmax are not counted. A sparse layer is stored as 32-bit
non-zero weights plus a 1-bit mask per weight; biases take 32 bits each. Spatial sizes
are the layers' real output sizes (the MicroNet 'same' formula on unpadded inputs).

The paper's published ResNet-50 FLOPs differ in one place: its colab counted the first
convolution of a Keras ResNet-50 that zero-pads the image explicitly (224 + 2 x 3 = 230
pixels, then a 'valid' 7x7 stride-2 convolution), with the MicroNet 'same' rule on that
padded input: 115 output rows instead of the real 112, 12.9 MFLOPs more when dense
(0.16% of the dense model). `with_paper_stem_count` counts the first layer that way;
with it every published training-FLOPs and inference-FLOPs figure of the ResNet-50
tables is reproduced but one, which contradicts its own 5x row
(benchmarks/results/published_resnet50_flops.md).

Training FLOPs per example, relative to dense training (3 x dense forward: forward,
plus a backward pass of twice its cost), by the method's `flops_rule`:

| rule                       | methods                  | cost per example                |
| DENSE_STEPS                | baseline                 | 3 f_D                           |
| SPARSE_STEPS               | scratch, set, static,    | 3 f_S                           |
|                            | snip                     |                                 |
| DENSE_GRADIENT_STEPS       | momentum (SNFS), dnw     | 2 f_S + f_D (a dense gradient   |
|                            |                          | every step)                     |
| DENSE_GRADIENT_ON_UPDATES  | rigl                     | (3 f_S dT + 2 f_S + f_D)/(dT+1) |
| PRUNING_STEPS              | prune                    | 3 x the mean of f(s_t) over the |
|                            |                          | pruning schedule                |

all multiplied by `training_steps_multiplier`. During training (`TrainingFlopsMeter`)
every rule is counted at the masks' FLOPs of the time; a call that changed masks
instead of stepping (RigL, SNIP) costs a mask-update step.

Command line (flag names as in the training scripts)::

  python -m rigl.flops --model_architecture=resnet50 --training_method=rigl \
      --mask_init_method=erdos_renyi_kernel --end_sparsity=0.8 --first_layer_sparsity=-1
"""

from __future__ import annotations

import dataclasses
import json
from typing import Mapping, Sequence

from absl import app
from absl import flags
import numpy as np

from rigl import schedules
from rigl import sparsity as sparsity_lib

CONV, DEPTHWISE, DENSE = "conv", "depthwise", "dense"
BITS_PER_WEIGHT = 32
BITS_PER_MASK_ENTRY = 1
BITS_PER_BIAS = 32
BITS_PER_MEGABYTE = 8e6
# The backward pass costs twice the forward pass (input and weight gradients).
BACKWARD_TO_FORWARD = 2
# How one training step of a method is counted: a method's `flops_rule` (see the table
# in the module docstring).
DENSE_STEPS = "dense"
SPARSE_STEPS = "sparse"
DENSE_GRADIENT_STEPS = "dense_gradient"
DENSE_GRADIENT_ON_UPDATES = "dense_gradient_on_updates"
PRUNING_STEPS = "pruning"
FLOPS_RULES = (DENSE_STEPS, SPARSE_STEPS, DENSE_GRADIENT_STEPS, DENSE_GRADIENT_ON_UPDATES,
               PRUNING_STEPS)
# The architecture whose published figures the paper's stem count is known to reproduce.
PAPER_STEM_COUNT_ARCHITECTURE = "resnet50"


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """What the counter needs of a layer: its kind, kernel shape and output size.

  `output_size` is the spatial height (= width) of the layer's output feature map
  (1 for dense layers). For odd kernels it equals the MicroNet 'same' formula
  ceil((in - k + 1 + 2 (k // 2)) / stride) on the unpadded input. `input_size` is the
  height of the input the layer reads (after any explicit zero padding; None if
  unknown) and `stride` its stride.
  """
  name: str
  kind: str
  kernel_shape: tuple[float, ...]
  output_size: int = 1
  input_size: int | None = None
  stride: int = 1

  @property
  def in_axis(self) -> int:
    return 0 if self.kind == DENSE else 2

  @property
  def out_axis(self) -> int:
    return 1 if self.kind == DENSE else 3

  @property
  def num_weights(self) -> float:
    return float(np.prod(self.kernel_shape))


@dataclasses.dataclass(frozen=True)
class LayerStats:
  name: str
  sparsity: float
  params: float
  zeros: int
  flops: float
  size_bits: float


@dataclasses.dataclass(frozen=True)
class ModelStats:
  """Totals over the counted layers, and the per-layer rows they sum."""
  layers: tuple[LayerStats, ...]

  @property
  def flops(self) -> float:
    return sum(layer.flops for layer in self.layers)

  @property
  def params(self) -> float:
    return sum(layer.params for layer in self.layers)

  @property
  def nonzero_params(self) -> float:
    return sum(layer.params - layer.zeros for layer in self.layers)

  @property
  def sparsity(self) -> float:
    """Sum of floor(s_l * N_l) over the sum of N_l (biases excluded)."""
    return sum(layer.zeros for layer in self.layers) / self.params

  @property
  def size_bits(self) -> float:
    return sum(layer.size_bits for layer in self.layers)

  @property
  def size_mb(self) -> float:
    return self.size_bits / BITS_PER_MEGABYTE


def _counted_layer_types() -> tuple[tuple[str, str, tuple[type, ...]], ...]:
  """(kind, kernel attribute, layer classes) of each countable layer, of either Keras.

  Most specific first: a tf_keras DepthwiseConv2D is also a Conv2D.
  """
  # pylint: disable=import-outside-toplevel
  import keras
  import tf_keras
  # pylint: enable=import-outside-toplevel
  return ((DEPTHWISE, "depthwise_kernel", (tf_keras.layers.DepthwiseConv2D,)),
          (DEPTHWISE, "kernel", (keras.layers.DepthwiseConv2D,)),
          (CONV, "kernel", (tf_keras.layers.Conv2D, keras.layers.Conv2D)),
          (DENSE, "kernel", (tf_keras.layers.Dense, keras.layers.Dense)))


def _spatial_sizes(layer) -> tuple[int, int]:
  """The spatial heights of a convolution's input and output, from a symbolic call.

  Raises AttributeError (or RuntimeError) for layers of subclassed models, which no
  symbolic call has shaped.
  """
  import keras  # pylint: disable=import-outside-toplevel
  if isinstance(layer, keras.layers.Layer):
    return int(layer.input.shape[1]), int(layer.output.shape[1])
  return int(layer.input_shape[1]), int(layer.output_shape[1])


def layer_specs(model) -> list[LayerSpec]:
  """The countable layers (Conv2D, DepthwiseConv2D, Dense) of a built Keras model.

  Layers of `tf_keras` and of Keras 3 (`keras.layers`) are counted alike.
  """
  from rigl import keras_compat  # pylint: disable=import-outside-toplevel
  counted = _counted_layer_types()
  specs = []
  for layer in keras_compat.all_layers(model):
    for kind, attribute, types in counted:
      if isinstance(layer, types):
        kernel = getattr(layer, attribute)
        shape = tuple(int(dim) for dim in kernel.shape)
        if kind == DENSE:
          specs.append(LayerSpec(layer.name, kind, shape))
        else:
          input_size, output_size = _spatial_sizes(layer)
          specs.append(LayerSpec(layer.name, kind, shape, output_size, input_size,
                                 int(layer.strides[0])))
        break
  return specs


def with_paper_stem_count(specs: Sequence[LayerSpec]) -> list[LayerSpec]:
  """The layers with the first one counted as the paper's FLOPs colab counted it.

  The colab applied the MicroNet 'same' rule to the first convolution's explicitly
  zero-padded input: ceil(input_size / stride) output rows (115 for ResNet-50's 7x7
  stride-2 stem on 230 padded pixels, where the layer really produces 112). Only the
  first layer: the colab's model pads no other convolution explicitly.

  Raises:
    ValueError: if the first layer is not a convolution with a known input size.
  """
  if not specs:
    raise ValueError("The paper's stem count needs at least one layer; got none.")
  first = specs[0]
  if first.kind == DENSE:
    raise ValueError(f"The paper's stem count needs a first convolution; {first.name!r} "
                     "is a dense layer.")
  if first.input_size is None:
    raise ValueError(f"The paper's stem count needs the first layer's input size; "
                     f"{first.name!r} has none recorded (build it with `layer_specs`).")
  counted = -(-first.input_size // first.stride)  # ceil
  return [dataclasses.replace(first, output_size=counted), *specs[1:]]


def scale_width(specs: Sequence[LayerSpec], width: float) -> list[LayerSpec]:
  """Multiplies channel counts by `width` (truncated), as the paper's width search.

  The first layer keeps its input channels, the last its outputs, and dimensions of
  size 1 (depthwise multipliers) are never scaled.
  """
  scaled = []
  for index, spec in enumerate(specs):
    shape = list(spec.kernel_shape)
    if index != 0 and shape[spec.in_axis] != 1:
      shape[spec.in_axis] = int(shape[spec.in_axis] * width)
    if index != len(specs) - 1 and shape[spec.out_axis] != 1:
      shape[spec.out_axis] = int(shape[spec.out_axis] * width)
    scaled.append(dataclasses.replace(spec, kernel_shape=tuple(shape)))
  return scaled


def count_layer(spec: LayerSpec, sparsity: float) -> LayerStats:
  """FLOPs (multiplies + adds) and size of one layer at `sparsity`.

  Each output unit costs fan_in multiplies and fan_in - 1 adds, one ReLU multiply and
  one bias add. A depthwise layer's bias belongs to its depth multiplier (the kernel's
  last dimension), as in the MicroNet counter: one bias add per output position.
  """
  density = 1.0 - sparsity
  shape = spec.kernel_shape
  if spec.kind == DEPTHWISE:
    channels, biases = shape[2], shape[3]
    fan_in = shape[0] * shape[1] * density
  elif spec.kind == CONV:
    channels = biases = shape[3]
    fan_in = shape[0] * shape[1] * shape[2] * density
  else:
    channels = biases = shape[1]
    fan_in = shape[0] * density
  positions = spec.output_size**2
  output_units = positions * channels
  multiplies = fan_in * output_units + output_units
  adds = (fan_in - 1) * output_units + positions * biases
  weights = spec.num_weights
  size_bits = weights * BITS_PER_WEIGHT * density + biases * BITS_PER_BIAS
  if sparsity > 0:
    size_bits += weights * BITS_PER_MASK_ENTRY
  return LayerStats(spec.name, sparsity, weights,
                    sparsity_lib.get_n_zeros(weights, sparsity), multiplies + adds,
                    size_bits)


def count(specs: Sequence[LayerSpec], sparsities: Mapping[str, float]) -> ModelStats:
  """Counts every layer; layers absent from `sparsities` are dense."""
  return ModelStats(tuple(count_layer(spec, sparsities.get(spec.name, 0.0))
                          for spec in specs))


@dataclasses.dataclass(frozen=True)
class PruningSamples:
  """Gradual magnitude pruning as the paper's FLOPs colab sampled it.

  Defaults are the ImageNet ResNet-50 runs: pruning from step 10k to 25k of 32k,
  sampled every 1000 steps (`schedule.frequency`).
  """
  train_steps: int = 32000
  schedule: schedules.PolynomialSparsity = schedules.PolynomialSparsity(
      begin_step=10000, end_step=25000, frequency=1000)

  def fraction_at(self, step: int) -> float:
    """Share of the final sparsity reached at `step` (the training schedule's)."""
    return float(self.schedule.sparsity_at(step, 1.0))

  def sample_steps(self) -> range:
    return range(0, self.train_steps + 1, self.schedule.frequency)


@dataclasses.dataclass(frozen=True)
class Accounting:
  """Inference and training cost of one configuration, relative to dense."""
  dense: ModelStats
  sparse: ModelStats
  training_flops_ratio: float

  @property
  def inference_flops_ratio(self) -> float:
    return self.sparse.flops / self.dense.flops

  def as_dict(self) -> dict[str, float]:
    return {
        "inference_flops": self.sparse.flops,
        "inference_flops_ratio": self.inference_flops_ratio,
        "training_flops_ratio": self.training_flops_ratio,
        "params": self.sparse.nonzero_params,
        "sparsity": self.sparse.sparsity,
        "size_mb": self.sparse.size_mb,
    }


def _check_rule(rule: str) -> None:
  if rule not in FLOPS_RULES:
    raise ValueError(f"Unknown FLOPs rule {rule!r}; allowed values: "
                     f"{', '.join(FLOPS_RULES)}.")


def step_flops_per_example(rule: str, dense_flops: float, sparse_flops: float,
                           is_mask_update: bool = False) -> float:
  """Training FLOPs of one example in one step, given the current sparse FLOPs.

  A RigL mask-update step runs the sparse forward pass, the backward pass to the
  inputs, and a dense weight gradient (2 f_S + f_D); other RigL steps cost 3 f_S.
  For pruning, `sparse_flops` are those of the masks at that step.
  """
  _check_rule(rule)
  forward_backward = 1 + BACKWARD_TO_FORWARD
  if rule == DENSE_STEPS:
    return forward_backward * dense_flops
  if rule == DENSE_GRADIENT_STEPS or (rule == DENSE_GRADIENT_ON_UPDATES
                                      and is_mask_update):
    return BACKWARD_TO_FORWARD * sparse_flops + dense_flops
  return forward_backward * sparse_flops


def mask_sparsities(masks) -> dict[str, float]:
  """Per-layer sparsity of `{name: mask}` (arrays or variables), for `count`."""
  return {name: 1.0 - float(np.mean(np.asarray(mask))) for name, mask in masks.items()}


def training_flops_ratio(rule: str, dense_flops: float, sparse_flops: float,
                         mask_update_frequency: int = 100,
                         mean_pruning_flops: float | None = None,
                         training_steps_multiplier: float = 1.0) -> float:
  """Training FLOPs under `rule` relative to dense training of the standard length."""
  _check_rule(rule)
  if rule == DENSE_GRADIENT_ON_UPDATES:
    if mask_update_frequency <= 0:
      raise ValueError(f"`maskupdate_frequency` must be > 0; got {mask_update_frequency}.")
    normal = step_flops_per_example(rule, dense_flops, sparse_flops)
    update = step_flops_per_example(rule, dense_flops, sparse_flops, True)
    cost = (normal * mask_update_frequency + update) / (mask_update_frequency + 1)
  elif rule == PRUNING_STEPS:
    if mean_pruning_flops is None:
      raise ValueError("Pruning needs the mean FLOPs over its pruning schedule.")
    cost = step_flops_per_example(rule, dense_flops, mean_pruning_flops)
  else:
    cost = step_flops_per_example(rule, dense_flops, sparse_flops)
  dense_cost = step_flops_per_example(DENSE_STEPS, dense_flops, dense_flops)
  return training_steps_multiplier * cost / dense_cost


@dataclasses.dataclass(frozen=True)
class TrainingFlopsMeter:
  """Counts training FLOPs per example during training, from the masks of the time.

  The training loop and the Keras callback both sample the masks' sparse FLOPs now
  and then (`sparse_flops`) and count each stretch of calls between two samples with
  `stretch`, at the mean of the sparse FLOPs at its two ends.

  Attributes:
    specs: the model's countable layers.
    rule: the method's `flops_rule`.
  """
  specs: tuple[LayerSpec, ...]
  rule: str

  def __post_init__(self):
    _check_rule(self.rule)

  @property
  def dense_flops(self) -> float:
    return count(self.specs, {}).flops

  def sparse_flops(self, masks) -> float:
    """Inference FLOPs of one example at `{layer name: mask}`."""
    return count(self.specs, mask_sparsities(masks)).flops

  def stretch(self, calls: int, steps: int, sparse_flops_start: float,
              sparse_flops_end: float) -> float:
    """FLOPs per example of `calls` training calls, `steps` of which stepped.

    The other calls changed masks instead of stepping (RigL, SNIP).
    """
    mean = (sparse_flops_start + sparse_flops_end) / 2
    dense = self.dense_flops
    return (steps * step_flops_per_example(self.rule, dense, mean) +
            (calls - steps) * step_flops_per_example(self.rule, dense, mean, True))

  def dense_step(self) -> float:
    """FLOPs per example of one step of dense training, the ratios' reference."""
    dense = self.dense_flops
    return step_flops_per_example(DENSE_STEPS, dense, dense)


def account(specs: Sequence[LayerSpec], config: sparsity_lib.SparsityConfig,
            rule: str, width: float = 1.0,
            mask_update_frequency: int = 100, training_steps_multiplier: float = 1.0,
            pruning: PruningSamples | None = None) -> Accounting:
  """Inference and training cost of a model under a sparsity configuration.

  Args:
    specs: the countable layers of the model at width 1, in model order.
    config: target sparsity, distribution and first/last-layer rules; the first and
      last layers are the first and last non-depthwise layers of `specs`.
    rule: the training method's `flops_rule`.
    width: channel multiplier applied when counting (sparsities come from width 1).
    mask_update_frequency: RigL's dT.
    training_steps_multiplier: the run's length relative to the standard one.
    pruning: the gradual-pruning schedule, for `PRUNING_STEPS`.
  """
  shapes = {spec.name: spec.kernel_shape for spec in specs if spec.kind != DEPTHWISE}
  counted_specs = scale_width(specs, width)
  dense = count(counted_specs, {})
  if rule == DENSE_STEPS:
    sparse = dense
  else:
    sparse = count(counted_specs, config.layer_sparsities(shapes))
  mean_pruning_flops = None
  if rule == PRUNING_STEPS:
    pruning = pruning or PruningSamples()
    samples = []
    for step in pruning.sample_steps():
      step_config = dataclasses.replace(
          config, sparsity=config.sparsity * pruning.fraction_at(step))
      samples.append(count(counted_specs, step_config.layer_sparsities(shapes)).flops)
    mean_pruning_flops = float(np.mean(samples))
  ratio = training_flops_ratio(rule, dense.flops, sparse.flops, mask_update_frequency,
                               mean_pruning_flops, training_steps_multiplier)
  return Accounting(dense, sparse, ratio)


# ----- command line ---------------------------------------------------------------------

def _define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  from rigl import methods  # pylint: disable=import-outside-toplevel
  from rigl import models  # pylint: disable=import-outside-toplevel
  flags.DEFINE_enum("model_architecture", "resnet50", list(models.ARCHITECTURES),
                    "Model whose cost is counted.")
  flags.DEFINE_enum("training_method", "rigl", list(methods.TRAINING_METHODS),
                    "Training method, for the training-FLOPs multiplier.")
  flags.DEFINE_enum("mask_init_method", "erdos_renyi_kernel",
                    list(sparsity_lib.DISTRIBUTIONS), "Sparsity distribution.")
  flags.DEFINE_float("end_sparsity", 0.8, "Target overall sparsity S.")
  flags.DEFINE_float("first_layer_sparsity", 0.0,
                     "0: first layer dense and unmasked; <0: distribution's share; "
                     ">0: this sparsity.")
  flags.DEFINE_float("last_layer_sparsity", -1.0, "Same rules for the last layer.")
  flags.DEFINE_float("erk_power_scale", 1.0, "Exponent on the ERK densities.")
  flags.DEFINE_float("width", 1.0, "Channel multiplier applied when counting.")
  flags.DEFINE_float("training_steps_multiplier", 1.0, "Run length relative to 1x.")
  flags.DEFINE_integer("maskupdate_frequency", 100, "RigL's mask-update period dT.")
  flags.DEFINE_integer("train_steps", 32000, "prune: total training steps.")
  flags.DEFINE_integer("sparsity_begin_step", 10000, "prune: first pruning step.")
  flags.DEFINE_integer("sparsity_end_step", 25000, "prune: last pruning step.")
  flags.DEFINE_integer("pruning_frequency", 1000, "prune: steps between samples.")
  flags.DEFINE_bool("paper_stem_count", False,
                    "resnet50 only: count the first convolution as the paper's colab did "
                    "(the MicroNet 'same' rule on its zero-padded input: 115 rows, not "
                    "112), which the published ResNet-50 FLOPs figures include.")
  flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")


def _main(argv):
  del argv
  from rigl import methods  # pylint: disable=import-outside-toplevel
  from rigl import models  # pylint: disable=import-outside-toplevel
  flags_values = flags.FLAGS
  architecture = flags_values.model_architecture
  specs = layer_specs(models.build(architecture))
  if flags_values.paper_stem_count:
    if architecture != PAPER_STEM_COUNT_ARCHITECTURE:
      raise app.UsageError(
          f"--paper_stem_count reproduces the paper's ResNet-50 counts only; use it with "
          f"--model_architecture={PAPER_STEM_COUNT_ARCHITECTURE}, not {architecture}.")
    specs = with_paper_stem_count(specs)
  first_layer_sparsity = flags_values.first_layer_sparsity
  if architecture.startswith("mobilenet") and first_layer_sparsity != 0:
    raise app.UsageError("MobileNets never mask their first convolution: "
                         "--first_layer_sparsity must be 0.")
  config = sparsity_lib.SparsityConfig(
      sparsity=flags_values.end_sparsity, distribution=flags_values.mask_init_method,
      erk_power_scale=flags_values.erk_power_scale,
      first_layer_sparsity=first_layer_sparsity,
      last_layer_sparsity=flags_values.last_layer_sparsity)
  result = account(
      specs, config, methods.method_class(flags_values.training_method).flops_rule,
      flags_values.width, flags_values.maskupdate_frequency,
      flags_values.training_steps_multiplier,
      PruningSamples(flags_values.train_steps, schedules.PolynomialSparsity(
          flags_values.sparsity_begin_step, flags_values.sparsity_end_step,
          flags_values.pruning_frequency)))
  values = result.as_dict()
  if flags_values.json:
    print(json.dumps(values))
    return
  print(f"{architecture}, {flags_values.training_method}, "
        f"{flags_values.mask_init_method} S={flags_values.end_sparsity}, "
        f"width {flags_values.width}, {flags_values.training_steps_multiplier}x")
  print(f"  inference FLOPs   {values['inference_flops']:.4g} "
        f"({values['inference_flops_ratio']:.3f}x dense {result.dense.flops:.4g})")
  print(f"  training FLOPs    {values['training_flops_ratio']:.3f}x dense")
  print(f"  parameters        {values['params']:.0f} non-zero "
        f"of {result.sparse.params:.0f}")
  print(f"  sparsity          {values['sparsity']:.4f}")
  print(f"  model size        {values['size_mb']:.3f} MB")


if __name__ == "__main__":
  _define_flags()
  app.run(_main)
