"""The sparse optimizer for Keras 3 models, on the TensorFlow, JAX and PyTorch backends.

`SparseOptimizer` wraps any Keras 3 optimizer the way `keras.optimizers.
LossScaleOptimizer` does, and owns the masks and the method's state as optimizer
variables, so that `model.save`, `keras.saving.load_model`, `BackupAndRestore` and
`stateless_apply` (JAX) carry them. Its training step is the tf_keras core's
(`rigl.sparse_optimizer`): masked gradients, the wrapped optimizer's step, and a mask
update when the schedule says so (or instead of the step: RigL, SNIP).

Everything a method is (its flag name, options, schedule and scores) comes from its
registered tf_keras class, the `definition`: `rigl.keras3.methods` derives one class
per registered method. Scores and updates are computed with `keras.ops`, selection
with `rigl.keras3.mask_ops` (no sort) and random numbers with a counter-based hash, so
every replica and every backend draws the same numbers.

Conditional updates: TensorFlow and PyTorch branch on the schedule's answer with
`keras.ops.cond`; JAX branches functionally (each branch returns the new values of
every variable it may change), which works under `jit` and in `stateless_apply`.
On the TensorFlow backend under a `tf.distribute` strategy, gradients are all-reduced
once and the update runs in cross-replica context, computed once from the first
replica's values and written to every replica.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from typing import Any, ClassVar, Sequence

import keras
import numpy as np
from keras import ops

from rigl import grow_init as grow_init_lib
from rigl import kernel_selection
from rigl import keras_compat
from rigl import mask_updates
from rigl import schedules
from rigl import sparse_optimizer as core
from rigl import sparsity as sparsity_lib
from rigl.keras3 import mask_ops

# Class attributes and functions a Keras 3 method takes from its tf_keras definition.
_SHARED_ATTRIBUTES = (
    "flag_name", "label", "flops_rule", "chooses_own_masks",
    "needs_sparsity_distribution", "sparsifies", "update_replaces_step", "slots_follow_masks", "reinit_when_same",
    "allows_gradient_grow_init", "mask_schedule", "check_options", "_initial_mask",
    "_drop_score", "_grow_score", "_new_slot_values", "_saliency")
# Keras 3 optimizers whose step leaves a zero weight with zero gradient and zero slots
# at zero (exact classes; see `rigl.optimizer_slots.ZERO_PRESERVING_OPTIMIZERS`).
ZERO_PRESERVING_OPTIMIZERS = (
    keras.optimizers.SGD, keras.optimizers.Adam, keras.optimizers.AdamW,
    keras.optimizers.Adamax, keras.optimizers.Nadam, keras.optimizers.RMSprop,
    keras.optimizers.Adagrad, keras.optimizers.Adadelta, keras.optimizers.Lion)


def _take_from_definition(cls: type) -> None:
  """Gives `cls` its definition's registration, options checks, schedule and scores."""
  for name in _SHARED_ATTRIBUTES:
    if hasattr(cls.definition, name):
      setattr(cls, name, inspect.getattr_static(cls.definition, name))
  cls.__doc__ = cls.__doc__ or (f"{cls.definition.label} for Keras 3 models; see "
                                f"`rigl.{cls.definition.__name__}`.")


def _is_tf_keras_optimizer(optimizer: Any) -> bool:
  import tf_keras  # pylint: disable=import-outside-toplevel
  return isinstance(optimizer, (tf_keras.optimizers.Optimizer,
                                tf_keras.optimizers.legacy.Optimizer))


