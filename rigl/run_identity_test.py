"""A run's identity is every flag of its script but the script's OPERATIONAL_FLAGS.

For every flag of each training script (iterating its `FlagValues`, so that a new flag
is covered the day it is defined): the flag is either identity or operational; a run
directory recorded with the defaults refuses a changed identity flag, in one line that
starts with the flag's name, and accepts a changed operational flag. The check runs at
the level of `check_run_directory(path, run_identity(...))`, as the training loop calls
it, without training; the scripts' tests run one refused and one accepted resume each.
"""

from __future__ import annotations

import json
import types

from absl import flags
import pytest

from cifar10 import cifar10_train_eval
from imagenet_resnet import imagenet_train_eval
from mnist import mnist_train_eval
from rigl import run_directory
from rigl import script_flags

SCRIPTS = {"mnist": mnist_train_eval, "cifar10": cifar10_train_eval,
           "imagenet": imagenet_train_eval}
# Valid other values of flags that take one of a few strings, or numbers whose next
# value is not valid; the first that differs from the current value is taken.
COMMON_ALTERNATIVES = {
    "training_method": ("rigl", "set"),
    "drop_fraction_anneal": ("cosine", "constant"),
    "grow_init": ("random_normal", "zeros"),
    "mask_init_method": ("erdos_renyi_kernel", "random"),
}
SCRIPT_ALTERNATIVES = {
    "mnist": {},
    "cifar10": {"resnet_depth": (22, 16), "num_classes": (100, 10)},
    "imagenet": {"resnet_depth": (18, 50)},
}
# Stands in for any float flag at 0 (a sparsity, a scale, a decay: all valid at this).
FLOAT_ALTERNATIVE_TO_ZERO = 0.5
# The identities the scripts recorded before every non-operational flag was part of
# them (run directories written then must still resume).
OLD_IDENTITY_FLAGS = {
    "mnist": (
        "dataset", "network_type", "training_method", "end_sparsity",
        "mask_init_method", "sparsity_scale", "optimizer", "batch_size", "seed",
        "drop_fraction", "drop_fraction_anneal", "grow_init", "maskupdate_begin_step",
        "maskupdate_end_step", "maskupdate_frequency", "prune_begin_step",
        "prune_end_step", "pruning_frequency", "learning_rate", "l2_scale"),
    "cifar10": (
        "resnet_depth", "resnet_width", "num_classes", "training_method",
        "end_sparsity", "mask_init_method", "prune_first_layer", "prune_last_layer",
        "batch_size", "momentum", "l2", "drop_fraction", "drop_fraction_anneal",
        "grow_init", "s_momentum", "rigl_acc_scale", "maskupdate_begin_step",
        "maskupdate_end_step", "maskupdate_frequency", "sparsity_begin_step",
        "sparsity_end_step", "pruning_frequency", "training_steps_multiplier", "seed"),
    "imagenet": (
        "model_architecture", "resnet_depth", "width", "expansion_factor",
        "num_label_classes", "image_size", "training_method", "end_sparsity",
        "mask_init_method", "first_layer_sparsity", "last_layer_sparsity",
        "erk_power_scale", "init_method", "train_batch_size", "base_learning_rate",
        "momentum", "weight_decay", "label_smoothing", "use_adam", "use_sgdr",
        "drop_fraction", "drop_fraction_anneal", "grow_init", "s_momentum",
        "rigl_acc_scale", "maskupdate_begin_step", "maskupdate_end_step",
        "maskupdate_frequency", "training_steps_multiplier", "seed", "precision"),
}
# A flag the old identities lacked, per script, for the compatibility cases.
NEWLY_IDENTITY = {"mnist": "momentum", "cifar10": "dataset_size",
                  "imagenet": "sparsity_end_step"}


def another_value(script: str, flag: flags.Flag):
  """A valid value of `flag` other than its current one, derived from its type."""
  alternatives = {**COMMON_ALTERNATIVES, **SCRIPT_ALTERNATIVES[script]}
  if flag.name in alternatives:
    return next(value for value in alternatives[flag.name] if value != flag.value)
  if isinstance(flag.parser, flags.EnumParser):
    return next(value for value in flag.parser.enum_values if value != flag.value)
  if isinstance(flag.parser, flags.BooleanParser):
    return not flag.value
  if isinstance(flag.parser, flags.IntegerParser):
    return flag.value + 1
  if isinstance(flag.parser, flags.FloatParser):
    return flag.value / 2 if flag.value else FLOAT_ALTERNATIVE_TO_ZERO
  return f"{flag.value or ''}/other"


def identity(module: types.ModuleType) -> run_directory.RunIdentity:
  """What the script records for its current flags."""
  return script_flags.run_identity(module.FLAGS, module.OPERATIONAL_FLAGS,
                                   module.model_description())


CASES = [pytest.param(script, name, id=f"{script}:{name}")
         for script, module in SCRIPTS.items()
         for name in script_flags.flag_names(module.FLAGS)]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_flag_is_identity_or_operational(script):
  module = SCRIPTS[script]
  with script_flags.values_restored(module.FLAGS):
    settings = identity(module).settings
  operational = set(module.OPERATIONAL_FLAGS)
  assert len(operational) == len(module.OPERATIONAL_FLAGS)  # Each listed once.
  for name in script_flags.flag_names(module.FLAGS):
    assert (name in settings) != (name in operational), name


@pytest.mark.parametrize("script, name", CASES)
def test_a_changed_flag_is_refused_exactly_when_it_is_identity(script, name, tmp_path):
  module = SCRIPTS[script]
  with script_flags.values_restored(module.FLAGS):
    run_directory.check_run_directory(str(tmp_path), identity(module))
    flag = module.FLAGS[name]
    default, flag.value = flag.value, another_value(script, flag)
    changed = flag.value
    if name in module.OPERATIONAL_FLAGS:
      run_directory.check_run_directory(str(tmp_path), identity(module))
      return
    with pytest.raises(ValueError) as error:
      run_directory.check_run_directory(str(tmp_path), identity(module))
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(f"--{name}: {default!r} in the run directory, "
                            f"{changed!r} now ("), message


def test_operational_flags_must_be_flags():
  with pytest.raises(ValueError, match="no_such_flag"):
    script_flags.run_identity(mnist_train_eval.FLAGS, ("save_path", "no_such_flag"))


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_run_directory_of_the_old_identity_still_resumes(script, tmp_path):
  """Recorded with the old hand-made list and no model: accepted at the defaults."""
  module = SCRIPTS[script]
  with script_flags.values_restored(module.FLAGS):
    old = {name: module.FLAGS[name].value for name in OLD_IDENTITY_FLAGS[script]}
    (tmp_path / run_directory.RUN_CONFIG_FILE).write_text(json.dumps(old))
    run_directory.check_run_directory(str(tmp_path), identity(module))
    flag = module.FLAGS[NEWLY_IDENTITY[script]]
    assert flag.name not in old
    flag.value = another_value(script, flag)
    with pytest.raises(ValueError, match=f"^--{flag.name}: not recorded in the run "
                       r"directory \(an older run: the default "):
      run_directory.check_run_directory(str(tmp_path), identity(module))
