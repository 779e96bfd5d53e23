"""Command-line flags of the training scripts, one `FlagValues` per script.

The scripts share flag names with different defaults (`training_method` is `scratch`
for ImageNet and `baseline` for CIFAR-10), so each keeps its own `absl.flags.FlagValues`
instead of the process-wide `flags.FLAGS`: tests and benchmarks can import several of
them into one process. The flags every script has are defined here once.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from typing import Any, Callable, Iterator, Sequence

from absl import app
from absl import flags
from absl import logging

from rigl import schedules

HELP_ARGUMENTS = ("-h", "--help", "--helpshort", "--helpfull", "-?")


class FlagDefiner:
  """`absl.flags.DEFINE_*` bound to one `FlagValues`: `define.string(name, ...)`."""

  def __init__(self, flag_values: flags.FlagValues):
    self._flag_values = flag_values

  def __getattr__(self, kind: str) -> Callable[..., Any]:
    return functools.partial(getattr(flags, f"DEFINE_{kind}"),
                             flag_values=self._flag_values)


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


def parse(flag_values: flags.FlagValues, argv: Sequence[str]) -> list[str]:
  """Parses `argv` into `flag_values` (with --flagfile); --help prints the flags."""
  if any(argument in HELP_ARGUMENTS for argument in argv[1:]):
    print(flag_values.get_help())
    sys.exit(0)
  try:
    remaining = flag_values(list(argv))
  except flags.Error as error:
    sys.exit(f"error: {error}")
  flags.FLAGS.mark_as_parsed()  # absl.app checks the process-wide flags too.
  return remaining


def run(run_fn: Callable[[], Any], flag_values: flags.FlagValues) -> None:
  """Parses the command line into `flag_values`, then runs `run_fn` (`absl.app.run`).

  A ValueError (bad input, named by the library's messages) ends the process with a
  one-line message instead of a traceback.
  """

  def main(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    try:
      run_fn()
    except ValueError as error:
      sys.exit(f"error: {error}")

  app.run(main, flags_parser=functools.partial(parse, flag_values))


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
