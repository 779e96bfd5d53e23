"""Every private tf_keras API this project relies on, in one place.

Checked against tf_keras 2.21.0 (TensorFlow 2.21). A tf_keras upgrade that moves or
renames one of these breaks only this module; `keras_compat_test.py` exercises each
function against the installed version. Why each is needed:

- `tf_keras.src.optimizers.utils.filter_empty_gradients` and
  `all_reduce_sum_gradients`: the sparse optimizer's `apply_gradients` replaces the
  base class's, and must drop `None` gradients and all-reduce across replicas exactly
  as tf_keras does before it masks the gradients.
- `tf_keras.src.optimizers.optimizer.CallableList`: an optimizer's `variables` is a
  method on legacy optimizers and a property on current ones; tf_keras' own code calls
  it both ways, so a wrapper must return this list that is also callable.
- `OptimizerV2._create_all_weights`: a legacy optimizer has no public way to create its
  slots ahead of the first step, and no step inside a `tf.function` may create them.
- `Optimizer._var_key`: the key under which a current optimizer indexes its variables
  (it resolves distributed variables to their container, so a replica's variable and
  the model's map to one key).
- `Optimizer._index_dict` and the optimizer's per-variable lists (`momentums`,
  `_velocities`, ...): current optimizers expose no `get_slot`; a variable's slots are
  the entries at its position of those lists.
- `Optimizer._create_iteration_variable`: the constructor's hook creating the step
  counter; an optimizer that forwards `iterations` to the one it wraps must not create
  a second, stale counter (it would be checkpointed).
- `Trackable._no_dependency`: keeps Python containers of layers or variables on an
  optimizer without making them checkpoint dependencies.
- `Layer._flatten_layers`: every nested layer of a model, including layers of nested
  models and layers held in attributes; `Model.layers` lists only the top level.
- `Model._train_counter`: the batches run by the current `fit`, which
  `BackupAndRestore` restores with the model.
- `BaseRandomLayer._random_generator._generator`: the `tf.random.Generator` of a random
  layer such as Dropout, which model checkpoints do not include.

Keras 3 (checked against keras 3.15):

- `Layer._flatten_layers`, as in tf_keras, one level at a time (its recursive form
  lists each nested model's layers in reverse).
- `Optimizer._get_variable_index`, `_trainable_variables` and the per-variable state
  lists in its attributes: the slots (momentum, Adam's moments, ...) of a kernel, which
  the sparse optimizer zeroes with the mask.
- `Optimizer._var_key`: the backend-specific key an optimizer indexes a variable by.
- `Trainer.jax_state_sync`: on the JAX backend `fit` keeps the training state outside
  the model's variables until an epoch ends; a callback that reads variables between
  batches must write it back first (as `keras.callbacks.Callback.model` does).

TFLite (TensorFlow 2.21's `tf.lite.Interpreter`):

- `Interpreter._get_ops_details`: the interpreter's nodes (op name, input and output
  tensor indices), including the DELEGATE nodes a delegate such as XNNPACK puts in
  place of the nodes it runs; no public API lists them.
"""

from __future__ import annotations

# This module exists to reach into tf_keras internals.
# pylint: disable=protected-access

from typing import Any, Hashable, Iterable, Sequence

import numpy as np
import tensorflow as tf
import tf_keras
from tf_keras.src.optimizers import optimizer as _optimizer_lib
from tf_keras.src.optimizers import utils as _optimizer_utils

# The tf_keras version the private APIs below were checked against.
CHECKED_TF_KERAS_VERSION = "2.21.0"

# Per-variable lists of a current optimizer that hold no optimizer state: the trained
# variables themselves and the moving averages of the weights (`use_ema`).
_NOT_OPTIMIZER_STATE = frozenset({"_variables", "_model_variables_moving_average"})

GradsAndVars = Sequence[tuple[Any, tf.Variable]]


# ----- optimizers -------------------------------------------------------------------


def filter_empty_gradients(grads_and_vars: Iterable[tuple[Any, tf.Variable]]
                           ) -> list[tuple[Any, tf.Variable]]:
  """`grads_and_vars` without the pairs whose gradient is None, as tf_keras filters.

  Raises tf_keras' error when no variable has a gradient.
  """
  return list(_optimizer_utils.filter_empty_gradients(list(grads_and_vars)))


def all_reduce_sum_gradients(grads_and_vars: GradsAndVars
                             ) -> list[tuple[Any, tf.Variable]]:
  """The gradients summed over replicas, in replica context, as tf_keras sums them."""
  return list(_optimizer_utils.all_reduce_sum_gradients(grads_and_vars))


def callable_list(items: Iterable[Any]) -> list[Any]:
  """A list that returns itself when called, for `variables()` and `variables` alike."""
  return _optimizer_lib.CallableList(items)


def create_legacy_optimizer_weights(optimizer: tf_keras.optimizers.legacy.Optimizer,
                                    var_list: Sequence[tf.Variable]) -> None:
  """Creates a legacy optimizer's step counter, hyperparameters and slots for `var_list`.

  Idempotent: variables that already have slots get no new ones.
  """
  optimizer._create_all_weights(var_list)


def variable_key(optimizer: tf_keras.optimizers.Optimizer,
                 variable: tf.Variable) -> Hashable:
  """The key under which the current `optimizer` indexes `variable`.

  A distributed variable and its per-replica components share one key.
  """
  return optimizer._var_key(variable)


