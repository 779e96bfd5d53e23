"""Loads the released TF1 RigL checkpoints (name-based) into this package's Keras models.

The original code saved `tf.compat.v1.train.Saver` checkpoints whose variables are named
by TF1 variable scopes; our Keras layers carry those scope names without the outer
`resnet_model/` prefix. The loader lists the checkpoint, matches every model variable to
one checkpoint variable, checks all names and shapes, and only then assigns anything.

Accepted spellings, for a Keras layer named `<name>` and the checkpoint's outer scope
`<scope>` (`resnet_model/`, detected from the checkpoint, or none, as MNIST's `layer1/...`):

- Conv2D / Dense, exactly one of:
  - `masked`: `<scope><name>/{weights,mask,biases}` (+ `threshold`, ignored);
  - `unmasked_doubled`: `<scope><name>/<name>/{weights,biases}` (an unmasked layer built
    inside the original's sparse wrapper, e.g. ResNet's first conv in the uniform runs;
    derived from TF1's scoping rules, not seen in a released file);
  - `unmasked`: `<scope><name>/{weights,biases}` without a `mask`;
  - `plain`: `<scope><name>/{kernel,bias}` (plain `tf.layers`: MobileNet's first conv, an
    unpruned `final_dense`, dense MNIST runs);
  - `plain_doubled`: `<scope><name>/<name>/{kernel,bias}`.
- DepthwiseConv2D (`depthwise`): `<scope><name>/depthwise_weights`, [kh, kw, C, 1], the
  layout of Keras' `depthwise_kernel`.
- BatchNormalization (`batch_norm`): `<scope><name>/{gamma,beta,moving_mean,moving_variance}`.

A conv/dense layer is masked when a `mask` sits next to its `weights`; decided per layer
from the checkpoint, never from flags. TF1 multiplied `mask * weights` in the forward
pass and never zeroed the variable, so the loaded kernel is `mask * weights`.

Ignored (bookkeeping): `global_step`, `last_mask_update_step`, `is_snipped`, `beta1_power`,
`beta2_power`, every `threshold`, everything under `model_pruning/`, and optimizer slots
and moving averages (any name with a component `Momentum`, `Adam`, `Adam_1`, `RMSProp`,
`RMSProp_1` or `ExponentialMovingAverage`). Any other checkpoint variable that matches no
model variable is an error, as are missing variables, shape mismatches and two spellings
of one layer; all of them are reported in one `CheckpointMismatchError` before anything
is assigned.

Command line::

  python -m rigl.tf1_checkpoints inspect /path/to/model.ckpt-32000
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from rigl import keras_compat
from rigl import kernel_selection
from rigl import sparse_optimizer

# TF2 object-based checkpoints hold their object graph under this key; TF1 ones do not.
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
# The outer variable scope of every ImageNet model of the original.
DEFAULT_SCOPE = "resnet_model/"

# What `restore_tf1_checkpoint` loads (see its docstring).
INCLUDE_ALL = "all"
INCLUDE_MASKS = "masks"
INCLUDE_INITIAL_VALUES = "initial_values"
INCLUDES = (INCLUDE_ALL, INCLUDE_MASKS, INCLUDE_INITIAL_VALUES)
# The original `--initial_value_checkpoint` restored the variables whose names end so.
INITIAL_VALUE_SUFFIXES = ("gamma", "beta", "weights", "biases")

# Spelling labels (see the module docstring).
MASKED = "masked"
UNMASKED = "unmasked"
UNMASKED_DOUBLED = "unmasked_doubled"
PLAIN = "plain"
PLAIN_DOUBLED = "plain_doubled"
DEPTHWISE = "depthwise"
BATCH_NORM = "batch_norm"
OTHER = "other"

MASK_LEAF = "mask"
DEPTHWISE_LEAF = "depthwise_weights"
BN_LEAVES = ("gamma", "beta", "moving_mean", "moving_variance")
# (kernel leaf, bias leaf) of the two families of conv/dense spellings.
WEIGHTS_LEAVES = ("weights", "biases")
KERNEL_LEAVES = ("kernel", "bias")

_BOOKKEEPING_NAMES = frozenset({"global_step", "last_mask_update_step", "is_snipped",
                                "beta1_power", "beta2_power", "threshold"})
_BOOKKEEPING_COMPONENTS = frozenset({"Momentum", "Adam", "Adam_1", "RMSProp", "RMSProp_1",
                                     "ExponentialMovingAverage"})
_BOOKKEEPING_PREFIXES = ("model_pruning/",)
_GLOBAL_STEP = "global_step"


def is_bookkeeping(name: str) -> bool:
  """Whether a checkpoint variable is optimizer or schedule state, not a model weight."""
  parts = name.split("/")
  return (parts[-1] in _BOOKKEEPING_NAMES or name.startswith(_BOOKKEEPING_PREFIXES)
          or any(part in _BOOKKEEPING_COMPONENTS for part in parts))


def _reader(prefix: str):
  try:
    return tf.train.load_checkpoint(str(prefix))
  except (tf.errors.OpError, ValueError) as error:
    raise ValueError(f"Cannot read checkpoint {str(prefix)!r} (pass the prefix, e.g. "
                     f".../model.ckpt-32000, or its directory): {error}") from error


def is_tf1_checkpoint(prefix: str) -> bool:
  """True for a name-based TF1 checkpoint, False for a TF2 object-based one.

  Raises:
    ValueError: naming `prefix` when no checkpoint can be read there.
  """
  return OBJECT_GRAPH_KEY not in _reader(prefix).get_variable_to_shape_map()


def _detect_scope(names: Sequence[str]) -> str:
  """`resnet_model/` when some model variable lives under it, else no scope."""
  return DEFAULT_SCOPE if any(n.startswith(DEFAULT_SCOPE) for n in names) else ""


def _global_step(reader, shapes: Mapping[str, list[int]]) -> int | None:
  if _GLOBAL_STEP not in shapes:
    return None
  return int(np.asarray(reader.get_tensor(_GLOBAL_STEP)).reshape(()))


def _zero_fraction(array: np.ndarray) -> float:
  return float(np.count_nonzero(array == 0) / array.size) if array.size else 0.0


def _model_shapes(reader, prefix: str) -> dict[str, tuple[int, ...]]:
  """Shapes of the checkpoint's non-bookkeeping variables, rejecting TF2 checkpoints."""
  shapes = reader.get_variable_to_shape_map()
  if OBJECT_GRAPH_KEY in shapes:
    raise ValueError(f"{str(prefix)!r} is a TF2 object-based checkpoint; restore it with "
                     "tf.train.Checkpoint, not the TF1 loader.")
  return {name: tuple(shape) for name, shape in shapes.items() if not is_bookkeeping(name)}