class SparseOptimizer(keras.optimizers.Optimizer):
  """Trains a Keras 3 model with fixed random masks (Static, `scratch`).

  The base of every Keras 3 method; arguments as in `rigl.SparseOptimizer`, with
  `optimizer` a Keras 3 optimizer and `kernel_paths` (instead of kernel names) the
  layer and variable name ("hidden/kernel") of every candidate kernel when restored
  from a config. Method options are keywords, as the method's tf_keras class takes
  them.
  """

  # The registered tf_keras class whose attributes, options and scores this class uses.
  definition: ClassVar[type[core.SparseOptimizer]] = core.SparseOptimizer
  flag_name: ClassVar[str | None] = None
  label: ClassVar[str] = ""

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if "definition" in vars(cls):
      _take_from_definition(cls)

  def __init__(self, optimizer: keras.optimizers.Optimizer,
               model: keras.Model | None = None,
               sparsity: sparsity_lib.SparsityConfig | None = None, *, seed: int = 0,
               select: kernel_selection.Selection = None, name: str | None = None,
               kernel_paths: Sequence[tuple[str, str]] | None = None, **options: Any):
    if _is_tf_keras_optimizer(optimizer):
      raise TypeError(
          "This is a Keras 3 model, but the optimizer is a tf_keras (Keras 2) one: use "
          "the optimizer of the model's Keras (`keras.optimizers...`).")
    if not isinstance(optimizer, keras.optimizers.Optimizer):
      raise TypeError(f"`optimizer` must be a Keras 3 optimizer; got {optimizer!r}.")
    if isinstance(optimizer, SparseOptimizer):
      raise TypeError("A sparse optimizer cannot wrap another sparse optimizer.")
    if (model is None) == (kernel_paths is None):
      raise ValueError("Give either `model` or (from a config) `kernel_paths`.")
    allowed = self.definition.options()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
      raise TypeError(f"{type(self).__name__} takes no option {unknown}; its options: "
                      f"{', '.join(allowed) or 'none'}.")
    super().__init__(learning_rate=0.0, name=name or type(self).__name__)
    self._book = _Bookkeeping(
        kernel_paths=None if kernel_paths is None else [tuple(p) for p in kernel_paths])
    self._distribution = None
    self._schedule_variable = None
    self.inner_optimizer = optimizer
    self.sparsity_config = sparsity or sparsity_lib.SparsityConfig()
    self.seed = int(seed)
    for option, default in allowed.items():
      setattr(self, option, options.get(option, default))
    self._set_up_options()
    self.definition.check_options(self)
    self._reapplies_masks = not (type(optimizer) in ZERO_PRESERVING_OPTIMIZERS
                                 and not optimizer.use_ema)
    if model is not None:
      if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras 3 model; got {model!r}.")
      self._bind(kernel_selection.find_kernels(model, select))

  def _set_up_options(self) -> None:
    """Turns option values into the forms the method uses (subclasses extend)."""

  # ----- masks and state ------------------------------------------------------------

  def _bind(self, candidates: Sequence[kernel_selection.LayerKernel]) -> None:
    """Creates masks and method state for the candidate kernels, and applies them."""
    self._book.candidates.extend(candidates)
    shapes = {layer.name: layer.shape for layer in candidates}
    self.layer_sparsities = (self.sparsity_config.layer_sparsities(shapes)
                             if self.sparsifies else {})
    self._book.layers.extend(layer for layer in candidates
                             if layer.name in self.layer_sparsities)
    self.layer_blocks = {layer.name: self.sparsity_config.block_size(layer.name,
                                                                     layer.shape)
                         for layer in self._book.layers}
    for layer in self._book.layers:
      self._book.masks[layer.name] = self._new_variable(
          self._initial_mask(layer), f"{layer.name}/mask", layer.kernel.dtype)
    schedule = self.mask_schedule
    self._schedule_variable = (
        None if schedule.state_name is None else self._new_variable(
            schedule.initial_state(), schedule.state_name,
            "bool" if isinstance(schedule.initial_state(), bool)
            else self.inner_optimizer.iterations.dtype))
    for layer in self._book.layers:
      self._book.state[layer.name] = self._create_layer_state(layer)
    self.apply_masks()

  def _new_variable(self, value, name: str, dtype) -> keras.Variable:
    value = np.asarray(keras.ops.convert_to_numpy(value))
    return self.add_variable(
        shape=value.shape, dtype=dtype, aggregation="only_first_replica",
        name=name.replace("/", "_"),  # Keras 3 variable names have no "/".
        initializer=lambda shape, dtype: ops.cast(value, dtype))

  def _create_layer_state(self, layer: kernel_selection.LayerKernel
                          ) -> dict[str, keras.Variable]:
    """Method variables of one layer (its update reads them as `state`)."""
    del layer
    return {}

  def _bind_by_kernel_paths(self, var_list) -> None:
    by_path: dict[str, list[keras.Variable]] = {}
    for variable in var_list:
      by_path.setdefault(_path_in_model(variable), []).append(variable)
    problems = [path for _, path in self._book.kernel_paths
                if len(by_path.get(path, ())) != 1]
    if problems:
      raise ValueError(f"{self.name}: the model's variables do not match the sparsified "
                       f"kernels of its config ({problems} missing or ambiguous); "
                       "restore the optimizer with the model it was saved with.")
    self._bind([kernel_selection.LayerKernel(layer, by_path[path][0])
                for layer, path in self._book.kernel_paths])

  def build(self, var_list) -> None:
    """Builds the wrapped optimizer and finds each kernel's slots."""
    if self.built:
      return
    if self._book.kernel_paths is not None and not self._book.candidates:
      self._bind_by_kernel_paths(var_list)
    self.inner_optimizer.build(var_list)
    for layer in self._book.layers:
      self._book.slots[layer.name] = [
          slot for slot in keras_compat.keras3_per_variable_state(self.inner_optimizer,
                                                                  layer.kernel)
          if tuple(slot.shape) == layer.shape]
    super().build(var_list)

  @property
  def variables(self) -> list[keras.Variable]:
    return self._variables[:] + self.inner_optimizer.variables

  @property
  def iterations(self):
    return self.inner_optimizer.iterations

  @property
  def learning_rate(self):
    return self.inner_optimizer.learning_rate

  @learning_rate.setter
  def learning_rate(self, learning_rate):
    self.inner_optimizer.learning_rate = learning_rate

  @property
  def masks(self) -> dict[str, keras.Variable]:
    """The mask variable of every sparsified layer, keyed by layer name."""
    return dict(self._book.masks)

  @property
  def kernels(self) -> dict[str, keras.Variable]:
    """The sparsified kernel of every masked layer, keyed by layer name."""
    return {layer.name: layer.kernel for layer in self._book.layers}

  @property
  def slots(self) -> dict[str, list[keras.Variable]]:
    """The wrapped optimizer's elementwise slots of every masked kernel."""
    return {name: list(slots) for name, slots in self._book.slots.items()}

  @property
  def schedule_state(self) -> keras.Variable | None:
    """The schedule's variable (last update step, or SNIP's done flag), if any."""
    return self._schedule_variable

  def initial_masks(self) -> dict[str, np.ndarray]:
    """The masks this optimizer was built with (recomputed from seed and sparsities)."""
    return {layer.name: self._initial_mask(layer) for layer in self._book.layers}

  def apply_masks(self) -> None:
    """Zeroes every kernel and its optimizer slots where its mask is 0."""
    for layer in self._book.layers:
      mask = ops.convert_to_tensor(self._book.masks[layer.name])
      for variable in [layer.kernel] + self._followed_slots(layer.name):
        self._set(variable, ops.convert_to_tensor(variable) * ops.cast(mask,
                                                                       variable.dtype))

  def _followed_slots(self, layer_name: str) -> list[keras.Variable]:
    return self._book.slots.get(layer_name, []) if self.slots_follow_masks else []

  def _set(self, variable: keras.Variable, value) -> None:
    """Assigns `value` (cast), to every replica under a TensorFlow strategy."""
    value = ops.cast(value, variable.dtype)
    if self._distribution is None:
      variable.assign(value)
    else:
      self._distribution.extended.update(
          variable.value, lambda local, new: local.assign(new), args=(value,),
          group=False)

  # ----- serialization --------------------------------------------------------------

  def get_config(self) -> dict[str, Any]:
    config = {
        "name": self.name,
        "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
        "sparsity": dataclasses.asdict(self.sparsity_config),
        "seed": self.seed,
        "kernel_paths": (
            [list(pair) for pair in self._book.kernel_paths] if self._book.kernel_paths
            else [[layer.name, _path_in_model(layer.kernel)]
                  for layer in self._book.candidates]),
    }
    for option in self.definition.options():
      value = getattr(self, option)
      config[option] = (dict(dataclasses.asdict(value), type=type(value).__name__)
                        if dataclasses.is_dataclass(value) else value)
    return config

  @classmethod
  def from_config(cls, config: dict[str, Any], custom_objects=None) -> SparseOptimizer:
    config = copy.deepcopy(config)
    inner = keras.saving.deserialize_keras_object(config.pop("inner_optimizer"),
                                                  custom_objects=custom_objects)
    sparsity = sparsity_lib.SparsityConfig(**config.pop("sparsity"))
    for option, value in config.items():
      if isinstance(value, dict) and "type" in value:
        settings = dict(value)
        config[option] = getattr(schedules, settings.pop("type"))(**settings)
    return cls(inner, None, sparsity, **config)

  # ----- the training step ------------------------------------------------------------

  def apply(self, grads, trainable_variables=None):
    """Masks the gradients, then runs the method's step (see the module docstring)."""
    if not self.built:
      with keras.name_scope(self.name, caller=self):
        self.build(trainable_variables)
    variables = (self._trainable_variables if trainable_variables is None
                 else list(trainable_variables))
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    grads, variables = [g for g, _ in pairs], [v for _, v in pairs]
    strategy = _replica_context_strategy()
    if strategy is None:
      self._step(grads, variables, self._dense_gradients(grads, variables))
      return
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    context = tf.distribute.get_replica_context()
    dense = context.all_reduce(tf.distribute.ReduceOp.SUM,
                               self._dense_gradients(grads, variables))
    context.merge_call(self._cross_replica_step, args=(grads, variables, dense))

  def _cross_replica_step(self, distribution, grads, variables, dense_grads) -> None:
    """The step under a TensorFlow strategy: the update once, written to every replica."""
    dense_grads = [distribution.experimental_local_results(g)[0] for g in dense_grads]
    self._distribution = distribution
    try:
      self._step(grads, variables, dense_grads)
    finally:
      self._distribution = None

  def _dense_gradients(self, grads, variables) -> list:
    """The gradient of every masked kernel, in `_layers` order (zeros if absent)."""
    by_key = {keras_compat.keras3_var_key(self, v): g for g, v in zip(grads, variables)}
    return [by_key.get(keras_compat.keras3_var_key(self, layer.kernel),
                       ops.zeros(layer.shape, layer.kernel.dtype))
            for layer in self._book.layers]

  def _masked(self, grads, variables) -> list:
    mask_of = {keras_compat.keras3_var_key(self, layer.kernel):
               self._book.masks[layer.name] for layer in self._book.layers}
    masked = []
    for grad, variable in zip(grads, variables):
      mask = mask_of.get(keras_compat.keras3_var_key(self, variable))
      masked.append(grad if mask is None else grad * ops.cast(mask, grad.dtype))
    return masked

  def _step(self, grads, variables, dense_grads) -> None:
    """The optimizer step and the scheduled update (or the update instead)."""
    self._before_step(dense_grads)
    if self._distribution is None:
      grads = self._step_gradients(grads, variables)
    else:
      grads = self._distribution.extended.call_for_each_replica(
          lambda *local: self._step_gradients(list(local), variables), args=tuple(grads))

    def optimizer_step():
      self._optimizer_step(grads, variables)

    def update(step):
      return lambda: self._update_masks(dense_grads, step)

    step = ops.convert_to_tensor(self.iterations)
    if self.update_replaces_step:
      self._cond(self._is_update_step(step), update(step), optimizer_step, variables)
      return
    optimizer_step()
    step = ops.convert_to_tensor(self.iterations)
    self._cond(self._is_update_step(step), update(step), lambda: None, variables)

  def _is_update_step(self, step):
    state = self._schedule_variable
    return self.mask_schedule.is_update_step(
        step, None if state is None else ops.convert_to_tensor(state), ops=ops)

  def _before_step(self, dense_grads) -> None:
    """Updates method state before every step (SNFS's averages, DNW's kernels)."""
    del dense_grads

  def _step_gradients(self, grads, variables) -> list:
    """The gradients the optimizer step applies (one replica's): masked ones."""
    return self._masked(grads, variables)

  def _optimizer_step(self, grads, variables) -> None:
    if self._distribution is None:
      self.inner_optimizer.apply(grads, variables)
    else:
      self._distribution.extended.call_for_each_replica(
          self.inner_optimizer.apply, args=(grads, variables))
    if self._reapplies_masks and self.slots_follow_masks:
      # `where`, not a product: such an optimizer may leave inf or NaN at masked
      # weights (Adafactor's factored moments of an all-zero row and column are 0/0).
      for layer in self._book.layers:
        kernel = ops.convert_to_tensor(layer.kernel)
        self._set(layer.kernel, ops.where(self._book.masks[layer.name] > 0, kernel,
                                          ops.zeros_like(kernel)))

  def _cond(self, pred, true_fn, false_fn, variables) -> None:
    """Runs `true_fn` or `false_fn` (which change variables) as `pred` says."""
    if isinstance(pred, (bool, np.bool_)):
      (true_fn if pred else false_fn)()
    elif keras.backend.backend() == "jax":
      touched = list(variables) + self.variables
      values = ops.cond(pred, _returning_values(true_fn, touched),
                        _returning_values(false_fn, touched))
      for variable, value in zip(touched, values):
        variable.assign(value)
    else:
      ops.cond(pred, lambda: _none(true_fn()), lambda: _none(false_fn()))

  # ----- the mask update --------------------------------------------------------------

  def update_masks(self, dense_grads: Sequence[Any]) -> None:
    """Runs this method's mask update once, now, whatever its schedule says.

    For timing and tools, on a built optimizer, with one dense gradient per kernel of
    `kernels` (in that order). Fixed masks do not change.
    """
    if isinstance(self.mask_schedule, schedules.Never):
      return
    if not self.built:
      raise ValueError("update_masks() needs a built optimizer: call "
                       "build(model.trainable_variables) first.")
    self._update_masks(list(dense_grads), ops.convert_to_tensor(self.iterations))

  def _update_masks(self, dense_grads, step) -> None:
    context = self._update_context(step)
    for layer, dense_grad in zip(self._book.layers, dense_grads):
      self._update_layer(layer, context, step, dense_grad)
    if self._schedule_variable is not None:
      self._set(self._schedule_variable, self.mask_schedule.state_after_update(step))

  def _update_context(self, step) -> Any:
    del step

  def _update_layer(self, layer, context, step, dense_grad) -> None:
    """Keeps the top `_saliency` at the layer's sparsity."""
    del context, step
    weights = ops.convert_to_tensor(layer.kernel)
    new_mask = mask_updates.keep_top_at_sparsity(
        ops, mask_ops, self._saliency(ops, weights, ops.cast(dense_grad, weights.dtype),
                                      self._book.state[layer.name]),
        self.layer_sparsities[layer.name], self.layer_blocks[layer.name])
    self._install_mask(layer, new_mask, weights)

  def _install_mask(self, layer, new_mask, weights=None) -> None:
    """Sets the mask, the kernel (default: itself) masked, and its slots masked."""
    weights = ops.convert_to_tensor(layer.kernel) if weights is None else weights
    self._set(layer.kernel, weights * ops.cast(new_mask, weights.dtype))
    for slot in self._followed_slots(layer.name):
      self._set(slot, ops.convert_to_tensor(slot) * ops.cast(new_mask, slot.dtype))
    self._set(self._book.masks[layer.name], new_mask)


