"""The sparse optimizer: wraps any tf_keras optimizer and owns the model's masks.

`SparseOptimizer` keeps one non-trainable mask per sparsified kernel, keeps masked
weights exactly zero in the kernels, and runs the one training step every method
shares. Masked weights stay zero because gradients are masked and every mask change
zeroes the kernel and the optimizer slots where the mask is 0: the optimizers of
`optimizer_slots.ZERO_PRESERVING_OPTIMIZERS` then leave them at zero by themselves; for
any other optimizer the masks are re-applied to the kernels after every step.

A method (`rigl.methods`) is one registered subclass that supplies:

- its registration: `flag_name` (the `--training_method` value), `label` (reports),
  `flops_rule` (how `rigl.flops` counts its steps), `chooses_own_masks`, and its
  options (the keyword-only arguments of its constructor);
- a schedule (`rigl.schedules`) saying on which steps masks change, and whether the
  change replaces the optimizer step (`update_replaces_step`: RigL, SNIP);
- pure per-layer scores: `_saliency` (keep the top at the layer's sparsity: SNIP,
  DNW), or in `DynamicSparseOptimizer` `_drop_score`, `_grow_score` and
  `_new_slot_values` (SET, SNFS, RigL, ...).

The base class owns the per-layer loop and the `tf.distribute` plumbing once:
gradients are all-reduced once, in replica context, then the step runs in
cross-replica context (`merge_call`), where every variable is changed through
`strategy.extended.update`. The per-device update functions read only local copies and
stateless random numbers seeded by (layer name, step), so every replica computes the
same masks without further communication.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import inspect
from typing import Any, ClassVar, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
import tf_keras

from rigl import array_ops
from rigl import flops
from rigl import grow_init as grow_init_lib
from rigl import keras_compat
from rigl import kernel_selection
from rigl import mask_ops
from rigl import mask_updates
from rigl import optimizer_slots
from rigl import schedules
from rigl import sparsity as sparsity_lib

# Standard deviation of the noise added to drop scores, to break ties at random.
DROP_NOISE_STD = 1e-5
# Constructor arguments every method has; a method's options are its other keywords.
_COMMON_ARGUMENTS = ("self", "optimizer", "model", "sparsity", "seed", "select", "name",
                     "kernel_names", "args", "kwargs")


def _forwarded_to_inner_optimizer(name: str, doc: str) -> property:
  """A property that reads and sets the wrapped optimizer's attribute `name`."""
  return property(lambda self: getattr(self._optimizer, name),
                  lambda self, value: setattr(self._optimizer, name, value), doc=doc)