# ----- matching a model to a checkpoint ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Source:
  """One model variable and the checkpoint variable it is loaded from."""
  layer: str
  role: str  # kernel, bias, depthwise_kernel, gamma, beta, moving_mean, moving_variance.
  variable: tf.Variable
  key: str


@dataclasses.dataclass(frozen=True)
class _KernelMatch:
  """Where a conv/dense layer's kernel (and mask, if masked) sit in the checkpoint."""
  layer: str
  spelling: str
  kernel: tf.Variable
  kernel_key: str
  mask_key: str | None


class CheckpointMismatchError(ValueError):
  """The checkpoint does not fit the model; lists every offending name at once."""

  def __init__(self, prefix: str, missing: Sequence[str] = (),
               shape_mismatches: Sequence[str] = (), ambiguous: Sequence[str] = (),
               unused: Sequence[str] = (), other: Sequence[str] = ()):
    self.prefix = str(prefix)
    self.missing = tuple(missing)
    self.shape_mismatches = tuple(shape_mismatches)
    self.ambiguous = tuple(ambiguous)
    self.unused = tuple(unused)
    self.other = tuple(other)
    sections = [
        ("model variables missing from the checkpoint", self.missing),
        ("shape mismatches", self.shape_mismatches),
        ("layers spelled more than one way", self.ambiguous),
        ("checkpoint variables that match no model variable (another architecture, "
         "width or number of classes?)", self.unused),
        ("other problems", self.other),
    ]
    lines = [f"Checkpoint {self.prefix!r} does not fit the model; nothing was assigned."]
    for title, items in sections:
      if items:
        lines.append(f"{title} ({len(items)}):")
        lines.extend(f"  {item}" for item in items)
    super().__init__("\n".join(lines))

  @property
  def has_problems(self) -> bool:
    return any((self.missing, self.shape_mismatches, self.ambiguous, self.unused,
                self.other))


