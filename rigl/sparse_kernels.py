"""Which kernels of a Keras model are sparsified, and their masks' starting values."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from rigl import sparsity as sparsity_lib
from rigl import stateless_random

DEFAULT_LAYER_TYPES = (tf_keras.layers.Conv2D, tf_keras.layers.Dense)
# Depthwise kernels are never sparsified (a depthwise filter has one input channel).
NEVER_SPARSIFIED = (tf_keras.layers.DepthwiseConv2D,)


@dataclasses.dataclass(frozen=True)
class LayerKernel:
  """A sparsifiable layer's name and kernel variable."""
  name: str
  kernel: tf.Variable

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(self.kernel.shape.as_list())


def find_kernels(model: tf_keras.Model,
                 layer_types: Sequence[type] = DEFAULT_LAYER_TYPES) -> list[LayerKernel]:
  """The kernels of `layer_types` layers of a built model, in model order.

  Nested models and layers are searched recursively. Layer names must be unique,
  since sparsities and masks are keyed by them.
  """
  if not model.built:
    raise ValueError("The model must be built (called on data or given an input shape) "
                     "before its kernels can be sparsified.")
  kernels, seen = [], set()
  for layer in model._flatten_layers(include_self=False, recursive=True):  # pylint: disable=protected-access
    if not isinstance(layer, tuple(layer_types)) or isinstance(layer, NEVER_SPARSIFIED):
      continue
    if layer.name in seen:
      raise ValueError(f"Two sparsifiable layers are named {layer.name!r}; layer names "
                       "must be unique.")
    seen.add(layer.name)
    kernels.append(LayerKernel(layer.name, layer.kernel))
  return kernels


def initial_mask(name: str, shape: Sequence[int], sparsity: float, seed: int) -> np.ndarray:
  """A random mask with exactly floor(sparsity * size) zeros, seeded per layer."""
  rng = np.random.default_rng([int(seed) % 2**31, stateless_random.stable_hash(name)])
  return sparsity_lib.random_mask(shape, sparsity, rng)