def per_variable_state(optimizer: tf_keras.optimizers.Optimizer,
                       variable: tf.Variable) -> list[tf.Variable]:
  """`variable`'s entry in every per-variable state list of a built current optimizer.

  Current optimizers keep each kind of state (SGD's `momentums`, Adam's `_momentums`
  and `_velocities`, Adafactor's factored moments, ...) in a list aligned with their
  variable index. Lists are taken in attribute-name order; empty when `variable` is not
  indexed (not built for it, or not a current optimizer).
  """
  index_dict = getattr(optimizer, "_index_dict", {})
  index = index_dict.get(variable_key(optimizer, variable)) if index_dict else None
  if index is None:
    return []
  state = []
  for name, value in sorted(vars(optimizer).items()):
    if (name in _NOT_OPTIMIZER_STATE or not isinstance(value, list)
        or len(value) != len(index_dict)):
      continue
    if all(isinstance(entry, tf.Variable) for entry in value):
      state.append(value[index])
  return state


def untracked(trackable: tf.Module | tf_keras.optimizers.Optimizer, value: Any) -> Any:
  """`value` wrapped so that assigning it to an attribute of `trackable` is not tracked.

  Containers of layers or variables assigned this way are no checkpoint dependencies.
  """
  return trackable._no_dependency(value)


class ForwardingIterationsOptimizer(tf_keras.optimizers.Optimizer):
  """Base of an optimizer whose step counter is another optimizer's.

  tf_keras' constructor creates a step counter of its own; this base creates none.
  Subclasses must define `iterations` (getter and setter) forwarding to the optimizer
  that owns the counter.
  """

  def _create_iteration_variable(self):
    """Creates no step counter (see the class docstring)."""


# ----- models and layers ------------------------------------------------------------


def all_layers(model: tf_keras.layers.Layer) -> list[tf_keras.layers.Layer]:
  """Every layer nested in `model` (not `model` itself), depth first, each once.

  Includes the layers of nested models and layers held in attributes, which
  `Model.layers` does not list. Takes a model of either Keras; the order is the
  model's (a nested model's layers follow it in their own order).
  """
  import keras  # pylint: disable=import-outside-toplevel

  if not isinstance(model, keras.layers.Layer):
    return list(model._flatten_layers(include_self=False, recursive=True))
  # Keras 3's recursive `_flatten_layers` lists each nested model's layers reversed.
  layers, seen = [], set()

  def visit(layer):
    for child in layer._flatten_layers(include_self=False, recursive=False):
      if id(child) not in seen:
        seen.add(id(child))
        layers.append(child)
        visit(child)

  visit(model)
  return layers


def train_counter(model: tf_keras.Model) -> tf.Variable:
  """The counter of training batches run by `model`'s current `fit`."""
  return model._train_counter


def layer_random_generator(layer: tf.Module) -> tf.random.Generator | None:
  """The `tf.random.Generator` a random layer (Dropout, ...) draws from, if any.

  Layers use one only with `tf_keras.backend.experimental.enable_tf_random_generator()`.
  """
  random_generator = getattr(layer, "_random_generator", None)
  generator = getattr(random_generator, "_generator", None)
  return generator if isinstance(generator, tf.random.Generator) else None


# ----- Keras 3 (keras 3.x, TensorFlow 2.21's own tf.keras) --------------------------
# Private attributes of Keras 3 optimizers that are not optimizer state.
_NOT_KERAS3_OPTIMIZER_STATE = frozenset({
    "_variables", "_trainable_variables", "_model_variables_moving_average",
    "_accumulated_gradients"})


def keras3_per_variable_state(optimizer, variable) -> list:
  """`variable`'s entry in every per-variable state list of a built Keras 3 optimizer.

  Keras 3 optimizers keep each kind of state (SGD's `momentums`, Adam's `_momentums`
  and `_velocities`, ...) in a list aligned with their variable index; lists are taken
  in attribute-name order.
  """
  import keras  # pylint: disable=import-outside-toplevel

  index = optimizer._get_variable_index(variable)
  count = len(optimizer._trainable_variables)
  state = []
  for name, value in sorted(vars(optimizer).items()):
    if (name in _NOT_KERAS3_OPTIMIZER_STATE or not isinstance(value, list)
        or len(value) != count):
      continue
    if all(isinstance(entry, keras.Variable) for entry in value):
      state.append(value[index])
  return state


def keras3_var_key(optimizer, variable) -> Any:
  """The key under which a Keras 3 optimizer indexes `variable` (backend-specific)."""
  return optimizer._var_key(variable)


def keras3_synced_model(model):
  """`model`, its variables holding the current training state (Keras 3, any backend).

  Only JAX's `fit` holds state apart from the variables between batches; this writes
  it back, as `keras.callbacks.Callback.model` does for Keras' own callbacks.
  """
  sync = getattr(model, "jax_state_sync", None)
  if sync is not None:
    sync()
  return model


def to_numpy(value: Any) -> np.ndarray:
  """The value of a variable or tensor of either Keras (tf_keras or Keras 3) in NumPy.

  Keras 3 variables are read with `keras.ops.convert_to_numpy`, which knows each backend.
  """
  import keras  # pylint: disable=import-outside-toplevel

  if isinstance(value, keras.Variable):
    return keras.ops.convert_to_numpy(value)
  return np.asarray(value)


# ----- TFLite ---------------------------------------------------------------------------


def tflite_nodes(interpreter: tf.lite.Interpreter) -> list[dict[str, Any]]:
  """Every node of an interpreter's graph: `op_name`, `inputs`, `outputs` (indices)."""
  return interpreter._get_ops_details()