@dataclasses.dataclass
class _Plan:
  scope: str
  sources: list[_Source] = dataclasses.field(default_factory=list)
  kernel_layers: set[str] = dataclasses.field(default_factory=set)
  kernels: dict[str, _KernelMatch] = dataclasses.field(default_factory=dict)
  spellings: dict[str, str] = dataclasses.field(default_factory=dict)
  used: set[str] = dataclasses.field(default_factory=set)
  missing: list[str] = dataclasses.field(default_factory=list)
  shape_mismatches: list[str] = dataclasses.field(default_factory=list)
  ambiguous: list[str] = dataclasses.field(default_factory=list)
  other: list[str] = dataclasses.field(default_factory=list)


def _shape(variable: tf.Variable) -> tuple[int, ...]:
  return tuple(variable.shape.as_list())


def _add_source(plan: _Plan, shapes: Mapping[str, tuple[int, ...]], layer: str, role: str,
                variable: tf.Variable, key: str) -> None:
  plan.used.add(key)
  if key not in shapes:
    plan.missing.append(f"{key} ({layer}.{role})")
    return
  if shapes[key] != _shape(variable):
    plan.shape_mismatches.append(f"{key}: checkpoint {list(shapes[key])}, model "
                                 f"{list(_shape(variable))} ({layer}.{role})")
    return
  plan.sources.append(_Source(layer, role, variable, key))


def _match_kernel_layer(plan: _Plan, shapes: Mapping[str, tuple[int, ...]], layer) -> None:
  """Finds the one spelling of a Conv2D/Dense layer (see the module docstring)."""
  name, base = layer.name, plan.scope + layer.name
  candidates = [(f"{base}/{WEIGHTS_LEAVES[0]}", WEIGHTS_LEAVES, UNMASKED),
                (f"{base}/{name}/{WEIGHTS_LEAVES[0]}", WEIGHTS_LEAVES, UNMASKED_DOUBLED),
                (f"{base}/{KERNEL_LEAVES[0]}", KERNEL_LEAVES, PLAIN),
                (f"{base}/{name}/{KERNEL_LEAVES[0]}", KERNEL_LEAVES, PLAIN_DOUBLED)]
  present = [candidate for candidate in candidates if candidate[0] in shapes]
  if len(present) != 1:
    keys = [key for key, _, _ in (present or candidates)]
    if present:
      plan.ambiguous.append(f"{name}: {', '.join(keys)}")
    else:
      plan.missing.append(f"{name}.kernel (expected one of {', '.join(keys)})")
    # The layer's other variables are accounted for by this error.
    plan.used.update(k for k in shapes if k.startswith(base + "/"))
    return
  kernel_key, (_, bias_leaf), spelling = present[0]
  scope = kernel_key.rsplit("/", 1)[0]
  mask_key = f"{scope}/{MASK_LEAF}"
  # Only the masked spelling has a mask; a mask elsewhere stays unused (an error).
  if spelling == UNMASKED and mask_key in shapes:
    plan.used.add(mask_key)
    spelling = MASKED
    if shapes[mask_key] != _shape(layer.kernel):
      plan.shape_mismatches.append(f"{mask_key}: checkpoint {list(shapes[mask_key])}, "
                                   f"model kernel {list(_shape(layer.kernel))} ({name})")
  else:
    mask_key = None
  plan.spellings[name] = spelling
  plan.kernels[name] = _KernelMatch(name, spelling, layer.kernel, kernel_key, mask_key)
  _add_source(plan, shapes, name, "kernel", layer.kernel, kernel_key)
  if getattr(layer, "bias", None) is not None:
    _add_source(plan, shapes, name, "bias", layer.bias, f"{scope}/{bias_leaf}")


