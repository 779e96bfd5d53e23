"""The training methods: one registered class each, the only list of methods.

| training_method | class            | drop         | grow / keep                 | when                     |
| baseline        | `DenseTraining`  | -            | -                           | no masks                 |
| scratch         | `Static`         | -            | -                           | fixed random mask        |
| set             | `SET`            | smallest |w| | uniform random              | after the step           |
| static          | `StaticReinit`   | smallest |w| | the same positions, re-init | after the step           |
| momentum        | `SNFS`           | smallest |w| | |EMA of dense gradient|     | after the step           |
| rigl            | `RigL`           | smallest |w| | |dense gradient|            | instead of the step      |
| snip            | `SNIP`           | -            | top |g * w| at the sparsity | first batch, no step     |
| dnw             | `DNW`            | -            | top |w| at the sparsity     | after every step         |
| prune           | `GradualPruning` | -            | |w| above a threshold       | cubic ramp, every k steps |

A method registers itself with `@register`: its class attributes (`flag_name`, `label`,
`flops_rule`, `chooses_own_masks`, ...; see `SparseOptimizer`) and its constructor's
keyword options are all that the scripts, `rigl.flops`, `rigl.report`, the training
loop and the callbacks ask of it, so a new method is one class and one decorator.
"""

from __future__ import annotations

from typing import Any, TypeVar

import keras
import tensorflow as tf
import tf_keras

from rigl import flops
from rigl import keras_compat
from rigl import kernel_selection
from rigl import mask_ops
from rigl import mask_updates
from rigl import schedules
from rigl import sparsity as sparsity_lib
from rigl.sparse_optimizer import DynamicSparseOptimizer
from rigl.sparse_optimizer import SparseOptimizer

# Keras serialization package of the method classes (`model.save` / `load_model`).
SERIALIZATION_PACKAGE = "rigl"

# --training_method value -> class, in registration order.
TRAINING_METHODS: dict[str, type[SparseOptimizer]] = {}

MethodClass = TypeVar("MethodClass", bound=type)


def register(cls: MethodClass) -> MethodClass:
  """Class decorator: makes `cls` the method of its `--training_method` value.

  Also registers it for Keras serialization, so that a compiled model saved with it
  loads again.
  """
  if not (isinstance(cls, type) and issubclass(cls, SparseOptimizer)):
    raise TypeError(f"Only SparseOptimizer subclasses are methods; got {cls!r}.")
  name = cls.__dict__.get("flag_name")
  if not name or not cls.__dict__.get("label"):
    raise ValueError(f"{cls.__name__} needs its own `flag_name` and `label` to be "
                     "registered.")
  if name in TRAINING_METHODS and TRAINING_METHODS[name] is not cls:
    raise ValueError(f"--training_method={name} is already {TRAINING_METHODS[name]!r}.")
  if cls.flops_rule not in flops.FLOPS_RULES:
    raise ValueError(f"{cls.__name__}.flops_rule {cls.flops_rule!r} is not one of "
                     f"{', '.join(flops.FLOPS_RULES)}.")
  TRAINING_METHODS[name] = cls
  tf_keras.saving.register_keras_serializable(SERIALIZATION_PACKAGE)(cls)
  return cls


def method_class(name: str, flag: str = "training_method") -> type[SparseOptimizer]:
  """The registered class of a `--training_method` value.

  Raises:
    ValueError: naming `flag` and the registered values when `name` is none of them.
  """
  if name not in TRAINING_METHODS:
    raise ValueError(f"Unknown --{flag}={name!r}; allowed values: "
                     f"{', '.join(TRAINING_METHODS)}.")
  return TRAINING_METHODS[name]


def all_options() -> dict[str, Any]:
  """Every option of any registered method, with its default (for the scripts)."""
  found = {}
  for cls in TRAINING_METHODS.values():
    found.update(cls.options())
  return found


@register
class DenseTraining(SparseOptimizer):
  """Dense training (`baseline`): no masks; the wrapped optimizer does everything."""
  flag_name, label = "baseline", "Dense"
  flops_rule = flops.DENSE_STEPS
  sparsifies = False
  chooses_own_masks = True
  needs_sparsity_distribution = False


@register
class Static(SparseOptimizer):
  """A fixed random mask for the whole run (`scratch`, the paper's "Static")."""
  flag_name, label = "scratch", "Static"


