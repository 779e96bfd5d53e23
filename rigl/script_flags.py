"""Command-line flags of the training scripts, one `FlagValues` per script.

The scripts share flag names with different defaults (`training_method` is `scratch`
for ImageNet and `baseline` for CIFAR-10), so each keeps its own `absl.flags.FlagValues`
instead of the process-wide `flags.FLAGS`: tests and benchmarks can import several of
them into one process. The flags every script has are defined here once.

A run's identity (`run_identity`) is every flag of its script except the script's
`OPERATIONAL_FLAGS`: those that say where and how the run goes (paths, reporting,
evaluation and checkpoint cadence, hardware, mode, no-ops) without changing what it
trains. absl defines its own flags (--help, --flagfile) on the process-wide
`flags.FLAGS`, not on a script's `FlagValues`, so they need no listing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Any, Callable, Iterable, Iterator, Mapping, NoReturn, Sequence

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from rigl import grow_init as grow_init_lib
from rigl import run_directory
from rigl import schedules
from rigl import sparse_optimizer
from rigl import methods
from rigl import sparsity

HELP_ARGUMENTS = ("-h", "--help", "--helpshort", "--helpfull", "-?")
# Exit status of a run stopped by a bad flag or bad input.
EXIT_FAILURE = 1
# Paths such as gs://bucket/dir are checked by the code that reads or writes them.
REMOTE_PATH_MARKER = "://"


class FlagDefiner:
  """`absl.flags.DEFINE_*` bound to one `FlagValues`: `define.string(name, ...)`."""

  def __init__(self, flag_values: flags.FlagValues):
    self._flag_values = flag_values

  def __getattr__(self, kind: str) -> Callable[..., Any]:
    return functools.partial(getattr(flags, f"DEFINE_{kind}"),
                             flag_values=self._flag_values)


def define_training_method_flag(define: FlagDefiner, default: str) -> None:
  """--training_method: any registered method (checked by `training_method_class`).

  A string flag rather than an enum, so that a method registered after the script was
  imported (one class with `@rigl.methods.register`) is accepted too.
  """
  define.string("training_method", default, "Training method: one of "
                f"{', '.join(methods.TRAINING_METHODS)}, or any other registered method.")


def training_method_class(flag_values: flags.FlagValues) -> type:
  """The class of --training_method; ValueError naming the flag and allowed values."""
  return methods.method_class(flag_values.training_method)


def define_mask_update_flags(define: FlagDefiner, *, maskupdate_end_step: int,
                             drop_fraction_anneal: str) -> None:
  """The dynamic-sparse-training flags every script has (original names and help)."""
  define.float("drop_fraction", 0.3, "Fraction of active weights dropped per update.")
  define.string("drop_fraction_anneal", drop_fraction_anneal,
                "constant, cosine or exponential_<k>.")
  define.string("grow_init", "zeros", "Initial value of grown connections.")
  define.float("s_momentum", 0.9, "SNFS gradient moving-average decay.")
  define.float("rigl_acc_scale", 0.0,
               "RigL: optimizer slots of new connections = gradient * this.")
  define.integer("maskupdate_begin_step", 0, "First mask-update step.")
  define.integer("maskupdate_end_step", maskupdate_end_step, "Last mask-update step.")
  define.integer("maskupdate_frequency", 100, "Steps between mask updates.")


def define_deterministic_flag(define: FlagDefiner) -> None:
  """--deterministic, which a script applies with `apply_deterministic_flag`."""
  define.boolean("deterministic", False,
                 "Run TensorFlow ops deterministically (op determinism): with the same "
                 "--seed, a rerun, or a run resumed after a crash, ends with bitwise "
                 "the same weights. Slower, mostly on GPUs.")


def apply_deterministic_flag(flag_values: flags.FlagValues) -> None:
  """Enables TensorFlow's op determinism when --deterministic is set.

  The scripts seed every random source from --seed whether or not it is set; op
  determinism makes the remaining ops (parallel reductions, tf.data) reproducible.
  """
  if flag_values.deterministic:
    tf.config.experimental.enable_op_determinism()


def mask_update_options(flag_values: flags.FlagValues,
                        scale: Callable[[int], int] = int) -> dict[str, Any]:
  """`rigl.create_sparse_optimizer` arguments from those flags.

  `scale` maps the begin and end steps (e.g. by --training_steps_multiplier).
  """
  return {
      "schedule": schedules.MaskUpdateSchedule(
          scale(flag_values.maskupdate_begin_step), scale(flag_values.maskupdate_end_step),
          flag_values.maskupdate_frequency, flag_values.drop_fraction,
          flag_values.drop_fraction_anneal),
      "grow_init": flag_values.grow_init,
      "s_momentum": flag_values.s_momentum,
      "rigl_acc_scale": flag_values.rigl_acc_scale,
  }


def one_line(message: str) -> str:
  """`message` with its lines joined by "; ", so that it reads as one line of a log."""
  return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def fail(message: str) -> NoReturn:
  """Ends the process with EXIT_FAILURE and `error: <message>` as one line on stderr."""
  print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
  sys.exit(EXIT_FAILURE)


def parse(flag_values: flags.FlagValues, argv: Sequence[str]) -> list[str]:
  """Parses `argv` into `flag_values` (with --flagfile); --help prints the flags.

  A value absl rejects (a number that does not parse, an enum value outside its list,
  an unknown flag) ends the process through `fail`, with absl's message, which names
  the flag and, for enums, the allowed values.
  """
  if any(argument in HELP_ARGUMENTS for argument in argv[1:]):
    print(flag_values.get_help())
    sys.exit(0)
  try:
    remaining = flag_values(list(argv))
  except flags.Error as error:
    fail(str(error))
  flags.FLAGS.mark_as_parsed()  # absl.app checks the process-wide flags too.
  return remaining


def run(run_fn: Callable[[], Any], flag_values: flags.FlagValues,
        argv: Sequence[str] | None = None) -> None:
  """Parses `argv` (default: sys.argv) into `flag_values`, then runs `run_fn`.

  The scripts' entry point (`absl.app.run`). A ValueError (bad flag or bad input, named
  by the scripts' and the library's messages) and positional arguments end the process
  through `fail`, with one line instead of a traceback or the whole usage text.
  """

  def main(remaining: list[str]) -> None:
    if len(remaining) > 1:
      fail(f"unexpected arguments {remaining[1:]}; every setting is a --flag.")
    logging.set_verbosity(logging.WARNING)
    try:
      run_fn()
    except ValueError as error:
      fail(str(error))

  app.run(main, argv=None if argv is None else list(argv),
          flags_parser=functools.partial(parse, flag_values))


def check_positive(flag_values: flags.FlagValues, names: Iterable[str]) -> None:
  """Raises ValueError naming the first of the flags `names` that is not positive."""
  for name in names:
    value = flag_values[name].value
    if value <= 0:
      raise ValueError(f"--{name} must be positive; got {value}.")


def check_sparsity(flag_values: flags.FlagValues, name: str) -> None:
  """Raises ValueError unless the flag `name` is a sparsity in [0, 1)."""
  value = flag_values[name].value
  if not 0.0 <= value < 1.0:
    raise ValueError(f"--{name} must be a sparsity in [0, 1); got {value}.")


def check_choice(flag_values: flags.FlagValues, name: str, allowed: Iterable[Any]) -> None:
  """Raises ValueError, listing `allowed`, if the flag `name` is not one of them."""
  allowed = list(allowed)
  value = flag_values[name].value
  if value not in allowed:
    raise ValueError(f"--{name}={value} is not allowed; allowed values: "
                     f"{', '.join(map(str, allowed))}.")


def check_data_directory(flag_values: flags.FlagValues, name: str) -> None:
  """Raises ValueError if the flag `name` is set to a local path that is no directory.

  Empty means "the default source" in every script, so it passes.
  """
  path = flag_values[name].value
  if not path or REMOTE_PATH_MARKER in path:
    return
  if not os.path.exists(path):
    raise ValueError(f"--{name}={path} does not exist; it must be an existing "
                     "data directory.")
  if not os.path.isdir(path):
    raise ValueError(f"--{name}={path} is not a directory; it must be an existing "
                     "data directory.")


def check_output_directory(flag_values: flags.FlagValues, name: str) -> None:
  """Raises ValueError if the flag `name` (a local path) is or lies under a file.

  Nothing is created: the directory itself may not exist yet.
  """
  path = flag_values[name].value
  if not path or REMOTE_PATH_MARKER in path:
    return
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    where = ("is" if existing == os.path.abspath(path)
             else f"lies under {existing}, which is")
    raise ValueError(f"--{name}={path} {where} a file; it must be a directory "
                     "(existing or not).")


def check_mask_update_flags(flag_values: flags.FlagValues,
                            scale: Callable[[int], int] = int) -> None:
  """Raises ValueError on a bad --grow_init or mask-update schedule, before any model.

  --grow_init must be a known name for every method, and a gradient-based one only for
  methods that can use it (RigL); the schedule is checked as `mask_update_options`
  builds it (with the same `scale`).
  """
  method = flag_values.training_method
  optimizer_class = training_method_class(flag_values)
  grows = issubclass(optimizer_class, sparse_optimizer.DynamicSparseOptimizer)
  allow_gradient = not grows or optimizer_class.allows_gradient_grow_init
  try:
    grow_init_lib.parse(flag_values.grow_init, allow_gradient)
  except ValueError as error:
    raise ValueError(f"--grow_init={flag_values.grow_init} "
                     f"(--training_method={method}): {error}") from error
  mask_update_options(flag_values, scale)


def check_sparsity_distribution(flag_values: flags.FlagValues,
                                name: str = "mask_init_method") -> None:
  """Raises ValueError unless the flag `name` is one of `sparsity.DISTRIBUTIONS`."""
  check_choice(flag_values, name, sparsity.DISTRIBUTIONS)


def flag_names(flag_values: flags.FlagValues) -> list[str]:
  """Every flag of `flag_values` by its name (not its short name), in definition order."""
  return [name for name in flag_values if flag_values[name].name == name]


def run_identity(flag_values: flags.FlagValues, operational: Iterable[str],
                 model: Mapping[str, Any] | None = None) -> run_directory.RunIdentity:
  """The settings that define a run: every flag except the `operational` ones.

  A resumed run must have the same (`run_directory.check_run_directory`). Each
  identity flag's default goes with it: a run directory recorded before the flag was
  part of the identity is accepted when the flag is at its default now.

  Args:
    flag_values: the script's flags.
    operational: the script's `OPERATIONAL_FLAGS`.
    model: the description of the script's model (`rigl.models.describe`), recorded
      with the identity.

  Raises:
    ValueError: naming any of `operational` that is no flag of `flag_values` (a typo
      would otherwise leave the flag it meant in the identity).
  """
  operational = set(operational)
  names = flag_names(flag_values)
  unknown = sorted(operational - set(names))
  if unknown:
    raise ValueError(f"Operational flags {', '.join(unknown)} are no flags of this "
                     "script.")
  identity = [name for name in names if name not in operational]
  return run_directory.RunIdentity(
      settings={name: flag_values[name].value for name in identity},
      defaults={name: flag_values[name].default for name in identity}, model=model)


def set_values(flag_values: flags.FlagValues, **values: Any) -> None:
  """Sets flags in code (tests, benchmarks), marking the flags as parsed."""
  if not flag_values.is_parsed():
    flag_values.mark_as_parsed()
  for name, value in values.items():
    flag_values[name].value = value


@contextlib.contextmanager
def values_restored(flag_values: flags.FlagValues) -> Iterator[None]:
  """Marks the flags as parsed and restores their values afterwards (tests)."""
  saved = {name: flag_values[name].value for name in flag_values}
  set_values(flag_values)
  try:
    yield
  finally:
    set_values(flag_values, **saved)