def _match_model(model: tf_keras.Model, shapes: Mapping[str, tuple[int, ...]],
                 scope: str) -> _Plan:
  """Maps every model variable to a checkpoint variable, collecting all problems."""
  plan = _Plan(scope)
  seen_layers = set()
  layers = keras_compat.all_layers(model)
  for layer in layers:
    if isinstance(layer, tf_keras.Model) or not layer.weights:
      continue
    if layer.name in seen_layers:
      plan.other.append(f"two layers are named {layer.name!r}")
      continue
    seen_layers.add(layer.name)
    base = scope + layer.name
    if isinstance(layer, tf_keras.layers.DepthwiseConv2D):
      plan.spellings[layer.name] = DEPTHWISE
      _add_source(plan, shapes, layer.name, "depthwise_kernel", layer.depthwise_kernel,
                  f"{base}/{DEPTHWISE_LEAF}")
      if layer.bias is not None:
        _add_source(plan, shapes, layer.name, "bias", layer.bias,
                    f"{base}/{WEIGHTS_LEAVES[1]}")
    elif isinstance(layer, kernel_selection.DEFAULT_LAYER_TYPES):
      plan.kernel_layers.add(layer.name)
      _match_kernel_layer(plan, shapes, layer)
    elif isinstance(layer, tf_keras.layers.BatchNormalization):
      plan.spellings[layer.name] = BATCH_NORM
      for leaf in BN_LEAVES:
        variable = getattr(layer, leaf)
        if variable is not None:
          _add_source(plan, shapes, layer.name, leaf, variable, f"{base}/{leaf}")
    else:
      plan.other.append(f"layer {layer.name!r} ({type(layer).__name__}) has variables "
                        "but no known TF1 spelling")
  return plan


# ----- restoring --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RestoreReport:
  """What `restore_tf1_checkpoint` found and loaded.

  Attributes:
    prefix: the checkpoint read.
    include: what was loaded (one of `INCLUDES`).
    scope: the checkpoint's outer scope (`resnet_model/` or "").
    global_step: the checkpoint's `global_step`, or None when it has none.
    layer_sparsities: every Conv2D/Dense layer in model order -> fraction of zeros of its
      checkpoint mask; 0.0 for layers the checkpoint does not mask.
    masked_layers: the layers the checkpoint masks, in model order.
    global_sparsity: fraction of exact zeros over all Conv2D/Dense kernels after loading
      (depthwise kernels excluded, as they are never sparsified).
    spellings: layer name -> spelling label (see the module docstring).
    assigned: `layer.role` -> checkpoint variable, for every model variable assigned
      (role `kernel`, `bias`, `depthwise_kernel`, a BN variable's name, or `mask` for a
      checkpoint mask put into the optimizer).
    ones_masks: layers whose optimizer mask was set to all ones because the checkpoint
      does not mask them.
    unmanaged_masks: layers masked in the checkpoint but not by the optimizer (or with no
      optimizer): their kernels hold `mask * weights`, but training would not keep them
      sparse.
  """
  prefix: str
  include: str
  scope: str
  global_step: int | None
  layer_sparsities: dict[str, float]
  masked_layers: tuple[str, ...]
  global_sparsity: float
  spellings: dict[str, str]
  assigned: dict[str, str]
  ones_masks: tuple[str, ...]
  unmanaged_masks: tuple[str, ...]