@register
class SET(DynamicSparseOptimizer):
  """SET (Mocanu et al., 2018): grows uniformly random connections."""
  flag_name, label = "set", "SET"

  def _grow_score(self, ops, kernel, mask, dense_grad, state, random):
    return random.uniform("grow", ops.shape(kernel), kernel.dtype)


@register
class StaticReinit(DynamicSparseOptimizer):
  """`static`: re-initialises the weakest connections; the mask never changes."""
  flag_name, label = "static", "Static (re-init)"
  reinit_when_same = True

  def _grow_score(self, ops, kernel, mask, dense_grad, state, random):
    return ops.cast(mask, kernel.dtype)


@register
class SNFS(DynamicSparseOptimizer):
  """SNFS without redistribution (`momentum`; Dettmers & Zettlemoyer, 2019).

  Grows where the exponential moving average of the dense gradient is largest. The
  average (decay `s_momentum`, zero-initialised, not debiased) is updated on every
  step, before the optimizer step.
  """
  flag_name, label = "momentum", "SNFS"
  flops_rule = flops.DENSE_GRADIENT_STEPS

  def __init__(self, optimizer, model, sparsity=None, *, s_momentum: float = 0.9,
               **kwargs):
    self.s_momentum = float(s_momentum)
    self.check_options(self)
    super().__init__(optimizer, model, sparsity, **kwargs)

  @staticmethod
  def check_options(method) -> None:
    if not 0.0 <= method.s_momentum <= 1.0:
      raise ValueError(f"`s_momentum` must be in [0, 1]; got {method.s_momentum}.")

  def _create_state(self) -> None:
    super()._create_state()
    self._grad_ema = {
        layer.name: mask_ops.state_variable(tf.zeros(layer.shape, layer.kernel.dtype),
                                            f"{layer.name}/grad_ema")
        for layer in self._layers}

  def _state_variables(self):
    return super()._state_variables() + list(self._grad_ema.values())

  @property
  def gradient_averages(self) -> dict[str, tf.Variable]:
    return dict(self._grad_ema)

  def _layer_state(self, layer_name):
    return dict(super()._layer_state(layer_name), grad_ema=self._grad_ema[layer_name])

  def _before_step(self, strategy, grads, dense_grads, variables):
    decay = self.s_momentum
    for layer, grad in zip(self._layers, dense_grads):
      strategy.extended.update(
          self._grad_ema[layer.name],
          lambda ema, g: mask_ops.assign(ema, decay * ema + (1.0 - decay) * g),
          args=(grad,), group=False)
    return grads

  def _grow_score(self, ops, kernel, mask, dense_grad, state, random):
    return ops.abs(ops.convert_to_tensor(state["grad_ema"]))


@register
class RigL(DynamicSparseOptimizer):
  """RigL (Evci et al., 2020): grows where the dense gradient is largest.

  On a mask-update step the masks change *instead of* the optimizer step, using the
  current weights and this batch's dense gradient; the step counter does not advance.
  New connections' slots are set to `gradient * rigl_acc_scale`.
  """
  flag_name, label = "rigl", "RigL"
  flops_rule = flops.DENSE_GRADIENT_ON_UPDATES
  update_replaces_step = True
  allows_gradient_grow_init = True

  def __init__(self, optimizer, model, sparsity=None, *, rigl_acc_scale: float = 0.0,
               **kwargs):
    self.rigl_acc_scale = float(rigl_acc_scale)
    super().__init__(optimizer, model, sparsity, **kwargs)

  def _grow_score(self, ops, kernel, mask, dense_grad, state, random):
    return ops.abs(dense_grad)

  def _new_slot_values(self, ops, dense_grad):
    return dense_grad * self.rigl_acc_scale


@register
class SNIP(SparseOptimizer):
  """SNIP (Lee et al., 2019): one-shot pruning by |gradient * weight| on batch 0.

  The first call of `apply_gradients` keeps, per layer, the connections with the
  largest saliency (the layer's sparsity from the distribution); it takes no optimizer
  step. Training then proceeds with the fixed mask.
  """
  flag_name, label = "snip", "SNIP"
  chooses_own_masks = True
  update_replaces_step = True

  @property
  def mask_schedule(self) -> schedules.OneShot:
    return schedules.OneShot()

  @property
  def is_snipped(self) -> tf.Variable:
    return self._is_snipped

  def _saliency(self, ops, weights, dense_grad, state):
    return ops.abs(dense_grad * weights)


