"""The training methods: each overrides only what differs from its parent.

| training_method | class           | drop         | grow                        | when                  |
| baseline        | DenseTraining   | -            | -                           | no masks              |
| scratch         | Static   | -            | -                           | fixed random mask     |
| set             | SET       | smallest |w| | uniform random              | after the step        |
| static          | StaticReinit    | smallest |w| | the same positions, re-init | after the step        |
| momentum        | SNFS  | smallest |w| | |EMA of dense gradient|     | after the step (SNFS) |
| rigl            | RigL      | smallest |w| | |dense gradient|            | instead of the step   |
| snip            | SNIP      | -            | -                           | first batch, no step  |
| dnw             | DNW       | -            | -                           | top-|w| after each step |
| prune           | GradualPruning     | -            | -                           | cubic schedule (tfmot) |
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from rigl import grow_init as grow_init_lib
from rigl import mask_ops
from rigl import schedules
from rigl import kernel_selection
from rigl import sparsity as sparsity_lib
from rigl.sparse_optimizer import DynamicSparseOptimizer
from rigl.sparse_optimizer import SparseOptimizer

# Exponent of the gradual-pruning sparsity schedule (Zhu & Gupta, 2017).
PRUNING_POWER = 3


class DenseTraining(SparseOptimizer):
  """Dense training (`baseline`): no masks; the wrapped optimizer does everything."""
  sparsifies = False


class Static(SparseOptimizer):
  """A fixed random mask for the whole run (`scratch`, the paper's "Static")."""


class SET(DynamicSparseOptimizer):
  """SET (Mocanu et al., 2018): grows uniformly random connections."""

  def _grow_score(self, kernel, mask, dense_grad, state, seed_fn):
    return tf.random.stateless_uniform(tf.shape(kernel), seed_fn("grow"),
                                       dtype=kernel.dtype)


class StaticReinit(DynamicSparseOptimizer):
  """`static`: re-initialises the weakest connections; the mask never changes."""
  reinit_when_same = True

  def _grow_score(self, kernel, mask, dense_grad, state, seed_fn):
    return tf.cast(mask, kernel.dtype)


class SNFS(DynamicSparseOptimizer):
  """SNFS without redistribution (`momentum`; Dettmers & Zettlemoyer, 2019).

  Grows where the exponential moving average of the dense gradient is largest. The
  average (decay `s_momentum`, zero-initialised, not debiased) is updated on every
  step, before the optimizer step.
  """

  def __init__(self, optimizer, model, sparsity=None, *, s_momentum: float = 0.9,
               **kwargs):
    if not 0.0 <= s_momentum <= 1.0:
      raise ValueError(f"`s_momentum` must be in [0, 1]; got {s_momentum}.")
    self.s_momentum = float(s_momentum)
    super().__init__(optimizer, model, sparsity, **kwargs)

  def _create_state(self) -> None:
    super()._create_state()
    self._grad_ema = {layer.name: mask_ops.state_variable(tf.zeros(layer.shape, layer.kernel.dtype),
                                                  f"{layer.name}/grad_ema")
                      for layer in self._layers}

  def _state_variables(self):
    return super()._state_variables() + list(self._grad_ema.values())

  @property
  def gradient_averages(self) -> dict[str, tf.Variable]:
    return dict(self._grad_ema)

  def _layer_state(self, layer_name):
    return dict(super()._layer_state(layer_name), grad_ema=self._grad_ema[layer_name])

  def _before_step(self, strategy, dense_grads) -> None:
    decay = self.s_momentum
    for layer, grad in zip(self._layers, dense_grads):
      strategy.extended.update(
          self._grad_ema[layer.name],
          lambda ema, g: mask_ops.assign(ema, decay * ema + (1.0 - decay) * g),
          args=(grad,), group=False)

  def _grow_score(self, kernel, mask, dense_grad, state, seed_fn):
    return tf.abs(tf.convert_to_tensor(state["grad_ema"]))


class RigL(DynamicSparseOptimizer):
  """RigL (Evci et al., 2020): grows where the dense gradient is largest.

  On a mask-update step the masks change *instead of* the optimizer step, using the
  current weights and this batch's dense gradient; the step counter does not advance.
  New connections' slots are set to `gradient * rigl_acc_scale`.
  """
  allows_gradient_grow_init = True

  def __init__(self, optimizer, model, sparsity=None, *, rigl_acc_scale: float = 0.0,
               **kwargs):
    self.rigl_acc_scale = float(rigl_acc_scale)
    super().__init__(optimizer, model, sparsity, **kwargs)

  def _grow_score(self, kernel, mask, dense_grad, state, seed_fn):
    return tf.abs(dense_grad)

  def _new_slot_values(self, dense_grad):
    return dense_grad * self.rigl_acc_scale

  def _apply_sparse(self, strategy, grads, dense_grads, variables):
    step = tf.identity(self.iterations)
    is_update = self.schedule.is_update_step(step, self._last_update_step)
    tf.cond(is_update,
            lambda: self._update_masks(strategy, dense_grads, step),
            lambda: self._optimizer_step(strategy, grads, variables))


class SNIP(SparseOptimizer):
  """SNIP (Lee et al., 2019): one-shot pruning by |gradient * weight| on batch 0.

  The first call of `apply_gradients` keeps, per layer, the connections with the
  largest saliency (the layer's sparsity from the distribution); it takes no optimizer
  step. Training then proceeds with the fixed mask.
  """
  starts_dense = True

  def _create_state(self) -> None:
    self._is_snipped = mask_ops.state_variable(False, "is_snipped", tf.bool)

  def _state_variables(self):
    return [self._is_snipped]

  @property
  def is_snipped(self) -> tf.Variable:
    return self._is_snipped

  def _apply_sparse(self, strategy, grads, dense_grads, variables):
    should_snip = tf.logical_and(tf.equal(self.iterations, 0),
                                 tf.logical_not(self._is_snipped))
    tf.cond(should_snip, lambda: self._snip(strategy, dense_grads),
            lambda: self._optimizer_step(strategy, grads, variables))

  def _snip(self, strategy, dense_grads):
    for layer, grad in zip(self._layers, dense_grads):
      sparsity = self.layer_sparsities[layer.name]

      def snip_layer(mask, kernel, grad, slots, sparsity=sparsity):
        weights = tf.convert_to_tensor(kernel)
        new_mask = mask_ops.keep_top_at_sparsity(
            tf.abs(tf.cast(grad, weights.dtype) * weights), sparsity)
        mask_ops.install_mask(mask, kernel, new_mask, weights, slots)

      strategy.extended.update(self._masks[layer.name], snip_layer,
                                   args=(layer.kernel, grad, self._slots[layer.name]),
                                   group=False)
    strategy.extended.update(self._is_snipped, mask_ops.assign, args=(True,),
                                 group=False)
    return tf.constant(True)


class DNW(SparseOptimizer):
  """DNW (Wortsman et al., 2019): dense weights, sparse forward pass.

  The optimizer updates a dense copy of every kernel with the straight-through (dense)
  gradient; after every step the mask becomes the layer's top-|w| and the kernel the
  masked dense copy.
  """
  starts_dense = True
  slots_follow_masks = False

  def _create_state(self) -> None:
    self._dense_kernels = {layer.name: mask_ops.state_variable(tf.identity(layer.kernel),
                                                       f"{layer.name}/dense_kernel")
                           for layer in self._layers}

  def _state_variables(self):
    return list(self._dense_kernels.values())

  def _apply_sparse(self, strategy, grads, dense_grads, variables):
    dense_of = {self._var_key(layer.kernel): grad
                for layer, grad in zip(self._layers, dense_grads)}
    grads = [dense_of.get(self._var_key(v), g) for g, v in zip(grads, variables)]
    for layer in self._layers:
      strategy.extended.update(layer.kernel, mask_ops.assign,
                                   args=(self._dense_kernels[layer.name],), group=False)
    self._optimizer_step(strategy, grads, variables, reapply_masks=False)
    for layer in self._layers:
      sparsity = self.layer_sparsities[layer.name]

      def select_top(mask, kernel, dense_kernel, sparsity=sparsity):
        weights = tf.convert_to_tensor(kernel)
        new_mask = mask_ops.keep_top_at_sparsity(tf.abs(weights), sparsity)
        mask_ops.assign(dense_kernel, weights)
        mask_ops.install_mask(mask, kernel, new_mask, weights)

      strategy.extended.update(self._masks[layer.name], select_top,
                                   args=(layer.kernel, self._dense_kernels[layer.name]),
                                   group=False)


class GradualPruning(SparseOptimizer):
  """Gradual magnitude pruning (`prune`; Zhu & Gupta, 2017) on tfmot's schedule.

  Each layer's sparsity follows tfmot's `PolynomialDecay` from 0 to the layer's target
  (cubic); every `pruning_frequency` steps in [begin, end], after the optimizer step,
  each layer keeps its round(n * (1 - s_t)) largest weights (tfmot's rule). With
  `threshold_decay` > 0 the magnitude threshold is smoothed over updates, as TF1 did.
  """
  starts_dense = True

  def __init__(self, optimizer, model, sparsity=None, *, begin_step: int = 0,
               end_step: int = 10000, pruning_frequency: int = 100,
               threshold_decay: float = 0.0, **kwargs):
    if not 0.0 <= threshold_decay < 1.0:
      raise ValueError(f"`threshold_decay` must be in [0, 1); got {threshold_decay}.")
    if pruning_frequency <= 0:
      raise ValueError(f"`pruning_frequency` must be > 0; got {pruning_frequency}.")
    if not 0 <= begin_step < end_step:
      raise ValueError(f"Pruning needs 0 <= begin_step < end_step; got "
                       f"{begin_step}..{end_step}.")
    self.begin_step, self.end_step = int(begin_step), int(end_step)
    self.pruning_frequency = int(pruning_frequency)
    self.threshold_decay = float(threshold_decay)
    super().__init__(optimizer, model, sparsity, **kwargs)

  def _create_state(self) -> None:
    self._pruning_schedules = self._no_dependency({
        name: tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=target, begin_step=self.begin_step,
            end_step=self.end_step, power=PRUNING_POWER, frequency=self.pruning_frequency)
        for name, target in self.layer_sparsities.items()})
    self._thresholds = {layer.name: mask_ops.state_variable(0.0, f"{layer.name}/threshold",
                                                    layer.kernel.dtype)
                        for layer in self._layers}

  def _state_variables(self):
    return list(self._thresholds.values())

  def target_sparsity_at(self, layer_name: str, step) -> tf.Tensor:
    """The scheduled sparsity of `layer_name` at `step`."""
    return self._pruning_schedules[layer_name](step)[1]

  def _apply_sparse(self, strategy, grads, dense_grads, variables):
    self._optimizer_step(strategy, grads, variables)
    if not self._layers:
      return
    step = tf.identity(self.iterations)
    should_prune = self._pruning_schedules[self._layers[0].name](step)[0]
    tf.cond(should_prune, lambda: self._prune(strategy, step),
            lambda: tf.constant(False))

  def update_masks(self, dense_grads):
    del dense_grads
    self._prune(tf.distribute.get_strategy(), tf.identity(self.iterations))

  def _prune(self, strategy, step):
    decay = self.threshold_decay
    for layer in self._layers:
      sparsity = self.target_sparsity_at(layer.name, step)

      def prune_layer(mask, kernel, threshold, slots, sparsity=sparsity):
        magnitudes = tf.abs(tf.convert_to_tensor(kernel))
        size = tf.size(magnitudes)
        keep = tf.maximum(tf.cast(tf.round(
            tf.cast(size, tf.float32) * (1.0 - tf.cast(sparsity, tf.float32))), tf.int32), 1)
        new_threshold = (decay * tf.convert_to_tensor(threshold) +
                         (1.0 - decay) * mask_ops.kth_largest(magnitudes, keep))
        new_mask = tf.cast(magnitudes >= new_threshold, magnitudes.dtype)
        mask_ops.assign(threshold, new_threshold)
        mask_ops.install_mask(mask, kernel, new_mask, slots=slots)

      strategy.extended.update(self._masks[layer.name], prune_layer,
                                   args=(layer.kernel, self._thresholds[layer.name],
                                         self._slots[layer.name]), group=False)
    return tf.constant(True)