_take_from_definition(SparseOptimizer)


class DynamicSparseOptimizer(SparseOptimizer):
  """The drop/grow update of SET, SNFS, RigL and `static` (see `rigl.mask_updates`)."""

  definition = core.DynamicSparseOptimizer

  def _set_up_options(self) -> None:
    self.schedule = self.schedule or schedules.MaskUpdateSchedule()
    self._grow_init = grow_init_lib.parse(self.grow_init, self.allows_gradient_grow_init)

  def _create_layer_state(self, layer):
    state = super()._create_layer_state(layer)
    if self._grow_init.uses_initial_kernel:
      state["initial_kernel"] = self._new_variable(
          layer.kernel, f"{layer.name}/initial_kernel", layer.kernel.dtype)
    return state

  def _update_context(self, step):
    return self.schedule.drop_fraction_at(step, ops=ops)

  def _update_layer(self, layer, context, step, dense_grad):
    weights = ops.convert_to_tensor(layer.kernel)
    update = mask_updates.drop_and_grow(
        self, ops, mask_ops, mask_ops.HashRandom(layer.name, self.seed, step), weights,
        ops.convert_to_tensor(self._book.masks[layer.name]),
        ops.cast(dense_grad, weights.dtype), self._book.state[layer.name],
        drop_fraction=context, block_size=self.layer_blocks[layer.name])
    for variable, values in [(layer.kernel, update.kernel_values)] + [
        (slot, update.slot_values) for slot in self._followed_slots(layer.name)]:
      self._set(variable, mask_updates.rewired(
          ops, ops.convert_to_tensor(variable), update.new_connections, values,
          update.new_mask))
    self._set(self._book.masks[layer.name], update.new_mask)