class SparseOptimizer(keras_compat.ForwardingIterationsOptimizer):
  """Trains a model with fixed random masks (the paper's Static, `scratch`).

  The base of every sparse method: wraps `optimizer`, creates a mask per sparsified
  kernel of `model`, zeroes the masked weights, and keeps them at zero.

  Args:
    optimizer: the tf_keras optimizer that updates the weights (current or legacy).
    model: a built Keras model whose selected kernels are sparsified; None when
      restored from its config (`from_config`), where `kernel_names` says which kernel
      variables to sparsify once `build` sees them.
    sparsity: per-layer sparsity settings (target, distribution, exceptions).
    seed: seeds the initial masks and offsets every stateless random draw.
    select: which layers' kernels are sparsified: a `rigl.KernelSelector`, layer
      classes, or a predicate on layers (see `kernel_selection.as_selector`); by default
      every `Conv2D` and `Dense` kernel.
    name: the optimizer's name.
    kernel_names: with `model=None`: (layer name, kernel variable name) of every
      candidate kernel, in model order, as `get_config` records them.
  """

  # ----- registration: what the rest of the library asks of a method ------------------
  # The --training_method value, and the method's name in reports (`methods.register`).
  flag_name: ClassVar[str | None] = None
  label: ClassVar[str] = ""
  # How `rigl.flops` counts one training step of the method (`flops.FLOPS_RULES`).
  flops_rule: ClassVar[str] = flops.SPARSE_STEPS
  # The method picks its masks itself: it starts from all-ones masks, and masks loaded
  # from another run (--load_mask_dir) mean nothing to it.
  chooses_own_masks: ClassVar[bool] = False
  # The scripts require --mask_init_method (the per-layer sparsities) for the method.
  needs_sparsity_distribution: ClassVar[bool] = True
  # False for dense training, which keeps no masks at all.
  sparsifies: ClassVar[bool] = True
  # A mask update replaces the optimizer step of its call (RigL, SNIP): the step
  # counter does not advance on it.
  update_replaces_step: ClassVar[bool] = False
  # Whether the optimizer slots of masked weights are kept at zero with them (False
  # for DNW, whose optimizer trains dense copies of the kernels).
  slots_follow_masks: ClassVar[bool] = True
  # The array namespace that scores and schedules are computed with.
  ops: ClassVar[Any] = array_ops.TENSORFLOW
  # Chooses top entries (`keep_top`, `kth_largest`, `drop_and_grow`) for updates.
  selection: ClassVar[Any] = mask_ops

  def __init__(self, optimizer: tf_keras.optimizers.Optimizer,
               model: tf_keras.Model | None,
               sparsity: sparsity_lib.SparsityConfig | None = None, *, seed: int = 0,
               select: kernel_selection.Selection = None, name: str | None = None,
               kernel_names: Sequence[tuple[str, str]] | None = None):
    if isinstance(model, keras.Model):
      raise TypeError(f"{type(self).__name__} here is the tf_keras (Keras 2) "
                      "implementation, but the model is a Keras 3 one: use "
                      f"rigl.sparsify or rigl.keras3.{type(self).__name__}.")
    if isinstance(optimizer, keras.optimizers.Optimizer):
      raise TypeError("The model is a tf_keras (Keras 2) model, but the optimizer is a "
                      "Keras 3 one: use the optimizer of the model's Keras "
                      "(`tf_keras.optimizers...`).")
    if not isinstance(optimizer, (tf_keras.optimizers.Optimizer,
                                  tf_keras.optimizers.legacy.Optimizer)):
      raise TypeError(f"`optimizer` must be a tf_keras optimizer; got {optimizer!r}.")
    if isinstance(optimizer, SparseOptimizer):
      raise TypeError("A sparse optimizer cannot wrap another sparse optimizer.")
    if (model is None) == (kernel_names is None):
      raise ValueError("Give either `model` or (from a config) `kernel_names`.")
    super().__init__(name=name or type(self).__name__)
    self._optimizer = optimizer
    self._legacy = not isinstance(optimizer, tf_keras.optimizers.Optimizer)
    self.sparsity_config = sparsity or sparsity_lib.SparsityConfig()
    self.seed = int(seed)
    # Re-masking kernels after each step costs a multiply per kernel; it is needed only
    # for optimizers that could move a zero weight with zero gradient and slots.
    self._reapplies_masks = not optimizer_slots.preserves_zeros(optimizer)
    self._slots = keras_compat.untracked(self, {})
    # Set by `planned` while a step is traced: True/False when the host decided.
    self._planned_update = None
    self._masks = {}
    self._layers = keras_compat.untracked(self, [])
    self._candidates = keras_compat.untracked(self, [])
    self._kernel_names = keras_compat.untracked(
        self, None if kernel_names is None else [tuple(pair) for pair in kernel_names])
    if model is not None:
      self._bind(kernel_selection.find_kernels(model, select))

  def _bind(self, candidates: Sequence[kernel_selection.LayerKernel]) -> None:
    """Creates masks and method state for the candidate kernels, and applies them."""
    self._candidates.extend(candidates)
    shapes = {layer.name: layer.shape for layer in candidates}
    self.layer_sparsities = keras_compat.untracked(
        self, self.sparsity_config.layer_sparsities(shapes) if self.sparsifies else {})
    self._layers.extend(layer for layer in candidates
                        if layer.name in self.layer_sparsities)
    self.layer_blocks = keras_compat.untracked(
        self, {layer.name: self.sparsity_config.block_size(layer.name, layer.shape)
               for layer in self._layers})
    self._layer_of_variable = keras_compat.untracked(
        self, {keras_compat.variable_key(self, layer.kernel): layer.name
               for layer in self._layers})
    for layer in self._layers:
      self._masks[layer.name] = mask_ops.state_variable(
          self._initial_mask(layer), f"{layer.name}/mask", layer.kernel.dtype)
    schedule = self.mask_schedule
    if schedule.state_name is not None:
      setattr(self, schedule.state_attribute,
              mask_ops.state_variable(schedule.initial_state(), schedule.state_name))
    self._create_state()
    self.apply_masks()

  def _bind_by_kernel_names(self, var_list) -> None:
    """Binds to the variables `kernel_names` names (a model restored from config)."""
    by_name: dict[str, list[tf.Variable]] = {}
    for variable in var_list:
      by_name.setdefault(variable.name, []).append(variable)
    problems = [name for _, name in self._kernel_names if len(by_name.get(name, ())) != 1]
    if problems:
      raise ValueError(f"{self.name}: the model's variables do not match the sparsified "
                       f"kernels of its config ({problems} missing or ambiguous); "
                       "restore the optimizer with the model it was saved with.")
    self._bind([kernel_selection.LayerKernel(layer, by_name[name][0])
                for layer, name in self._kernel_names])

  # ----- construction ---------------------------------------------------------------

  @property
  def mask_schedule(self) -> schedules.MaskSchedule:
    """When masks change (`rigl.schedules`); fixed masks never do."""
    return schedules.Never()

  @classmethod
  def options(cls) -> dict[str, Any]:
    """The method's options and their defaults: its constructors' other keywords."""
    found = {}
    for klass in reversed(cls.__mro__):
      if "__init__" not in vars(klass) or not issubclass(klass, SparseOptimizer):
        continue
      for parameter in inspect.signature(klass.__init__).parameters.values():
        if parameter.name not in _COMMON_ARGUMENTS:
          found[parameter.name] = parameter.default
    return found

  @staticmethod
  def check_options(method) -> None:
    """Raises ValueError for option values (attributes of `method`) the method rejects.

    Shared by both Keras implementations of the method.
    """
    del method

  def _initial_mask(self, layer: kernel_selection.LayerKernel) -> np.ndarray:
    if self.chooses_own_masks:
      return np.ones(layer.shape, np.float32)
    return kernel_selection.initial_mask(layer.name, layer.shape,
                                         self.layer_sparsities[layer.name], self.seed,
                                         self.layer_blocks[layer.name])

  def _create_state(self) -> None:
    """Creates method-specific variables; called after the masks exist."""
    return None

  # ----- delegation to the wrapped optimizer ------------------------------------------

  @property
  def inner_optimizer(self) -> tf_keras.optimizers.Optimizer:
    return self._optimizer

  iterations = _forwarded_to_inner_optimizer(
      "iterations", "The wrapped optimizer's step counter, the method's step.")
  learning_rate = _forwarded_to_inner_optimizer(
      "learning_rate", "The wrapped optimizer's learning rate (or schedule).")

  @property
  def variables(self):
    schedule_state = self._schedule_state()
    own = list(self._masks.values())
    if schedule_state is not None:
      own.append(schedule_state)
    own += self._state_variables()
    # A legacy optimizer's `variables` is a method; the current one's a callable list.
    return keras_compat.callable_list(list(self._optimizer.variables()) + own)

  def _state_variables(self) -> list[tf.Variable]:
    """Method-specific variables, for `variables`."""
    return []

  def build(self, var_list):
    """Creates the wrapped optimizer's slots, so that no step creates variables.

    An optimizer restored from its config first creates its masks here.
    """
    if self._kernel_names is not None and not self._candidates:
      self._bind_by_kernel_names(var_list)
    if self._legacy:
      keras_compat.create_legacy_optimizer_weights(self._optimizer, var_list)
    else:
      self._optimizer.build(var_list)
    for layer in self._layers:
      if layer.name not in self._slots:
        self._slots[layer.name] = optimizer_slots.slots_of(self._optimizer, layer.kernel)

  # ----- serialization --------------------------------------------------------------

  def get_config(self) -> dict[str, Any]:
    """Everything `from_config` needs: inner optimizer, sparsity, options, kernels."""
    config = {
        "name": self.name,
        "inner_optimizer": tf_keras.optimizers.serialize(self._optimizer),
        "sparsity": dataclasses.asdict(self.sparsity_config),
        "seed": self.seed,
        "kernel_names": [list(pair) for pair in self._kernel_names] if self._kernel_names
                        else [[layer.name, layer.kernel.name] for layer in self._candidates],
    }
    for option in self.options():
      value = getattr(self, option)
      config[option] = (dict(dataclasses.asdict(value), type=type(value).__name__)
                        if dataclasses.is_dataclass(value) else value)
    return config

  @classmethod
  def from_config(cls, config: dict[str, Any], custom_objects=None) -> SparseOptimizer:
    """The optimizer `get_config` described; masks are created by `build`."""
    config = copy.deepcopy(config)  # Keras' deserialize edits the dicts it is given.
    inner = tf_keras.optimizers.deserialize(config.pop("inner_optimizer"),
                                            custom_objects=custom_objects)
    sparsity = sparsity_lib.SparsityConfig(**config.pop("sparsity"))
    for option, value in config.items():
      if isinstance(value, dict) and "type" in value:
        settings = dict(value)
        config[option] = getattr(schedules, settings.pop("type"))(**settings)
    return cls(inner, None, sparsity, **config)

  # ----- public views ---------------------------------------------------------------

  @property
  def masks(self) -> dict[str, tf.Variable]:
    """The mask variable of every sparsified layer, keyed by layer name."""
    return dict(self._masks)

  @property
  def kernels(self) -> dict[str, tf.Variable]:
    """The sparsified kernel of every masked layer, keyed by layer name."""
    return {layer.name: layer.kernel for layer in self._layers}

  def apply_masks(self) -> None:
    """Zeroes every kernel and its optimizer slots where its mask is 0.

    Training keeps this true by itself; call it after assigning masks or kernels from
    outside (warm starts, imported checkpoints). Idempotent, bit for bit.
    """
    for layer in self._layers:
      mask_ops.mask_in_place([layer.kernel] + self._followed_slots(layer.name),
                             self._masks[layer.name])

  def _followed_slots(self, layer_name: str) -> list[tf.Variable]:
    """The optimizer slots of a layer that are masked with its kernel."""
    return self._slots.get(layer_name, []) if self.slots_follow_masks else []

  def initial_masks(self) -> dict[str, np.ndarray]:
    """The masks this optimizer was built with, keyed by layer name.

    Recomputed from the seed and sparsities (no state is kept for them), so they are
    the same after a restart from a checkpoint.
    """
    return {layer.name: self._initial_mask(layer) for layer in self._layers}

  # ----- the training step ----------------------------------------------------------

  def apply_gradients(self, grads_and_vars, name=None, skip_gradients_aggregation=False,
                      **kwargs):
    """Masks the gradients, then runs this method's step (see the module docstring)."""
    del name
    grads_and_vars = keras_compat.filter_empty_gradients(grads_and_vars)
    if tf.distribute.in_cross_replica_context():
      raise ValueError("apply_gradients() must be called in a replica context.")
    variables = [v for _, v in grads_and_vars]
    with tf.init_scope():
      self.build(variables)
    if not skip_gradients_aggregation and kwargs.pop("experimental_aggregate_gradients",
                                                     True):
      grads_and_vars = keras_compat.all_reduce_sum_gradients(grads_and_vars)
    dense_grads = {}
    grads = []
    for grad, variable in grads_and_vars:
      layer_name = self._layer_of_variable.get(
          keras_compat.variable_key(self, variable))
      if layer_name is not None:
        grad = tf.convert_to_tensor(grad)
        dense_grads[layer_name] = grad
        grad = grad * tf.cast(self._masks[layer_name], grad.dtype)
      grads.append(grad)
    for layer in self._layers:
      if layer.name not in dense_grads:
        dense_grads[layer.name] = tf.zeros_like(layer.kernel)
    dense_grads = [dense_grads[layer.name] for layer in self._layers]
    apply = functools.partial(self._apply_sparse, variables=variables)
    tf.distribute.get_replica_context().merge_call(apply, args=(grads, dense_grads))
    return self.iterations

  @contextlib.contextmanager
  def planned(self, update: bool | None) -> Iterator[None]:
    """Steps traced inside take (`update`) or skip the mask update, without a condition.

    For a training loop that decides on the host (`HostUpdatePlan`) and calls one of
    two compiled steps: ordinary steps then carry no schedule check and no conditional.
    The plan must agree with the schedule, or masks change at the wrong steps. None:
    the step decides itself, with the schedule's conditional (the default).
    """
    previous, self._planned_update = self._planned_update, update
    try:
      yield
    finally:
      self._planned_update = previous

  def _apply_sparse(self, strategy, grads, dense_grads, variables) -> None:
    """One call of this method, in cross-replica context.

    The optimizer step, then a mask update on the post-step weights and step counter
    when the schedule (or the host's plan, see `planned`) says so; with
    `update_replaces_step`, either the update (on the current weights, counter
    unchanged) or the step.
    """
    grads = self._before_step(strategy, grads, dense_grads, variables)
    update = functools.partial(self._update_masks, strategy, dense_grads)
    optimizer_step = functools.partial(self._optimizer_step, strategy, grads, variables)
    planned = self._planned_update
    if self.update_replaces_step:
      step = tf.identity(self.iterations)
      if planned is None:
        tf.cond(self._is_update_step(step), lambda: update(step), optimizer_step)
      elif planned:
        update(step)
      else:
        optimizer_step()
      return
    optimizer_step()
    step = tf.identity(self.iterations)
    is_update = self._is_update_step(step) if planned is None else planned
    if is_update is True:
      update(step)
    elif is_update is not False:
      tf.cond(is_update, lambda: update(step), lambda: tf.constant(False))

  def _schedule_state(self) -> tf.Variable | None:
    """The schedule's state variable (None: its schedule keeps none, or not bound yet)."""
    attribute = self.mask_schedule.state_attribute
    return getattr(self, attribute, None) if attribute is not None else None

  def _is_update_step(self, step: tf.Tensor) -> tf.Tensor | bool:
    return self.mask_schedule.is_update_step(step, self._schedule_state())

  def _before_step(self, strategy, grads, dense_grads, variables) -> list[tf.Tensor]:
    """Runs before every step; returns the gradients the optimizer step applies."""
    del strategy, dense_grads, variables
    return grads

  def _optimizer_step(self, strategy, grads, variables) -> tf.Tensor:
    """Runs the wrapped optimizer on `grads`, then re-applies the masks if needed."""

    def step(*replica_grads):
      pairs = list(zip(replica_grads, variables))
      if self._legacy:
        self._optimizer.apply_gradients(pairs, experimental_aggregate_gradients=False)
      else:
        self._optimizer.apply_gradients(pairs, skip_gradients_aggregation=True)

    strategy.extended.call_for_each_replica(step, args=tuple(grads))
    # DNW (slots not following masks) installs its kernels itself after each step.
    if self._reapplies_masks and self.slots_follow_masks:
      for layer in self._layers:
        strategy.extended.update(
            layer.kernel, lambda kernel, mask: mask_ops.mask_in_place([kernel], mask),
            args=(self._masks[layer.name],), group=False)
    return tf.constant(False)

  # ----- the mask update --------------------------------------------------------------

  def update_masks(self, dense_grads: list[tf.Tensor]) -> None:
    """Runs this method's mask update once, now, whatever its schedule says.

    For timing and tools; called in cross-replica context on a built optimizer
    (`build(model.trainable_variables)` or one training step), with one dense
    gradient per kernel of `kernels` (in that order). Fixed masks do not change.
    """
    if isinstance(self.mask_schedule, schedules.Never):
      return
    if len(self._slots) != len(self._layers):
      raise ValueError("update_masks() needs a built optimizer: call "
                       "build(model.trainable_variables) first.")
    self._update_masks(tf.distribute.get_strategy(), dense_grads,
                       tf.identity(self.iterations))

  def _update_masks(self, strategy, dense_grads, step) -> tf.Tensor:
    """Updates every layer's mask on every device, then the schedule's state."""
    context = self._update_context(step)
    for layer, dense_grad in zip(self._layers, dense_grads):
      strategy.extended.update(
          self._masks[layer.name],
          functools.partial(self._update_layer, layer.name, context, step),
          args=(layer.kernel, self._followed_slots(layer.name), dense_grad,
                self._layer_state(layer.name)), group=False)
    schedule_state = self._schedule_state()
    if schedule_state is not None:
      strategy.extended.update(
          schedule_state, mask_ops.assign,
          args=(self.mask_schedule.state_after_update(step),), group=False)
    return tf.constant(True)

  def _update_context(self, step: tf.Tensor) -> Any:
    """What every layer's update needs that does not depend on the layer or device."""
    del step

  def _layer_state(self, layer_name: str) -> dict[str, tf.Variable]:
    """Method variables of one layer that its update reads (passed per device)."""
    del layer_name
    return {}

  def _update_layer(self, layer_name, context, step, mask, kernel, slots, dense_grad,
                    state) -> None:
    """Keeps the top `_saliency` at the layer's sparsity (one device's copies)."""
    del context, step
    weights = tf.convert_to_tensor(kernel)
    new_mask = mask_updates.keep_top_at_sparsity(
        self.ops, self.selection,
        self._saliency(self.ops, weights, tf.cast(dense_grad, weights.dtype), state),
        self.layer_sparsities[layer_name], self.layer_blocks[layer_name])
    mask_ops.install_mask(mask, kernel, new_mask, weights, slots)

  def _saliency(self, ops, weights, dense_grad, state):
    """Which connections a one-shot or per-step selection keeps (highest first).

    Like every score, written once for both Keras implementations against the array
    namespace `ops` (see `rigl.array_ops`).
    """
    raise NotImplementedError(f"{type(self).__name__} selects no masks.")