TRAINING_METHODS = {
    "baseline": DenseTraining,
    "scratch": Static,
    "set": SET,
    "static": StaticReinit,
    "momentum": SNFS,
    "rigl": RigL,
    "snip": SNIP,
    "dnw": DNW,
    "prune": GradualPruning,
}


def create_sparse_optimizer(training_method: str, optimizer: tf_keras.optimizers.Optimizer,
                            model: tf_keras.Model,
                            sparsity: sparsity_lib.SparsityConfig | None = None, *,
                            schedule: schedules.MaskUpdateSchedule | None = None,
                            grow_init: str = grow_init_lib.ZEROS,
                            s_momentum: float = 0.9, rigl_acc_scale: float = 0.0,
                            pruning_begin_step: int = 0, pruning_end_step: int = 10000,
                            pruning_frequency: int = 100, threshold_decay: float = 0.0,
                            seed: int = 0,
                            select: kernel_selection.Selection = None) -> SparseOptimizer:
  """Builds the sparse optimizer of `training_method` from flag-style settings.

  Settings a method does not use are ignored, as in the original scripts. `select`
  chooses the sparsified kernels (see `SparseOptimizer`).
  """
  if training_method not in TRAINING_METHODS:
    raise ValueError(f"Unknown `training_method` {training_method!r}; allowed values: "
                     f"{', '.join(TRAINING_METHODS)}.")
  cls = TRAINING_METHODS[training_method]
  kwargs = {"seed": seed, "select": select}
  if issubclass(cls, DynamicSparseOptimizer):
    kwargs.update(schedule=schedule, grow_init=grow_init)
  if cls is SNFS:
    kwargs["s_momentum"] = s_momentum
  if cls is RigL:
    kwargs["rigl_acc_scale"] = rigl_acc_scale
  if cls is GradualPruning:
    kwargs.update(begin_step=pruning_begin_step, end_step=pruning_end_step,
                  pruning_frequency=pruning_frequency, threshold_decay=threshold_decay)
  return cls(optimizer, model, sparsity, **kwargs)