def _check_optimizer(plan: _Plan, optimizer, include: str) -> dict[str, tf.Variable]:
  """The optimizer's masks, after checking they belong to this model's kernels."""
  if optimizer is None:
    if include == INCLUDE_MASKS:
      raise ValueError('include="masks" loads masks into a sparse optimizer; pass one.')
    return {}
  if not isinstance(optimizer, sparse_optimizer.SparseOptimizer):
    raise TypeError(f"`optimizer` must be a rigl.SparseOptimizer; got {optimizer!r}.")
  masks = optimizer.masks
  for name, kernel in optimizer.kernels.items():
    match = plan.kernels.get(name)
    if name not in plan.kernel_layers:
      plan.other.append(f"the optimizer masks layer {name!r}, which is not a Conv2D/"
                        "Dense layer of the model")
    elif match is not None and kernel is not match.kernel:
      plan.other.append(f"the optimizer's kernel of {name!r} is not the model's "
                        "(was it built for another model?)")
  if include == INCLUDE_MASKS:
    for name, match in plan.kernels.items():
      if match.mask_key and name not in masks:
        plan.other.append(f"the checkpoint masks {name!r} but the optimizer does not "
                          "(check first_layer_sparsity / last_layer_sparsity)")
  return masks


def restore_tf1_checkpoint(prefix: str, model: tf_keras.Model,
                           optimizer: sparse_optimizer.SparseOptimizer | None = None,
                           *, include: str = INCLUDE_ALL,
                           scope: str | None = None) -> RestoreReport:
  """Loads a TF1 RigL checkpoint into `model` (and masks into `optimizer`).

  Args:
    prefix: the checkpoint prefix (e.g. `.../model.ckpt-32000`) or its directory.
    model: a built Keras model whose layer names are the TF1 scope names.
    optimizer: a `rigl.SparseOptimizer` of `model`, whose masks are set, or None.
    include: `"all"` (the original `eval_once`): every model variable, kernels as
      `mask * weights`, and every optimizer mask (the checkpoint's, or all ones for
      layers it does not mask). `"masks"` (the original `--load_mask_dir`): only the
      optimizer's masks, as for `"all"`, then kernel *= mask. `"initial_values"` (the
      original `--initial_value_checkpoint`): only variables whose checkpoint names end
      in `gamma`, `beta`, `weights` or `biases` (so not moving statistics, nor plain
      `kernel`/`bias`); kernels are multiplied by the checkpoint's mask, if any, and by
      the optimizer's, so masked weights stay zero; optimizer masks are kept.
    scope: the checkpoint's outer scope with a trailing slash; None detects it
      (`resnet_model/` if present, else none).

  Returns:
    A `RestoreReport`.

  Raises:
    CheckpointMismatchError: (a ValueError) listing every missing, mis-shaped,
      ambiguous or unused variable, before anything is assigned.
    ValueError: when the checkpoint cannot be read or is a TF2 checkpoint.
  """
  if include not in INCLUDES:
    raise ValueError(f"Unknown `include` {include!r}; allowed values: "
                     f"{', '.join(INCLUDES)}.")
  reader = _reader(prefix)
  shapes = _model_shapes(reader, prefix)
  scope = _detect_scope(list(shapes)) if scope is None else scope
  plan = _match_model(model, shapes, scope)
  masks = _check_optimizer(plan, optimizer, include)
  unused = sorted(set(shapes) - plan.used)
  error = CheckpointMismatchError(prefix, plan.missing, plan.shape_mismatches,
                                  plan.ambiguous, unused, plan.other)
  if error.has_problems:
    raise error

  # Read everything before assigning anything, so that a read failure loads nothing.
  ckpt_masks = {name: reader.get_tensor(match.mask_key)
                for name, match in plan.kernels.items() if match.mask_key}
  if include == INCLUDE_ALL:
    sources = plan.sources
  elif include == INCLUDE_MASKS:
    sources = []
  else:
    sources = [s for s in plan.sources if s.key.endswith(INITIAL_VALUE_SUFFIXES)]
  values = {source.key: reader.get_tensor(source.key) for source in sources}
  for source in sources:
    if source.role == "kernel":
      value = values[source.key]
      if source.layer in ckpt_masks:
        value = value * ckpt_masks[source.layer]
      if include == INCLUDE_INITIAL_VALUES and source.layer in masks:
        value = value * masks[source.layer].numpy()
      values[source.key] = value

  ones_masks = []
  new_masks = {}
  if include in (INCLUDE_ALL, INCLUDE_MASKS):
    for name, mask in masks.items():
      if name in ckpt_masks:
        new_masks[name] = ckpt_masks[name]
      else:
        new_masks[name] = np.ones(_shape(mask), mask.dtype.as_numpy_dtype)
        ones_masks.append(name)

  for source in sources:
    source.variable.assign(values[source.key].astype(source.variable.dtype.as_numpy_dtype))
  for name, value in new_masks.items():
    masks[name].assign(value.astype(masks[name].dtype.as_numpy_dtype))
  if new_masks:
    optimizer.apply_masks()

  return RestoreReport(
      prefix=str(prefix), include=include, scope=scope,
      global_step=_global_step(reader, reader.get_variable_to_shape_map()),
      layer_sparsities={name: _zero_fraction(ckpt_masks[name]) if name in ckpt_masks
                        else 0.0 for name in plan.kernels},
      masked_layers=tuple(name for name in plan.kernels if name in ckpt_masks),
      global_sparsity=kernel_selection.global_sparsity(model, {}),
      spellings=dict(plan.spellings),
      assigned={**{f"{s.layer}.{s.role}": s.key for s in sources},
                **{f"{name}.{MASK_LEAF}": plan.kernels[name].mask_key
                   for name in new_masks if name in ckpt_masks}},
      ones_masks=tuple(ones_masks),
      unmanaged_masks=tuple(name for name in ckpt_masks if name not in masks))


