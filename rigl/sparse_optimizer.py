"""The sparse optimizer: wraps any tf_keras optimizer and owns the model's masks.

`SparseOptimizer` keeps one non-trainable mask per sparsified kernel, keeps masked
weights exactly zero in the kernels, and exposes hooks that each training method
overrides. Masked weights stay zero because gradients are masked and every mask change
zeroes the kernel and the optimizer slots where the mask is 0: the optimizers of
`optimizer_slots.ZERO_PRESERVING_OPTIMIZERS` then leave them at zero by themselves; for
any other optimizer the masks are re-applied to the kernels after every step.

The hooks:

- `_apply_sparse(strategy, grads, variables, dense_grads)` decides what happens on
  one call of `apply_gradients` (by default: one optimizer step).
- `DynamicSparseOptimizer` adds the shared drop/grow update of SET, SNFS and RigL;
  subclasses override only the grow score (and RigL the timing).

Distribution: gradients are all-reduced once, in replica context, then the update runs
in cross-replica context (`merge_call`), where every variable is changed through
`strategy.extended.update`. The per-device update functions read only local copies and
stateless random numbers seeded by (layer name, step), so every replica computes the
same masks without further communication.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf
import tf_keras
from tf_keras.src.optimizers import utils as optimizer_utils
from tf_keras.src.optimizers.optimizer import CallableList

from rigl import grow_init as grow_init_lib
from rigl import mask_ops
from rigl import optimizer_slots
from rigl import schedules
from rigl import kernel_selection
from rigl import sparsity as sparsity_lib
from rigl import stateless_random

# Standard deviation of the noise added to drop scores, to break ties at random.
DROP_NOISE_STD = 1e-5


class SparseOptimizer(tf_keras.optimizers.Optimizer):
  """Trains a model with fixed random masks (the paper's Static, `scratch`).

  The base of every sparse method: wraps `optimizer`, creates a mask per sparsified
  kernel of `model`, zeroes the masked weights, and keeps them at zero.

  Args:
    optimizer: the tf_keras optimizer that updates the weights (current or legacy).
    model: a built Keras model whose selected kernels are sparsified.
    sparsity: per-layer sparsity settings (target, distribution, exceptions).
    seed: seeds the initial masks and offsets every stateless random draw.
    select: which layers' kernels are sparsified: a `rigl.KernelSelector`, layer
      classes, or a predicate on layers (see `kernel_selection.as_selector`); by default
      every `Conv2D` and `Dense` kernel.
    name: the optimizer's name.
  """

  # Methods that choose their own masks start from all-ones masks.
  starts_dense = False
  # False for dense training, which keeps no masks at all.
  sparsifies = True
  # Whether the optimizer slots of masked weights are kept at zero with them (False
  # for DNW, whose optimizer trains dense copies of the kernels).
  slots_follow_masks = True

  def __init__(self, optimizer: tf_keras.optimizers.Optimizer, model: tf_keras.Model,
               sparsity: sparsity_lib.SparsityConfig | None = None, *, seed: int = 0,
               select: kernel_selection.Selection = None, name: str | None = None):
    if not isinstance(optimizer, (tf_keras.optimizers.Optimizer,
                                  tf_keras.optimizers.legacy.Optimizer)):
      raise TypeError(f"`optimizer` must be a tf_keras optimizer; got {optimizer!r}.")
    if isinstance(optimizer, SparseOptimizer):
      raise TypeError("A sparse optimizer cannot wrap another sparse optimizer.")
    super().__init__(name=name or type(self).__name__)
    self._optimizer = optimizer
    self._legacy = not isinstance(optimizer, tf_keras.optimizers.Optimizer)
    self.sparsity_config = sparsity or sparsity_lib.SparsityConfig()
    self.seed = int(seed)
    candidates = kernel_selection.find_kernels(model, select)
    shapes = {layer.name: layer.shape for layer in candidates}
    self.layer_sparsities = self._no_dependency(
        self.sparsity_config.layer_sparsities(shapes) if self.sparsifies else {})
    self._layers = self._no_dependency(
        [layer for layer in candidates if layer.name in self.layer_sparsities])
    self._layer_of_variable = self._no_dependency(
        {self._var_key(layer.kernel): layer.name for layer in self._layers})
    self._slots = self._no_dependency({})
    self._masks = {}
    for layer in self._layers:
      self._masks[layer.name] = mask_ops.state_variable(
          self._initial_mask(layer), f"{layer.name}/mask", layer.kernel.dtype)
    # Re-masking kernels after each step costs a multiply per kernel; it is needed only
    # for optimizers that could move a zero weight with zero gradient and slots.
    self._reapplies_masks = not optimizer_slots.preserves_zeros(optimizer)
    self._create_state()
    self.apply_masks()

  # ----- construction ---------------------------------------------------------------

  def _create_iteration_variable(self):
    """The step counter is the wrapped optimizer's (see `iterations`)."""

  def _initial_mask(self, layer: kernel_selection.LayerKernel) -> np.ndarray:
    if self.starts_dense:
      return np.ones(layer.shape, np.float32)
    return kernel_selection.initial_mask(layer.name, layer.shape,
                                       self.layer_sparsities[layer.name], self.seed)

  def _create_state(self) -> None:
    """Creates method-specific variables; called after the masks exist."""
    return None

  # ----- delegation to the wrapped optimizer ------------------------------------------

  @property
  def inner_optimizer(self) -> tf_keras.optimizers.Optimizer:
    return self._optimizer

  @property
  def iterations(self) -> tf.Variable:
    return self._optimizer.iterations

  @iterations.setter
  def iterations(self, variable):
    self._optimizer.iterations = variable

  @property
  def learning_rate(self):
    return self._optimizer.learning_rate

  @learning_rate.setter
  def learning_rate(self, learning_rate):
    self._optimizer.learning_rate = learning_rate

  @property
  def variables(self):
    own = list(self._masks.values()) + self._state_variables()
    # A legacy optimizer's `variables` is a method; the current one's a callable list.
    return CallableList(list(self._optimizer.variables()) + own)

  def _state_variables(self) -> list[tf.Variable]:
    """Method-specific variables, for `variables`."""
    return []

  def build(self, var_list):
    """Creates the wrapped optimizer's slots, so that no step creates variables."""
    if self._legacy:
      self._optimizer._create_all_weights(var_list)  # pylint: disable=protected-access
    else:
      self._optimizer.build(var_list)
    for layer in self._layers:
      if layer.name not in self._slots:
        self._slots[layer.name] = optimizer_slots.slots_of(self._optimizer, layer.kernel)

  def get_config(self):
    return {
        "name": self.name,
        "inner_optimizer": tf_keras.optimizers.serialize(self._optimizer),
        "sparsity": self.sparsity_config.sparsity,
        "distribution": self.sparsity_config.distribution,
        "seed": self.seed,
    }

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
      slots = self._slots.get(layer.name, []) if self.slots_follow_masks else []
      mask_ops.mask_in_place([layer.kernel] + slots, self._masks[layer.name])

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
    grads_and_vars = optimizer_utils.filter_empty_gradients(list(grads_and_vars))
    if tf.distribute.in_cross_replica_context():
      raise ValueError("apply_gradients() must be called in a replica context.")
    variables = [v for _, v in grads_and_vars]
    with tf.init_scope():
      self.build(variables)
    if not skip_gradients_aggregation and kwargs.pop("experimental_aggregate_gradients",
                                                     True):
      grads_and_vars = optimizer_utils.all_reduce_sum_gradients(grads_and_vars)
    dense_grads = {}
    grads = []
    for grad, variable in grads_and_vars:
      layer_name = self._layer_of_variable.get(self._var_key(variable))
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

  def update_masks(self, dense_grads: list[tf.Tensor]) -> None:
    """Runs this method's mask update once, now, whatever its schedule says.

    For timing and tools; called in cross-replica context on a built optimizer
    (`build(model.trainable_variables)` or one training step), with one dense
    gradient per kernel of `kernels` (in that order). Fixed masks do not change.
    """
    del dense_grads

  def _apply_sparse(self, strategy, grads, dense_grads, variables):
    """One step of this method, in cross-replica context. Default: a plain step."""
    del dense_grads
    self._optimizer_step(strategy, grads, variables)

  def _optimizer_step(self, strategy, grads, variables, reapply_masks=True):
    """Runs the wrapped optimizer on `grads`, then re-applies the masks if needed.

    `reapply_masks=False` never re-applies them (DNW installs its own kernels).
    """

    def step(*replica_grads):
      pairs = list(zip(replica_grads, variables))
      if self._legacy:
        self._optimizer.apply_gradients(pairs, experimental_aggregate_gradients=False)
      else:
        self._optimizer.apply_gradients(pairs, skip_gradients_aggregation=True)

    strategy.extended.call_for_each_replica(step, args=tuple(grads))
    if reapply_masks and self._reapplies_masks:
      self._reapply_masks(strategy)
    return tf.constant(False)

  def _reapply_masks(self, strategy) -> None:
    for layer in self._layers:
      strategy.extended.update(
          layer.kernel, lambda kernel, mask: mask_ops.mask_in_place([kernel], mask),
          args=(self._masks[layer.name],), group=False)

  def _seed_fn(self, layer_name: str, step: tf.Tensor):
    return lambda tag: stateless_random.seed(layer_name, tag, self.seed, step)

  def _rewire(self, variables, new_connections, values, new_mask) -> None:
    """Sets every variable to `values` at `new_connections` and 0 off `new_mask`.

    For a kernel and its optimizer slots, on one device's copies.
    """
    for variable in variables:
      rewired = tf.where(new_connections > 0, tf.cast(values, variable.dtype), variable)
      mask_ops.assign(variable, rewired * tf.cast(new_mask, variable.dtype))


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
  reinit_when_same = False
  allows_gradient_grow_init = False

  def __init__(self, optimizer, model, sparsity=None, *,
               schedule: schedules.MaskUpdateSchedule | None = None,
               grow_init: str = grow_init_lib.ZEROS, **kwargs):
    self.schedule = schedule or schedules.MaskUpdateSchedule()
    self.grow_init = grow_init_lib.parse(grow_init, self.allows_gradient_grow_init)
    super().__init__(optimizer, model, sparsity, **kwargs)

  def _create_state(self) -> None:
    self._last_update_step = mask_ops.state_variable(
        tf.constant(-self.schedule.frequency, tf.int64), "last_mask_update_step")
    self._initial_kernels = {}
    if self.grow_init.uses_initial_kernel:
      for layer in self._layers:
        self._initial_kernels[layer.name] = mask_ops.state_variable(
            tf.identity(layer.kernel), f"{layer.name}/initial_kernel")

  def _state_variables(self) -> list[tf.Variable]:
    return [self._last_update_step] + list(self._initial_kernels.values())

  @property
  def last_update_step(self) -> tf.Variable:
    return self._last_update_step

  # ----- scores (the parts a method overrides) ----------------------------------------

  def _drop_score(self, kernel, mask, seed_fn):
    """|w| plus a little noise; only active weights can be kept."""
    noise = tf.random.stateless_normal(tf.shape(kernel), seed_fn("drop"),
                                       stddev=DROP_NOISE_STD, dtype=kernel.dtype)
    return tf.where(mask > 0, tf.abs(kernel * mask) + noise,
                    tf.fill(tf.shape(kernel), tf.constant(-np.inf, kernel.dtype)))

  def _grow_score(self, kernel, mask, dense_grad, state, seed_fn):
    """Higher scores are grown first; subclasses define it."""
    raise NotImplementedError

  def _new_slot_values(self, dense_grad):
    """Value of every optimizer slot at a new connection (0; RigL overrides)."""
    return tf.zeros_like(dense_grad)

  # ----- timing -----------------------------------------------------------------------

  def _apply_sparse(self, strategy, grads, dense_grads, variables):
    """Optimizer step first, then (maybe) a mask update on the post-step weights."""
    self._before_step(strategy, dense_grads)
    self._optimizer_step(strategy, grads, variables)
    step = tf.identity(self.iterations)
    self._maybe_update_masks(strategy, dense_grads, step)

  def _before_step(self, strategy, dense_grads) -> None:
    """Runs before the optimizer step on every step (SNFS's gradient average)."""
    del strategy, dense_grads

  def _maybe_update_masks(self, strategy, dense_grads, step) -> None:
    is_update = self.schedule.is_update_step(step, self._last_update_step)
    tf.cond(is_update,
            lambda: self._update_masks(strategy, dense_grads, step),
            lambda: tf.constant(False))

  # ----- the update ---------------------------------------------------------------------

  def update_masks(self, dense_grads):
    if len(self._slots) != len(self._layers):
      raise ValueError("update_masks() needs a built optimizer: call "
                       "build(model.trainable_variables) first.")
    self._update_masks(tf.distribute.get_strategy(), dense_grads,
                       tf.identity(self.iterations))

  def _update_masks(self, strategy, dense_grads, step):
    drop_fraction = self.schedule.drop_fraction_at(step)
    for layer, dense_grad in zip(self._layers, dense_grads):
      strategy.extended.update(
          self._masks[layer.name],
          functools.partial(self._update_layer, layer.name, drop_fraction, step),
          args=(layer.kernel, self._slots[layer.name], dense_grad,
                self._layer_state(layer.name)), group=False)
    strategy.extended.update(self._last_update_step, mask_ops.assign, args=(step,),
                                 group=False)
    return tf.constant(True)

  def _layer_state(self, layer_name: str) -> dict[str, tf.Variable]:
    """Method variables of one layer that its update reads (passed per device)."""
    if self.grow_init.uses_initial_kernel:
      return {"initial_kernel": self._initial_kernels[layer_name]}
    return {}

  def _update_layer(self, layer_name, drop_fraction, step, mask, kernel, slots,
                    dense_grad, state):
    """Drops and grows one layer's connections (runs on one device's copies)."""
    seed_fn = self._seed_fn(layer_name, step)
    old_mask = tf.convert_to_tensor(mask)
    weights = tf.convert_to_tensor(kernel)
    dense_grad = tf.cast(dense_grad, weights.dtype)
    n_ones = tf.reduce_sum(tf.cast(old_mask, tf.int32))
    # float32 as in the original, so counts match it exactly.
    n_prune = tf.cast(tf.cast(n_ones, tf.float32) * drop_fraction, tf.int32)
    kept, grown = mask_ops.drop_and_grow(
        self._drop_score(weights, old_mask, seed_fn),
        self._grow_score(weights, old_mask, dense_grad, state, seed_fn),
        n_ones - n_prune, n_prune)
    new_connections = grown if self.reinit_when_same else grown * (1.0 - old_mask)
    new_mask = kept + grown
    new_values = grow_init_lib.grow_values(self.grow_init, weights, old_mask, seed_fn,
                                           gradient=dense_grad,
                                           initial_kernel=state.get("initial_kernel"))
    self._rewire([kernel], new_connections, new_values, new_mask)
    self._rewire(slots, new_connections, self._new_slot_values(dense_grad), new_mask)
    mask_ops.assign(mask, new_mask)