def sparsify(model: tf_keras.Model, optimizer: tf_keras.optimizers.Optimizer,
             method: str = "rigl", sparsity: float | sparsity_lib.SparsityConfig = 0.9,
             distribution: str = sparsity_lib.ERDOS_RENYI_KERNEL, *,
             schedule: schedules.MaskUpdateSchedule | None = None,
             select: kernel_selection.Selection = None, seed: int = 0,
             **method_options) -> SparseOptimizer:
  """Wraps `optimizer` so that it trains a sparse version of `model` with `method`.

  Zeroes the masked weights of `model` at once; compile the model with the returned
  optimizer and train it with `model.fit` as usual.

  Args:
    model: a built tf_keras model (Sequential, functional or subclassed).
    optimizer: the tf_keras optimizer that updates the weights.
    method: a key of `TRAINING_METHODS` (`rigl`, `set`, `momentum`, `static`, ...).
    sparsity: the overall target sparsity, or a full `SparsityConfig` (which then also
      gives the distribution and layer exceptions).
    distribution: how `sparsity` is spread over layers (`sparsity.DISTRIBUTIONS`).
    schedule: mask-update timing and drop fraction of the dynamic methods.
    select: which layers' kernels are sparsified (see `SparseOptimizer`).
    seed: seeds the initial masks and every random draw of the method.
    **method_options: further keywords of `create_sparse_optimizer` (`grow_init`,
      `rigl_acc_scale`, `s_momentum`, `pruning_begin_step`, ...).

  Returns:
    The sparse optimizer; `.masks` and `.layer_sparsities` are keyed by layer name.
  """
  if not isinstance(sparsity, sparsity_lib.SparsityConfig):
    sparsity = sparsity_lib.SparsityConfig(sparsity=sparsity, distribution=distribution)
  return create_sparse_optimizer(method, optimizer, model, sparsity, schedule=schedule,
                                 select=select, seed=seed, **method_options)