class HostUpdatePlan:
  """Decides on the host which calls of a sparse optimizer update masks, and keeps the
  step counter there, so that a training loop can call a separately compiled update
  step and never wait for the device to learn the step.

  Exact: the decision is the schedule's own (`is_update_step` on NumPy) at the step the
  compiled step would test (the counter after the optimizer step, or before it when the
  update replaces the step). An ordinary call advances the counter by one (a loss
  scaler that skips a step advances it too); after an update call, which may or may not
  advance it (RigL's does not), the counter and the schedule's state are read back from
  the optimizer, once per update.
  """

  def __init__(self, optimizer: SparseOptimizer):
    self._optimizer = optimizer
    self._schedule = optimizer.mask_schedule
    self._offset = 0 if optimizer.update_replaces_step else 1
    # False when the schedule never changes masks (dense, fixed masks).
    self.updates_ever = not isinstance(self._schedule, schedules.Never) or isinstance(
        self._schedule, schedules.EveryStep)
    self.refresh()

  def refresh(self) -> None:
    """Reads the step counter and the schedule's state from the optimizer."""
    variable = self._optimizer._schedule_state()  # pylint: disable=protected-access
    self._state = None if variable is None else variable.numpy()
    self.iterations = int(self._optimizer.iterations.numpy())

  def update_due(self) -> bool:
    """Whether the next call updates masks."""
    return self.updates_ever and bool(self._schedule.is_update_step(
        self.iterations + self._offset, self._state, ops=array_ops.NUMPY))

  def called(self, updated: bool) -> None:
    """Accounts for one call, which updated masks or not."""
    if updated:
      self.refresh()
    else:
      self.iterations += 1