@register
class DNW(SparseOptimizer):
  """DNW (Wortsman et al., 2019): dense weights, sparse forward pass.

  The optimizer updates a dense copy of every kernel with the straight-through (dense)
  gradient; after every step the mask becomes the layer's top-|w| and the kernel the
  masked dense copy.
  """
  flag_name, label = "dnw", "DNW"
  flops_rule = flops.DENSE_GRADIENT_STEPS
  chooses_own_masks = True
  slots_follow_masks = False

  @property
  def mask_schedule(self) -> schedules.EveryStep:
    return schedules.EveryStep()

  def _create_state(self) -> None:
    self._dense_kernels = {
        layer.name: mask_ops.state_variable(tf.identity(layer.kernel),
                                            f"{layer.name}/dense_kernel")
        for layer in self._layers}

  def _state_variables(self):
    return list(self._dense_kernels.values())

  def _layer_state(self, layer_name):
    return {"dense_kernel": self._dense_kernels[layer_name]}

  def _before_step(self, strategy, grads, dense_grads, variables):
    """The step trains the dense copies with the dense (straight-through) gradient."""
    dense_of = {keras_compat.variable_key(self, layer.kernel): grad
                for layer, grad in zip(self._layers, dense_grads)}
    for layer in self._layers:
      strategy.extended.update(layer.kernel, mask_ops.assign,
                               args=(self._dense_kernels[layer.name],), group=False)
    return [dense_of.get(keras_compat.variable_key(self, v), g)
            for g, v in zip(grads, variables)]

  def _update_layer(self, layer_name, context, step, mask, kernel, slots, dense_grad,
                    state):
    mask_ops.assign(state["dense_kernel"], tf.convert_to_tensor(kernel))
    super()._update_layer(layer_name, context, step, mask, kernel, slots, dense_grad,
                          state)

  def _saliency(self, ops, weights, dense_grad, state):
    return ops.abs(weights)


@register
class GradualPruning(SparseOptimizer):
  """Gradual magnitude pruning (`prune`; Zhu & Gupta, 2017).

  Each layer's sparsity follows `schedules.PolynomialSparsity` from 0 to the layer's
  target (cubic); every `pruning_frequency` steps in [begin, end], after the optimizer
  step, each layer keeps its round(n * (1 - s_t)) largest weights (tfmot's rule). With
  `threshold_decay` > 0 the magnitude threshold is smoothed over updates, as TF1 did.
  """
  flag_name, label = "prune", "Pruning"
  flops_rule = flops.PRUNING_STEPS
  chooses_own_masks = True
  needs_sparsity_distribution = False

  def __init__(self, optimizer, model, sparsity=None, *, pruning_begin_step: int = 0,
               pruning_end_step: int = 10000, pruning_frequency: int = 100,
               threshold_decay: float = 0.0, **kwargs):
    self.pruning_begin_step = int(pruning_begin_step)
    self.pruning_end_step = int(pruning_end_step)
    self.pruning_frequency = int(pruning_frequency)
    self.threshold_decay = float(threshold_decay)
    self.check_options(self)
    super().__init__(optimizer, model, sparsity, **kwargs)

  @staticmethod
  def check_options(method) -> None:
    if not 0.0 <= method.threshold_decay < 1.0:
      raise ValueError(f"`threshold_decay` must be in [0, 1); got "
                       f"{method.threshold_decay}.")
    _ = method.mask_schedule  # Raises on an impossible ramp.

  @property
  def mask_schedule(self) -> schedules.PolynomialSparsity:
    return schedules.PolynomialSparsity(self.pruning_begin_step, self.pruning_end_step,
                                        self.pruning_frequency)

  def _create_state(self) -> None:
    self._thresholds = {
        layer.name: mask_ops.state_variable(0.0, f"{layer.name}/threshold",
                                            layer.kernel.dtype)
        for layer in self._layers}

  def _state_variables(self):
    return list(self._thresholds.values())

  def target_sparsity_at(self, layer_name: str, step) -> tf.Tensor:
    """The scheduled sparsity of `layer_name` at `step`."""
    return self.mask_schedule.sparsity_at(step, self.layer_sparsities[layer_name],
                                          self.ops)

  def _update_context(self, step):
    return {name: self.target_sparsity_at(name, step) for name in self.layer_sparsities}

  def _layer_state(self, layer_name):
    return {"threshold": self._thresholds[layer_name]}

  def _update_layer(self, layer_name, context, step, mask, kernel, slots, dense_grad,
                    state):
    """Keeps the weights at or above the (smoothed) k-th largest magnitude."""
    new_mask, new_threshold = mask_updates.magnitude_pruning(
        self.ops, self.selection, tf.convert_to_tensor(kernel),
        tf.convert_to_tensor(state["threshold"]), context[layer_name],
        self.threshold_decay, self.layer_blocks[layer_name])
    mask_ops.assign(state["threshold"], new_threshold)
    mask_ops.install_mask(mask, kernel, new_mask, slots=slots)


