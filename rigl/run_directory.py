"""A run directory: its file names, its checkpoints, its identity and its model.

A training script's run directory (`--save_path`, `--train_dir` or `--output_dir`)
holds `model.ckpt-<step>` checkpoints (listed in TensorFlow's `checkpoint` state file
once complete), `run_config.json`, `results.json`, `mask_records.npz`, SavedModels
under `export/<step>` and TensorBoard summaries. This module is the one place that
knows those names and formats:

- `resolve_checkpoint` turns what a flag names (a directory or a checkpoint prefix)
  into a checkpoint prefix; `checkpoint_candidates` lists a directory's checkpoints
  for the training loop's resume; `verify_checkpoint` reads one in full.
- `run_config.json` records the run's identity, the settings that define it: a
  resumed run must match it (`check_run_directory`). It also records, under
  `MODEL_KEY`, the description of the run's network (`rigl.models.describe`), from
  which `build_model_from_run_config` rebuilds it; files written before that key
  existed are read through `legacy_model_description`.
- `mask_keys` finds the masks in a checkpoint of ours.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from typing import Any, Mapping

import tensorflow as tf
import tf_keras

from rigl import models

CHECKPOINT_NAME = "model.ckpt"
# A TF2 checkpoint `<prefix>` is `<prefix>.index` plus data shards named so.
CHECKPOINT_INDEX_SUFFIX = ".index"
CHECKPOINT_DATA_PATTERN = ".data-?????-of-?????"
RUN_CONFIG_FILE = "run_config.json"
RESULTS_FILE = "results.json"
MASK_RECORDS_FILE = "mask_records.npz"
EXPORT_DIR = "export"
# The key of run_config.json holding the model description (no flag has this name).
MODEL_KEY = "model"
# Our object-based checkpoints keep the mask of layer L (the sparse optimizer's
# `_masks` attribute) under this key; optimizer slots have OPTIMIZER_SLOT in theirs.
_MASK_KEY = re.compile(r"(?:^|/)_masks/([^/]+)/\.ATTRIBUTES/VARIABLE_VALUE$")
_OPTIMIZER_SLOT = "OPTIMIZER_SLOT"

# ----- checkpoints --------------------------------------------------------------------


def checkpoint_number(path: str) -> int | None:
  """N of a path `.../model.ckpt-N`, or None for another name."""
  name = os.path.basename(path)
  prefix = CHECKPOINT_NAME + "-"
  if not name.startswith(prefix) or not name[len(prefix):].isdigit():
    return None
  return int(name[len(prefix):])


def checkpoint_candidates(directory: str) -> tuple[dict[int, str], dict[int, str]]:
  """({number: prefix} listed in the state file, {number: prefix} of index files).

  A checkpoint is listed once all its files are written; one on disk but not listed
  was written by a process killed before it could list it (or is incomplete).
  """
  state = tf.train.get_checkpoint_state(directory)
  listed = {}
  if state:
    for path in list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]:
      path = path if os.path.isabs(path) else os.path.join(directory, path)
      number = checkpoint_number(path) if path else None
      if number is not None:
        listed[number] = path
  on_disk = {}
  for index in tf.io.gfile.glob(os.path.join(
      directory, f"{CHECKPOINT_NAME}-*{CHECKPOINT_INDEX_SUFFIX}")):
    path = index[:-len(CHECKPOINT_INDEX_SUFFIX)]
    number = checkpoint_number(path)
    if number is not None:
      on_disk[number] = path
  return listed, on_disk


def latest_checkpoint(directory: str) -> str | None:
  """The directory's latest checkpoint prefix, or None when it holds none.

  The one its `checkpoint` state file names (TF2, or TF1 of either format), or, when
  that file is missing or stale (a copied run, or a process killed between writing a
  checkpoint and listing it), the highest-numbered `model.ckpt-<N>` with an index file.
  """
  listed = tf.train.latest_checkpoint(directory)
  if listed:
    return listed
  _, on_disk = checkpoint_candidates(directory)
  return on_disk[max(on_disk)] if on_disk else None


def resolve_checkpoint(path: str, flag: str) -> str:
  """The checkpoint prefix that the flag `--<flag>=<path>` names.

  A directory names its `latest_checkpoint`. A prefix names itself when its index file
  exists, or when a file of that name does (a TF1 checkpoint of the V1 format, one
  file without an index).

  Raises:
    ValueError: naming the flag when the directory holds no checkpoint, or the path is
      neither a directory nor a checkpoint.
  """
  if tf.io.gfile.isdir(path):
    prefix = latest_checkpoint(path)
    if not prefix:
      raise ValueError(f"--{flag}={path}: the directory holds no checkpoint.")
    return prefix
  if not (tf.io.gfile.exists(path + CHECKPOINT_INDEX_SUFFIX) or tf.io.gfile.exists(path)):
    raise ValueError(f"--{flag}={path}: neither a run directory nor a checkpoint prefix "
                     f"(no {path}{CHECKPOINT_INDEX_SUFFIX}).")
  return path


def verify_checkpoint(path: str) -> None:
  """Reads every tensor of a checkpoint, checking its checksums.

  `path` is a checkpoint prefix, or a directory (its `latest_checkpoint`). Only
  reading every tensor reaches the end of each data file, so this is what tells a
  truncated checkpoint from a complete one.

  Raises:
    ValueError: naming the file that is missing, truncated or corrupt.
  """
  if tf.io.gfile.isdir(path):
    latest = latest_checkpoint(path)
    if not latest:
      raise ValueError(f"No checkpoint in the directory {path}.")
    path = latest
  index = path + CHECKPOINT_INDEX_SUFFIX
  # A single file at `path` is a TF1 checkpoint of the old V1 format (no index).
  if not (tf.io.gfile.exists(index) or tf.io.gfile.exists(path)):
    raise ValueError(f"Checkpoint {path} is incomplete or missing: {index} does not "
                     "exist.")
  try:
    reader = tf.train.load_checkpoint(path)
  except (tf.errors.OpError, ValueError, IndexError) as error:
    named = index if tf.io.gfile.exists(index) else path
    raise ValueError(f"Checkpoint file {named} is truncated or corrupt: "
                     f"{_first_line(error)}") from None
  data = ", ".join(sorted(tf.io.gfile.glob(path + CHECKPOINT_DATA_PATTERN))) or (
      path + CHECKPOINT_DATA_PATTERN)
  for key in sorted(reader.get_variable_to_shape_map()):
    try:
      reader.get_tensor(key)
    except (tf.errors.OpError, ValueError, IndexError) as error:
      raise ValueError(f"Checkpoint data {data} is truncated, corrupt or missing "
                       f"(reading {key}): {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
  """The first line of an error's message (TF's messages go on for many lines)."""
  message = getattr(error, "message", None) or str(error) or type(error).__name__
  return message.strip().splitlines()[0]


def mask_keys(reader: tf.train.CheckpointReader) -> dict[str, str]:
  """{layer name: checkpoint key} of the masks in a TF2 checkpoint of ours."""
  found = {}
  for key in reader.get_variable_to_shape_map():
    match = _MASK_KEY.search(key)
    if match and _OPTIMIZER_SLOT not in key:
      found[match.group(1)] = key
  return found


# ----- run identity -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunIdentity:
  """What `run_config.json` records about a run.

  Attributes:
    settings: {flag name: value}, the settings that define the run; a resumed run
      must have the same.
    defaults: {flag name: default value}. A run directory recorded before a setting
      was part of the identity lacks it; it is accepted when the setting's value now
      is this default (the value the older run had, unless it was set explicitly).
    model: the model description (`rigl.models.describe`), recorded under
      `MODEL_KEY` and not compared: the settings determine it.
  """
  settings: Mapping[str, Any]
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  model: Mapping[str, Any] | None = None

  def __post_init__(self):
    if MODEL_KEY in self.settings:
      raise ValueError(f"`{MODEL_KEY}` is the model description's key in "
                       f"{RUN_CONFIG_FILE}; no setting may be named so.")

  def record(self) -> dict[str, Any]:
    """The contents of `run_config.json`."""
    record = dict(self.settings)
    if self.model is not None:
      record[MODEL_KEY] = dict(self.model)
    return record


def _as_json(values: Mapping[str, Any]) -> dict[str, Any]:
  """`values` as they read back from JSON (tuples become lists), to compare them."""
  return json.loads(json.dumps(dict(values)))


def _differences(recorded: Mapping[str, Any], identity: RunIdentity) -> list[str]:
  """One "--name: X in the run directory, Y now" per setting that differs."""
  settings, defaults = _as_json(identity.settings), _as_json(identity.defaults)
  lines = []
  for name in sorted((set(recorded) | set(settings)) - {MODEL_KEY}):
    if name not in settings:
      lines.append(f"--{name}: {recorded[name]!r} in the run directory, not a setting "
                   "now")
    elif name not in recorded:
      if name in defaults and settings[name] == defaults[name]:
        continue
      older = (f"not recorded in the run directory (an older run: the default "
               f"{defaults[name]!r})" if name in defaults
               else "not recorded in the run directory")
      lines.append(f"--{name}: {older}, {settings[name]!r} now")
    elif recorded[name] != settings[name]:
      lines.append(f"--{name}: {recorded[name]!r} in the run directory, "
                   f"{settings[name]!r} now")
  return lines


def check_run_directory(save_path: str,
                        identity: RunIdentity | Mapping[str, Any]) -> None:
  """Records `identity` in a new run directory, or checks it against an existing one.

  A plain mapping is the settings alone (keys are flag names).

  Raises:
    ValueError: when the directory is a file, or holds a different run: one line
      that starts with each differing flag and its two values.
  """
  if not isinstance(identity, RunIdentity):
    settings = dict(identity)
    model = settings.pop(MODEL_KEY, None)
    identity = RunIdentity(settings, model=model)
  directory = pathlib.Path(save_path)
  if directory.exists() and not directory.is_dir():
    raise ValueError(f"The run directory {save_path} is a file.")
  recorded = read_run_config(save_path)
  if recorded is not None:
    differences = _differences(recorded, identity)
    if differences:
      raise ValueError(f"{'; '.join(differences)} ({save_path} holds a different run; "
                       "use another run directory or delete it).")
    return
  directory.mkdir(parents=True, exist_ok=True)
  write_json_atomically(directory / RUN_CONFIG_FILE, identity.record())


def write_json_atomically(path: pathlib.Path, values: Mapping[str, Any]) -> None:
  """Writes JSON through a temporary file, so a reader never sees half a file."""
  temporary = path.with_suffix(".tmp")
  temporary.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
  os.replace(temporary, path)


def read_run_config(directory: str) -> dict[str, Any] | None:
  """The `run_config.json` of a run directory; None when it has none.

  Raises:
    ValueError: naming the file when it is not a JSON object.
  """
  path = os.path.join(directory, RUN_CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as file:
    try:
      values = json.load(file)
    except json.JSONDecodeError as error:
      raise ValueError(f"{path} is not JSON: {error}") from None
  if not isinstance(values, dict):
    raise ValueError(f"{path} is not a JSON object.")
  return values


# ----- the run's model ----------------------------------------------------------------

# Legacy run_config.json files (no MODEL_KEY): the flag that tells which script wrote
# one, and how that script named its networks.
LEGACY_IMAGENET_KEY = "model_architecture"
LEGACY_CIFAR10_KEY = "resnet_width"
LEGACY_MNIST_KEY = "network_type"
LEGACY_IMAGENET_ARCHITECTURES = ("resnet", "mobilenet_v1", "mobilenet_v2")
LEGACY_MNIST_NETWORKS = {"fc": "mnist_fc", "lenet5": "lenet5"}
LEGACY_IMAGE_CHANNELS = 3


def legacy_model_description(settings: Mapping[str, Any],
                             source: str = RUN_CONFIG_FILE) -> dict[str, Any]:
  """The model description of a run_config.json written before MODEL_KEY existed.

  Such a file holds only flags; which script wrote it shows in their names, and this
  maps them to the model as that script built it. It describes files already written,
  so it does not follow later changes of the scripts.

  Raises:
    ValueError: naming `source` and the setting it lacks or holds wrongly.
  """
  def get(key: str) -> Any:
    if key not in settings:
      raise ValueError(f"{source} has no `{key}`, which the model needs.")
    return settings[key]

  if LEGACY_IMAGENET_KEY in settings:  # imagenet_resnet/imagenet_train_eval.py
    architecture = settings[LEGACY_IMAGENET_KEY]
    if architecture not in LEGACY_IMAGENET_ARCHITECTURES:
      raise ValueError(f"{source}: unknown `{LEGACY_IMAGENET_KEY}` {architecture!r}.")
    arguments = {"width": get("width") if get("width") > 0 else 1.0,
                 "num_classes": get("num_label_classes"),
                 "input_shape": (get("image_size"), get("image_size"),
                                 LEGACY_IMAGE_CHANNELS)}
    if architecture == "resnet":
      arguments["depth"] = get("resnet_depth")
    elif architecture == "mobilenet_v2":
      arguments["expansion_factor"] = get("expansion_factor")
    return models.describe(architecture, **arguments)
  if LEGACY_CIFAR10_KEY in settings:  # cifar10/cifar10_train_eval.py
    return models.describe("wide_resnet", depth=get("resnet_depth"),
                           width=settings[LEGACY_CIFAR10_KEY],
                           num_classes=get("num_classes"))
  if LEGACY_MNIST_KEY in settings:  # mnist/mnist_train_eval.py
    network = LEGACY_MNIST_NETWORKS.get(settings[LEGACY_MNIST_KEY])
    if network is None:
      raise ValueError(f"{source}: unknown `{LEGACY_MNIST_KEY}` "
                       f"{settings[LEGACY_MNIST_KEY]!r}.")
    return models.describe(network)
  raise ValueError(f"{source} names no model: it has no `{MODEL_KEY}`, nor any of "
                   f"`{LEGACY_IMAGENET_KEY}`, `{LEGACY_CIFAR10_KEY}`, "
                   f"`{LEGACY_MNIST_KEY}`.")


def model_description(settings: Mapping[str, Any],
                      source: str = RUN_CONFIG_FILE) -> dict[str, Any]:
  """The model description a run_config.json records (older files: from its flags).

  Raises:
    ValueError: naming `source` when it describes no model.
  """
  if MODEL_KEY in settings:
    description = settings[MODEL_KEY]
    if not isinstance(description, Mapping):
      raise ValueError(f"{source}: `{MODEL_KEY}` is not a model description: "
                       f"{description!r}.")
    return dict(description)
  return legacy_model_description(settings, source)


def build_model_from_run_config(settings: Mapping[str, Any],
                                source: str = RUN_CONFIG_FILE) -> tf_keras.Model:
  """The model of the run whose run_config.json holds `settings`.

  Raises:
    ValueError: naming `source` when it describes no model, or one that
      `rigl.models` cannot build.
  """
  description = model_description(settings, source)
  try:
    return models.from_description(description)
  except (ValueError, TypeError) as error:
    raise ValueError(f"{source}: {error}") from None
