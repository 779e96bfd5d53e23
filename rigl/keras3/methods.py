"""The Keras 3 class of every registered method, derived from its tf_keras class.

`rigl.methods.TRAINING_METHODS` stays the only list of methods: `method_class(name)`
derives (once) a Keras 3 class from a registered class, on the Keras 3 base that
implements its kind of update. Methods with state of their own (SNFS's gradient
averages, DNW's dense kernels, gradual pruning's thresholds) have their variables
and per-step bookkeeping here; their scores and options stay in their definitions.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from rigl import kernel_selection
from rigl import mask_updates
from rigl import methods
from rigl import sparse_optimizer as core
from rigl import sparsity as sparsity_lib
from rigl.keras3 import mask_ops
from rigl.keras3.sparse_optimizer import DynamicSparseOptimizer
from rigl.keras3.sparse_optimizer import SparseOptimizer

# Keras serialization package of the Keras 3 method classes.
SERIALIZATION_PACKAGE = "rigl.keras3"
SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")


class GradientAveragesOptimizer(DynamicSparseOptimizer):
  """SNFS's state: an exponential moving average of every kernel's dense gradient."""

  definition = methods.SNFS

  def _create_layer_state(self, layer):
    return dict(super()._create_layer_state(layer), grad_ema=self._new_variable(
        ops.zeros(layer.shape), f"{layer.name}/grad_ema", layer.kernel.dtype))

  @property
  def gradient_averages(self) -> dict[str, keras.Variable]:
    return {name: state["grad_ema"] for name, state in self._book.state.items()}

  def _before_step(self, dense_grads) -> None:
    decay = self.s_momentum
    for layer, grad in zip(self._book.layers, dense_grads):
      average = self._book.state[layer.name]["grad_ema"]
      self._set(average, decay * ops.convert_to_tensor(average) + (1.0 - decay) * grad)


class DenseWeightsOptimizer(SparseOptimizer):
  """DNW's state: a dense copy of every kernel, trained with the dense gradient."""

  definition = methods.DNW

  def _create_layer_state(self, layer):
    return {"dense_kernel": self._new_variable(layer.kernel, f"{layer.name}/dense_kernel",
                                               layer.kernel.dtype)}

  def _before_step(self, dense_grads) -> None:
    del dense_grads
    for layer in self._book.layers:
      dense_kernel = self._book.state[layer.name]["dense_kernel"]
      self._set(layer.kernel, ops.convert_to_tensor(dense_kernel))

  def _step_gradients(self, grads, variables):
    """The dense (straight-through) gradients train the dense kernels."""
    del variables
    return grads

  def _update_layer(self, layer, context, step, dense_grad):
    self._set(self._book.state[layer.name]["dense_kernel"],
              ops.convert_to_tensor(layer.kernel))
    super()._update_layer(layer, context, step, dense_grad)


class MagnitudePruningOptimizer(SparseOptimizer):
  """Gradual pruning's state: each layer's (smoothed) magnitude threshold."""

  definition = methods.GradualPruning

  def _create_layer_state(self, layer):
    return {"threshold": self._new_variable(0.0, f"{layer.name}/threshold",
                                            layer.kernel.dtype)}

  def target_sparsity_at(self, layer_name: str, step) -> Any:
    """The scheduled sparsity of `layer_name` at `step`."""
    return self.mask_schedule.sparsity_at(step, self.layer_sparsities[layer_name], ops)

  def _update_context(self, step):
    return {name: self.target_sparsity_at(name, step) for name in self.layer_sparsities}

  def _update_layer(self, layer, context, step, dense_grad):
    del step, dense_grad
    threshold = self._book.state[layer.name]["threshold"]
    new_mask, new_threshold = mask_updates.magnitude_pruning(
        ops, mask_ops, ops.convert_to_tensor(layer.kernel),
        ops.convert_to_tensor(threshold), context[layer.name], self.threshold_decay,
        self.layer_blocks[layer.name])
    self._set(threshold, new_threshold)
    self._install_mask(layer, new_mask)


# The Keras 3 base of each kind of tf_keras method, most specific first.
_BASES: dict[type, type[SparseOptimizer]] = {
    methods.SNFS: GradientAveragesOptimizer,
    methods.DNW: DenseWeightsOptimizer,
    methods.GradualPruning: MagnitudePruningOptimizer,
    core.DynamicSparseOptimizer: DynamicSparseOptimizer,
    core.SparseOptimizer: SparseOptimizer,
}
_DERIVED: dict[type, type[SparseOptimizer]] = {}


def keras3_class(definition: type[core.SparseOptimizer]) -> type[SparseOptimizer]:
  """The Keras 3 class of the tf_keras method class `definition` (derived once)."""
  if definition not in _DERIVED:
    base = next(_BASES[klass] for klass in definition.__mro__ if klass in _BASES)
    derived = type(definition.__name__, (base,), {
        "definition": definition, "__module__": __name__,
        "__qualname__": definition.__name__})
    keras.saving.register_keras_serializable(SERIALIZATION_PACKAGE)(derived)
    _DERIVED[definition] = derived
  return _DERIVED[definition]


def method_class(name: str, flag: str = "training_method") -> type[SparseOptimizer]:
  """The Keras 3 class of a registered `--training_method` value."""
  return keras3_class(methods.method_class(name, flag))


def check_backend() -> None:
  """Raises unless the configured Keras backend can run the sparse optimizers."""
  backend = keras.backend.backend()
  if backend not in SUPPORTED_BACKENDS:
    raise ValueError(f"The Keras backend {backend!r} cannot run rigl's sparse optimizers "
                     "(they need while loops, bitcasts and conditionals); set "
                     f"KERAS_BACKEND to one of {', '.join(SUPPORTED_BACKENDS)}.")


def create_sparse_optimizer(training_method: str, optimizer: keras.optimizers.Optimizer,
                            model: keras.Model,
                            sparsity: sparsity_lib.SparsityConfig | None = None, *,
                            seed: int = 0, select: kernel_selection.Selection = None,
                            **options: Any) -> SparseOptimizer:
  """`rigl.create_sparse_optimizer` for a Keras 3 model and optimizer."""
  check_backend()
  cls = method_class(training_method)
  methods.check_option_names(options)
  taken = {name: value for name, value in options.items()
           if name in cls.definition.options() and value is not None}
  return cls(optimizer, model, sparsity, seed=seed, select=select, **taken)


Static = keras3_class(methods.Static)
DenseTraining = keras3_class(methods.DenseTraining)
SET = keras3_class(methods.SET)
StaticReinit = keras3_class(methods.StaticReinit)
SNFS = keras3_class(methods.SNFS)
RigL = keras3_class(methods.RigL)
SNIP = keras3_class(methods.SNIP)
DNW = keras3_class(methods.DNW)
GradualPruning = keras3_class(methods.GradualPruning)