# ----- inspecting -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerListing:
  """One layer of a checkpoint, as `inspect_checkpoint` lists it.

  Attributes:
    name: the layer scope without the outer scope and without scope doubling (the
      Keras layer name).
    spelling: one of the spelling labels, `other`, or `ambiguous`.
    shape: shape of the kernel (`weights`, `kernel` or `depthwise_weights`), of `gamma`
      for BN, else of the layer's first variable.
    masked: whether the checkpoint holds a mask for it.
    sparsity: fraction of zeros of its mask; 0.0 when unmasked.
    variables: the layer's checkpoint variables (bookkeeping excluded).
  """
  name: str
  spelling: str
  shape: tuple[int, ...]
  masked: bool
  sparsity: float
  variables: tuple[str, ...]

  @property
  def is_kernel_layer(self) -> bool:
    return self.spelling in (MASKED, UNMASKED, UNMASKED_DOUBLED, PLAIN, PLAIN_DOUBLED)


@dataclasses.dataclass(frozen=True)
class CheckpointListing:
  """The layers of a TF1 checkpoint, grouped by scope, and its global sparsity.

  `global_sparsity` is the fraction of mask zeros over all conv/dense kernels (masked
  or not; depthwise kernels excluded).
  """
  prefix: str
  scope: str
  global_step: int | None
  layers: tuple[LayerListing, ...]
  global_sparsity: float
  num_bookkeeping: int

  def layer(self, name: str) -> LayerListing:
    for layer in self.layers:
      if layer.name == name:
        return layer
    raise KeyError(name)

  def format(self) -> str:
    """A human-readable table."""
    rows = [(layer.name, layer.spelling, str(list(layer.shape)),
             ("yes" if layer.masked else "no") if layer.is_kernel_layer else "-",
             f"{layer.sparsity:.4f}" if layer.is_kernel_layer else "-")
            for layer in self.layers]
    header = ("layer", "spelling", "shape", "masked", "sparsity")
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    lines = [f"checkpoint {self.prefix}",
             f"scope {self.scope or '(none)'!r}, global_step {self.global_step}, "
             f"{len(self.layers)} layers, {self.num_bookkeeping} bookkeeping variables "
             "ignored"]
    for row in [header] + rows:
      lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    lines.append(f"global sparsity (conv/dense kernels): {self.global_sparsity:.4f}")
    return "\n".join(lines)