def check_option_names(options: dict[str, Any]) -> None:
  """Raises ValueError for an option that no registered method takes."""
  unknown = sorted(set(options) - set(all_options()))
  if unknown:
    raise ValueError(f"Unknown method options {unknown}; the registered methods take "
                     f"{', '.join(sorted(all_options()))}.")


def is_keras3_model(model: Any) -> bool:
  """Whether `model` is a Keras 3 model (`keras` / TF 2.21's `tf.keras`), not tf_keras."""
  return isinstance(model, keras.Model)


def create_sparse_optimizer(training_method: str, optimizer: tf_keras.optimizers.Optimizer,
                            model: tf_keras.Model,
                            sparsity: sparsity_lib.SparsityConfig | None = None, *,
                            seed: int = 0, select: kernel_selection.Selection = None,
                            **options: Any) -> SparseOptimizer:
  """Builds the sparse optimizer of `training_method` from flag-style settings.

  `options` may hold any registered method's options (`all_options()`); those the
  method does not take are ignored, as in the original scripts. `select` chooses the
  sparsified kernels (see `SparseOptimizer`).

  Raises:
    ValueError: for an unknown method, or an option that no method takes.
  """
  if is_keras3_model(model):
    from rigl.keras3 import methods as keras3_methods  # pylint: disable=import-outside-toplevel
    return keras3_methods.create_sparse_optimizer(
        training_method, optimizer, model, sparsity, seed=seed, select=select, **options)
  cls = method_class(training_method)
  check_option_names(options)
  taken = {name: value for name, value in options.items()
           if name in cls.options() and value is not None}
  return cls(optimizer, model, sparsity, seed=seed, select=select, **taken)


def sparsify(model: tf_keras.Model, optimizer: tf_keras.optimizers.Optimizer,
             method: str = "rigl", sparsity: float | sparsity_lib.SparsityConfig = 0.9,
             distribution: str = sparsity_lib.ERDOS_RENYI_KERNEL, *,
             schedule: schedules.MaskUpdateSchedule | None = None,
             select: kernel_selection.Selection = None, seed: int = 0,
             **method_options) -> SparseOptimizer:
  """Wraps `optimizer` so that it trains a sparse version of `model` with `method`.

  Zeroes the masked weights of `model` at once; compile the model with the returned
  optimizer and train it with `model.fit` as usual.

  The model's Keras decides the implementation: a tf_keras model gets a
  `rigl.SparseOptimizer`, a Keras 3 model (TensorFlow, JAX or PyTorch backend) a
  `rigl.keras3.SparseOptimizer`; both behave the same.

  Args:
    model: a built Keras model (Sequential, functional or subclassed).
    optimizer: the optimizer that updates the weights, of the model's Keras.
    method: a key of `TRAINING_METHODS` (`rigl`, `set`, `momentum`, `static`, ...).
    sparsity: the overall target sparsity, or a full `SparsityConfig` (which then also
      gives the distribution and layer exceptions).
    distribution: how `sparsity` is spread over layers (`sparsity.DISTRIBUTIONS`).
    schedule: mask-update timing and drop fraction of the dynamic methods.
    select: which layers' kernels are sparsified (see `SparseOptimizer`).
    seed: seeds the initial masks and every random draw of the method.
    **method_options: further options of the methods (`grow_init`, `rigl_acc_scale`,
      `s_momentum`, `pruning_begin_step`, ...; see `all_options()`).

  Returns:
    The sparse optimizer; `.masks` and `.layer_sparsities` are keyed by layer name.
  """
  if not isinstance(sparsity, sparsity_lib.SparsityConfig):
    sparsity = sparsity_lib.SparsityConfig(sparsity=sparsity, distribution=distribution)
  return create_sparse_optimizer(method, optimizer, model, sparsity, schedule=schedule,
                                 select=select, seed=seed, **method_options)
