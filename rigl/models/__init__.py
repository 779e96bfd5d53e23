"""Model builders of the published experiments, with the original's layer names.

Every builder returns a plain, built `tf_keras.Model`; sparsity is added by wrapping
its optimizer (see `rigl.SparseOptimizer`). Names follow the TF1 variable scopes
(without the `resnet_model/` prefix, since Keras layer names cannot contain `/`).
"""

from __future__ import annotations

from typing import Callable

import tf_keras

from rigl.models.lenet5 import lenet5
from rigl.models.mnist_fc import mnist_fc
from rigl.models.mobilenet import mobilenet_v1
from rigl.models.mobilenet import mobilenet_v2
from rigl.models.resnet import resnet
from rigl.models.wide_resnet import wide_resnet

ARCHITECTURES: dict[str, Callable[..., tf_keras.Model]] = {
    "resnet50": lambda **kwargs: resnet(depth=50, **kwargs),
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "wrn_22_2": lambda **kwargs: wide_resnet(depth=22, width=2, **kwargs),
    "mnist_fc": mnist_fc,
    "lenet5": lenet5,
}


def build(architecture: str, **kwargs) -> tf_keras.Model:
  """Builds one of `ARCHITECTURES` by name."""
  if architecture not in ARCHITECTURES:
    raise ValueError(f"Unknown `model_architecture` {architecture!r}; allowed values: "
                     f"{', '.join(ARCHITECTURES)}.")
  return ARCHITECTURES[architecture](**kwargs)