def _natural_key(text: str):
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _listing_layer(name: str, leaves: Mapping[str, str], reader,
                   shapes: Mapping[str, tuple[int, ...]]) -> LayerListing:
  """Classifies one scope's variables, `leaves` mapping `[<name>/]leaf` -> full name."""
  short = name.rsplit("/", 1)[-1]
  doubled = {f"{short}/{leaf}" for leaf in ("weights", "kernel")} & set(leaves)
  plain = {"weights", "kernel"} & set(leaves)
  kernel_keys = sorted(doubled | plain)
  mask_key = leaves.get(MASK_LEAF)
  masked, sparsity = mask_key is not None, 0.0
  if masked:
    sparsity = _zero_fraction(reader.get_tensor(mask_key))
  if len(kernel_keys) > 1:
    spelling, shape_key = "ambiguous", leaves[kernel_keys[0]]
  elif kernel_keys:
    key = kernel_keys[0]
    spelling = {"weights": MASKED if masked else UNMASKED, "kernel": PLAIN,
                f"{short}/weights": UNMASKED_DOUBLED, f"{short}/kernel": PLAIN_DOUBLED}[key]
    shape_key = leaves[key]
  elif DEPTHWISE_LEAF in leaves:
    spelling, shape_key = DEPTHWISE, leaves[DEPTHWISE_LEAF]
  elif "gamma" in leaves or "moving_mean" in leaves:
    spelling = BATCH_NORM
    shape_key = leaves.get("gamma", leaves.get("moving_mean"))
  else:
    spelling, shape_key = OTHER, leaves[sorted(leaves)[0]]
  return LayerListing(name, spelling, shapes[shape_key], masked, sparsity,
                      tuple(sorted(leaves.values())))


def inspect_checkpoint(prefix: str) -> CheckpointListing:
  """Lists a TF1 checkpoint's layers: spelling, kernel shape, mask and its sparsity."""
  reader = _reader(prefix)
  all_shapes = reader.get_variable_to_shape_map()
  shapes = _model_shapes(reader, prefix)
  scope = _detect_scope(list(shapes))
  groups: dict[str, dict[str, str]] = {}
  for key in shapes:
    relative = key[len(scope):] if key.startswith(scope) else key
    parts = relative.split("/")
    if len(parts) >= 3 and parts[-2] == parts[-3]:
      # Doubled scope `<name>/<name>/leaf`: the leaf is keyed `<name>/leaf`.
      layer, leaf = "/".join(parts[:-2]), "/".join(parts[-2:])
    else:
      layer, leaf = "/".join(parts[:-1]) or parts[-1], parts[-1]
    groups.setdefault(layer, {})[leaf] = key
  layers = tuple(_listing_layer(name, groups[name], reader, shapes)
                 for name in sorted(groups, key=_natural_key))
  zeros, total = 0, 0
  for layer in layers:
    if layer.is_kernel_layer:
      size = int(np.prod(layer.shape))
      zeros += round(layer.sparsity * size)
      total += size
  return CheckpointListing(
      prefix=str(prefix), scope=scope, global_step=_global_step(reader, all_shapes),
      layers=layers, global_sparsity=float(zeros / total) if total else 0.0,
      num_bookkeeping=len(all_shapes) - len(shapes))


def main(argv: Sequence[str] | None = None) -> int:
  """`inspect CKPT_PREFIX`: prints the checkpoint's layers and sparsities."""
  parser = argparse.ArgumentParser(prog="python -m rigl.tf1_checkpoints",
                                   description=__doc__.split("\n\n", 1)[0])
  commands = parser.add_subparsers(dest="command", required=True)
  inspect = commands.add_parser("inspect", help="list a TF1 checkpoint's layers")
  inspect.add_argument("prefix", help="checkpoint prefix, e.g. .../model.ckpt-32000")
  args = parser.parse_args(argv)
  try:
    listing = inspect_checkpoint(args.prefix)
  except ValueError as error:
    print(error, file=sys.stderr)
    return 1
  print(listing.format())
  return 0


if __name__ == "__main__":
  sys.exit(main())
