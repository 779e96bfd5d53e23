"""Model builders of the published experiments, with the original's layer names.

Every builder returns a plain, built `tf_keras.Model`; sparsity is added by wrapping
its optimizer (see `rigl.SparseOptimizer`). Names follow the TF1 variable scopes
(without the `resnet_model/` prefix, since Keras layer names cannot contain `/`).

A model description (`describe`) names a builder and every argument it takes, as JSON:
the training scripts record it in their run directories, and `from_description`
rebuilds the same model from it (the export, the report).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

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


# The builders a model description can name, by their function names.
BUILDERS: dict[str, Callable[..., tf_keras.Model]] = {
    builder.__name__: builder
    for builder in (resnet, mobilenet_v1, mobilenet_v2, wide_resnet, mnist_fc, lenet5)}
# The key of a model description that names its builder.
ARCHITECTURE_KEY = "architecture"


def _builder_parameters(description: Mapping[str, Any]
                        ) -> tuple[str, dict[str, inspect.Parameter]]:
  """(architecture, {argument: parameter}) of a description's builder, checked."""
  architecture = description.get(ARCHITECTURE_KEY)
  if architecture not in BUILDERS:
    raise ValueError(f"Unknown model `{ARCHITECTURE_KEY}` {architecture!r}; allowed "
                     f"values: {', '.join(BUILDERS)}.")
  parameters = {name: parameter for name, parameter
                in inspect.signature(BUILDERS[architecture]).parameters.items()
                if parameter.kind is not inspect.Parameter.KEYWORD_ONLY}
  unknown = sorted(set(description) - set(parameters) - {ARCHITECTURE_KEY})
  if unknown:
    raise ValueError(f"The model `{architecture}` takes no {', '.join(unknown)}; its "
                     f"arguments: {', '.join(parameters)}.")
  return architecture, parameters


def _as_json(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


def describe(architecture: str, **arguments: Any) -> dict[str, Any]:
  """The description of `BUILDERS[architecture](**arguments)`: JSON, every argument.

  Arguments left out take the builder's defaults, written out, so that the description
  still names the same model when a default changes. Keyword-only arguments (the Keras
  module to build with, a kernel regularizer) say how a model is built, not which one,
  and are not part of a description.

  Raises:
    ValueError: naming an unknown architecture or argument, and the allowed ones.
  """
  description = {ARCHITECTURE_KEY: architecture, **arguments}
  _, parameters = _builder_parameters(description)
  for name, parameter in parameters.items():
    if parameter.default is not inspect.Parameter.empty:
      description.setdefault(name, parameter.default)
  return {key: _as_json(value) for key, value in description.items()}


def from_description(description: Mapping[str, Any]) -> tf_keras.Model:
  """Builds the model `description` (from `describe`, or read back from JSON) names.

  Raises:
    ValueError: naming an unknown architecture or argument, and the allowed ones.
  """
  architecture, _ = _builder_parameters(description)
  arguments = {key: tuple(value) if isinstance(value, list) else value
               for key, value in description.items() if key != ARCHITECTURE_KEY}
  return BUILDERS[architecture](**arguments)
