"""Which kernels of a Keras model are sparsified, and their masks' starting values."""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping, Sequence, Union

import keras
import numpy as np
import tensorflow as tf
import tf_keras

from rigl import keras_compat
from rigl import sparsity as sparsity_lib
from rigl import stateless_random

# Conv2D and Dense of either Keras: tf_keras (Keras 2) and Keras 3.
DEFAULT_LAYER_TYPES = (tf_keras.layers.Conv2D, tf_keras.layers.Dense,
                       keras.layers.Conv2D, keras.layers.Dense)
# Depthwise kernels are never sparsified (a depthwise filter has one input channel).
NEVER_SPARSIFIED = (tf_keras.layers.DepthwiseConv2D, keras.layers.DepthwiseConv2D)

LayerPredicate = Callable[[tf_keras.layers.Layer], bool]


@dataclasses.dataclass(frozen=True)
class KernelSelector:
  """Which layers' `kernel`s are sparsified: those meeting every given condition.

  Depthwise convolutions are never selected, whatever the conditions.

  Attributes:
    layer_types: layer classes (subclasses included) whose kernels may be sparsified.
    name_pattern: a regular expression searched in the layer name (`re.search`; anchor
      it with `^...$` to match whole names), or None for any name.
    predicate: `predicate(layer) -> bool`, or None for any layer.
  """
  layer_types: tuple[type, ...] = DEFAULT_LAYER_TYPES
  name_pattern: str | None = None
  predicate: LayerPredicate | None = None

  def __post_init__(self):
    object.__setattr__(self, "layer_types", tuple(self.layer_types))
    if self.name_pattern is not None:
      re.compile(self.name_pattern)  # An invalid pattern fails here, not mid-search.

  def selects(self, layer: tf_keras.layers.Layer) -> bool:
    if not isinstance(layer, self.layer_types) or isinstance(layer, NEVER_SPARSIFIED):
      return False
    if self.name_pattern is not None and not re.search(self.name_pattern, layer.name):
      return False
    return self.predicate is None or bool(self.predicate(layer))


# What `select` arguments accept: a selector, layer classes, or a predicate on layers
# of the default types.
Selection = Union[KernelSelector, type, Sequence[type], LayerPredicate, None]


def as_selector(select: Selection) -> KernelSelector:
  """The `KernelSelector` that a `select` argument stands for (None: the default)."""
  if select is None:
    return KernelSelector()
  if isinstance(select, KernelSelector):
    return select
  if isinstance(select, type):
    return KernelSelector(layer_types=(select,))
  if callable(select):
    return KernelSelector(predicate=select)
  if (isinstance(select, (list, tuple)) and select
      and all(isinstance(item, type) for item in select)):
    return KernelSelector(layer_types=tuple(select))
  raise TypeError("`select` must be a KernelSelector, layer classes or a predicate on "
                  f"layers; got {select!r}.")


@dataclasses.dataclass(frozen=True)
class LayerKernel:
  """A sparsifiable layer's name and kernel variable."""
  name: str
  kernel: tf.Variable

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(int(dim) for dim in self.kernel.shape)


def find_kernels(model: tf_keras.Model, select: Selection = None) -> list[LayerKernel]:
  """The kernels of the layers `select` picks in a built model, in model order.

  Nested models and layers are searched recursively. `select` is anything
  `as_selector` accepts; by default every Conv2D and Dense kernel. Layer names must be
  unique, since sparsities and masks are keyed by them.
  """
  selector = as_selector(select)
  if not model.built:
    raise ValueError("The model must be built (called on data or given an input shape) "
                     "before its kernels can be sparsified.")
  kernels, seen = [], set()
  for layer in keras_compat.all_layers(model):
    if not selector.selects(layer):
      continue
    if getattr(layer, "kernel", None) is None:
      raise ValueError(f"Layer {layer.name!r} was selected for sparsification but has no "
                       "`kernel` variable.")
    if layer.name in seen:
      raise ValueError(f"Two sparsifiable layers are named {layer.name!r}; layer names "
                       "must be unique.")
    seen.add(layer.name)
    kernels.append(LayerKernel(layer.name, layer.kernel))
  return kernels


def initial_mask(name: str, shape: Sequence[int], sparsity: float, seed: int,
                 block_size: int = 1) -> np.ndarray:
  """A random mask with exactly floor(sparsity * size) zeros, seeded per layer.

  With `block_size` > 1, in blocks of that many rows (see `sparsity.random_mask`).
  """
  rng = np.random.default_rng([int(seed) % 2**31, stateless_random.stable_hash(name)])
  return sparsity_lib.random_mask(shape, sparsity, rng, block_size=block_size)


def global_sparsity(model: tf_keras.Model | keras.Model,
                    sparsified: Mapping[str, tf.Variable | keras.Variable],
                    masks: Mapping[str, tf.Variable | keras.Variable] | None = None
                    ) -> float:
  """The share of zeros over the model's Conv2D and Dense kernels together.

  Models, kernels and masks of either Keras (tf_keras or Keras 3, any backend).

  `sparsified` adds the kernels, by layer name, that a sparse optimizer masks (of any
  layer type). With `masks`, a masked kernel counts its mask's zeros (connections
  grown with value 0 are active); without, every kernel counts its zero weights (what
  a checkpoint or an exported model shows).
  """
  kernels = {layer.name: layer.kernel for layer in find_kernels(model)}
  kernels.update(sparsified)
  masks = masks or {}
  zeros = total = 0
  for name, kernel in kernels.items():
    values = keras_compat.to_numpy(masks[name] if name in masks else kernel)
    zeros += int(np.count_nonzero(values == 0))
    total += values.size
  return zeros / total if total else 0.0