@dataclasses.dataclass
class _Bookkeeping:
  """The optimizer's views of its variables, kept out of Keras' variable tracking.

  Keras tracks the variables it finds in an optimizer's attributes; these dicts hold
  variables tracked already (masks, state) or the wrapped optimizer's (slots).
  """
  kernel_paths: list[tuple[str, str]] | None
  masks: dict[str, keras.Variable] = dataclasses.field(default_factory=dict)
  state: dict[str, dict[str, keras.Variable]] = dataclasses.field(default_factory=dict)
  slots: dict[str, list[keras.Variable]] = dataclasses.field(default_factory=dict)
  layers: list[kernel_selection.LayerKernel] = dataclasses.field(default_factory=list)
  candidates: list[kernel_selection.LayerKernel] = dataclasses.field(default_factory=list)


def _path_in_model(variable: keras.Variable) -> str:
  """The variable's layer and name ("hidden/kernel"), unique in a model.

  Not the whole path: the model's own name ("sequential_3") changes from one process,
  or one load, to the next, and a loaded model's paths leave it out.
  """
  return "/".join(variable.path.split("/")[-2:])


def _replica_context_strategy():
  """The non-default TensorFlow strategy whose replica context we are in, or None."""
  if keras.backend.backend() != "tensorflow":
    return None
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
    return None
  return tf.distribute.get_strategy()


def _returning_values(fn, variables):
  """`fn` as a pure function returning the new values of `variables` (JAX branches)."""

  def branch():
    mapping = [(v, ops.convert_to_tensor(v)) for v in variables]
    with keras.StatelessScope(state_mapping=mapping) as scope:
      fn()
    return [scope.get_current_value(v) for v in variables]

  return branch


def _none(_) -> None:
  return None