class DynamicSparseOptimizer(SparseOptimizer):
  """The shared drop/grow mask update (SET's structure; Evci et al., 2020, Alg. 1).

  At each update step every layer drops its `n_prune = int(n_active * alpha_t)`
  smallest-magnitude active weights and grows the same number of connections with the
  highest grow score among those not kept. Connections dropped and regrown in the same
  update keep their weight and optimizer slots; new ones get `grow_init` values and
  zeroed slots. By default the update runs after the optimizer step, on the
  post-step weights and step counter.

  Args:
    schedule: mask-update timing and drop fraction.
    grow_init: initial value of new connections (see `rigl.grow_init`).
    Other arguments as in `SparseOptimizer`.
  """

  # Whether every regrown connection counts as new, even one dropped in the same update.
  reinit_when_same: ClassVar[bool] = False
  allows_gradient_grow_init: ClassVar[bool] = False

  def __init__(self, optimizer, model, sparsity=None, *,
               schedule: schedules.MaskUpdateSchedule | None = None,
               grow_init: str = grow_init_lib.ZEROS, **kwargs):
    self.schedule = schedule or schedules.MaskUpdateSchedule()
    self._grow_init = grow_init_lib.parse(grow_init, self.allows_gradient_grow_init)
    self.grow_init = grow_init
    super().__init__(optimizer, model, sparsity, **kwargs)

  @property
  def mask_schedule(self) -> schedules.MaskUpdateSchedule:
    return self.schedule

  def _create_state(self) -> None:
    self._initial_kernels = {}
    if self._grow_init.uses_initial_kernel:
      for layer in self._layers:
        self._initial_kernels[layer.name] = mask_ops.state_variable(
            tf.identity(layer.kernel), f"{layer.name}/initial_kernel")

  def _state_variables(self) -> list[tf.Variable]:
    return list(self._initial_kernels.values())

  @property
  def last_update_step(self) -> tf.Variable:
    return self._last_update_step

  # ----- scores (the parts a method overrides) ----------------------------------------

  def _drop_score(self, ops, kernel, mask, random):
    """|w| plus a little noise; only active weights can be kept."""
    noise = random.normal("drop", ops.shape(kernel), kernel.dtype, stddev=DROP_NOISE_STD)
    return ops.where(mask > 0, ops.abs(kernel * mask) + noise,
                     ops.cast(-np.inf, kernel.dtype))

  def _grow_score(self, ops, kernel, mask, dense_grad, state, random):
    """Higher scores are grown first; subclasses define it."""
    raise NotImplementedError

  def _new_slot_values(self, ops, dense_grad):
    """Value of every optimizer slot at a new connection (0; RigL overrides)."""
    return ops.zeros_like(dense_grad)

  # ----- the update ---------------------------------------------------------------------

  def _update_context(self, step):
    return self.schedule.drop_fraction_at(step)

  def _layer_state(self, layer_name: str) -> dict[str, tf.Variable]:
    if self._grow_init.uses_initial_kernel:
      return {"initial_kernel": self._initial_kernels[layer_name]}
    return {}

  def _update_layer(self, layer_name, context, step, mask, kernel, slots, dense_grad,
                    state):
    """Drops and grows one layer's connections (runs on one device's copies)."""
    weights = tf.convert_to_tensor(kernel)
    update = mask_updates.drop_and_grow(
        self, self.ops, self.selection,
        array_ops.TensorFlowRandom(layer_name, self.seed, step), weights,
        tf.convert_to_tensor(mask), tf.cast(dense_grad, weights.dtype), state,
        drop_fraction=context, block_size=self.layer_blocks[layer_name])
    for variable, values in [(kernel, update.kernel_values)] + [
        (slot, update.slot_values) for slot in slots]:
      mask_ops.assign(variable, mask_updates.rewired(
          self.ops, variable, update.new_connections, values, update.new_mask))
    mask_ops.assign(mask, update.new_mask)
