"""Every training script rejects each invalid flag at start, in one line naming the flag.

The table runs in this process through the scripts' entry point
(`script_flags.run(module.run, module.FLAGS, argv)`, what each `__main__` block calls),
with the data readers and model builders replaced by a tripwire: a case that gets past
the flag checks fails the test instead of training. One real subprocess per script
shows the same behaviour end to end.
"""

from __future__ import annotations

import dataclasses
import logging as std_logging
import pathlib
import re
import subprocess
import sys
import types

from absl import logging
import pytest

from cifar10 import cifar10_train_eval
from imagenet_resnet import imagenet_train_eval
from mnist import mnist_train_eval
from rigl import script_flags

REPO = pathlib.Path(__file__).resolve().parent.parent
ERROR_PREFIX = "error: "
SUBPROCESS_TIMEOUT_S = 300
# Lines that TensorFlow's C++ runtime (absl logging) writes while it loads, such as
# "I0000 00:00:1796307142.997656    9801 cudart_stub.cc:31] Could not find cuda ...".
NATIVE_LOG_LINE = re.compile(
    r"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] |"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called")


class ReachedTraining(Exception):
  """Raised by the tripwire: the flags passed every check."""


def tripwire(*args, **kwargs):
  raise ReachedTraining(f"called with {args} {kwargs}")


@dataclasses.dataclass(frozen=True)
class Script:
  """One training script: its module, valid flags, and the steps that load or build.

  `base_args` may hold `{data}` (an existing, empty directory) and `{out}` (a path that
  does not exist yet). `heavy_steps` are (object, attribute) pairs that the run reaches
  only after its flag checks.
  """
  module: types.ModuleType
  base_args: tuple[str, ...]
  heavy_steps: tuple[tuple[object, str], ...]

  @property
  def path(self) -> str:
    return self.module.__file__


SCRIPTS = {
    "mnist": Script(
        mnist_train_eval,
        ("--data_dir={data}", "--save_path={out}", "--training_method=rigl"),
        ((mnist_train_eval.data, "load"),
         (mnist_train_eval.models, "from_description"))),
    "cifar10": Script(
        cifar10_train_eval,
        ("--data_directory={data}", "--train_dir={out}", "--training_method=rigl"),
        ((cifar10_train_eval.data, "load_split"),
         (cifar10_train_eval.models, "from_description"))),
    "imagenet": Script(
        imagenet_train_eval,
        ("--data_directory={data}", "--output_dir={out}", "--training_method=rigl",
         "--mask_init_method=random"),
        ((imagenet_train_eval.strategies, "create_strategy"),
         (imagenet_train_eval.models, "from_description"),
         (imagenet_train_eval.imagenet_input, "dataset"))),
}

# (bad flags, flag the message must name, part of the allowed values or range it gives).
# `{missing}` is a path that does not exist, `{file}` an existing regular file.
COMMON_CASES = [
    (("--end_sparsity=-0.1",), "--end_sparsity", "[0, 1)"),
    (("--end_sparsity=1.0",), "--end_sparsity", "[0, 1)"),
    (("--end_sparsity=1.5",), "--end_sparsity", "[0, 1)"),
    (("--training_method=bogus",), "--training_method", "rigl"),
    (("--mask_init_method=bogus",), "--mask_init_method", "erdos_renyi_kernel"),
    (("--grow_init=bogus",), "--grow_init", "random_normal"),
    (("--training_method=set", "--grow_init=grad_scale"), "--grow_init", "initial_dist"),
]
SCRIPT_CASES = {
    "mnist": [
        (("--network_type=bogus",), "--network_type", "lenet5"),
        (("--dataset=bogus",), "--dataset", "fashion_mnist"),
        (("--batch_size=0",), "--batch_size", "positive"),
        (("--batch_size=-5",), "--batch_size", "positive"),
        (("--data_dir={missing}",), "--data_dir", "does not exist"),
        (("--data_dir={file}",), "--data_dir", "not a directory"),
        (("--save_path={file}",), "--save_path", "is a file"),
        (("--sparsity_scale=1.5",), "--sparsity_scale", "[0, 1)"),
    ],
    "cifar10": [
        (("--resnet_depth=15",), "--resnet_depth", "6n + 4"),
        (("--resnet_depth=4",), "--resnet_depth", "6n + 4"),
        (("--batch_size=0",), "--batch_size", "positive"),
        (("--num_classes=7",), "--num_classes", "100"),
        (("--data_directory={missing}",), "--data_directory", "does not exist"),
        (("--train_dir={file}",), "--train_dir", "is a file"),
        (("--drop_fraction_anneal=bogus",), "drop_fraction_anneal", "cosine"),
    ],
    "imagenet": [
        (("--model_architecture=bogus",), "--model_architecture", "mobilenet_v2"),
        (("--resnet_depth=42",), "--resnet_depth", "101"),
        (("--first_layer_sparsity=1.0",), "--first_layer_sparsity", "below 1"),
        (("--last_layer_sparsity=2",), "--last_layer_sparsity", "below 1"),
        (("--distribution_strategy=bogus",), "--distribution_strategy", "mirrored"),
        (("--train_batch_size=0",), "--train_batch_size", "positive"),
        (("--eval_batch_size=0",), "--eval_batch_size", "positive"),
        (("--data_directory={missing}",), "--data_directory", "does not exist"),
        (("--output_dir={file}",), "--output_dir", "is a file"),
        (("--output_dir={file}/run",), "--output_dir", "is a file"),
    ],
}
CASES = [pytest.param(name, *case, id=f"{name}:{' '.join(case[0])}")
         for name in SCRIPTS for case in COMMON_CASES + SCRIPT_CASES[name]]
# One end-to-end run per script: a check of the script's own and one of absl's parser.
SUBPROCESS_CASES = [
    ("mnist", ("--end_sparsity=1.5",), "--end_sparsity"),
    ("cifar10", ("--mask_init_method=bogus",), "--mask_init_method"),
    ("imagenet", ("--model_architecture=bogus",), "--model_architecture"),
]


@pytest.fixture
def paths(tmp_path) -> dict[str, str]:
  """The placeholders' paths: a data directory, an output dir, a missing path, a file."""
  (tmp_path / "data").mkdir()
  (tmp_path / "file").write_text("not a directory")
  return {"data": str(tmp_path / "data"), "out": str(tmp_path / "run"),
          "missing": str(tmp_path / "missing"), "file": str(tmp_path / "file")}


@pytest.fixture(autouse=True)
def absl_state_restored():
  """Undoes what `absl.app.run` changes process-wide: log handlers and verbosity."""
  handlers = list(std_logging.root.handlers)
  verbosity = logging.get_verbosity()
  yield
  std_logging.root.handlers[:] = handlers
  logging.set_verbosity(verbosity)


def arguments(script: Script, bad: tuple[str, ...], paths: dict[str, str]) -> list[str]:
  """The command line: the script, its valid flags, then the bad ones (which win)."""
  return [script.path] + [arg.format(**paths) for arg in script.base_args + bad]


def run_in_process(name: str, argv: list[str], monkeypatch) -> None:
  """Runs the script's entry point with `argv`, its heavy steps behind the tripwire."""
  script = SCRIPTS[name]
  for owner, attribute in script.heavy_steps:
    monkeypatch.setattr(owner, attribute, tripwire)
  with script_flags.values_restored(script.module.FLAGS):
    script_flags.run(script.module.run, script.module.FLAGS, argv)


def assert_one_line_naming(stderr: str, flag: str, hint: str = "") -> None:
  lines = stderr.splitlines()
  assert len(lines) == 1, stderr
  assert lines[0].startswith(ERROR_PREFIX), stderr
  assert flag in lines[0] and hint in lines[0], stderr


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_valid_flags_reach_training(name, paths, monkeypatch, capsys):
  """The table's base flags pass every check, so each case fails for its bad flag."""
  with pytest.raises(ReachedTraining):
    run_in_process(name, arguments(SCRIPTS[name], (), paths), monkeypatch)
  assert not capsys.readouterr().err


@pytest.mark.parametrize("name,bad,flag,hint", CASES)
def test_invalid_flag_exits_with_one_line_naming_it(name, bad, flag, hint, paths,
                                                     monkeypatch, capsys):
  with pytest.raises(SystemExit) as exit_info:
    run_in_process(name, arguments(SCRIPTS[name], bad, paths), monkeypatch)
  assert exit_info.value.code == script_flags.EXIT_FAILURE
  assert_one_line_naming(capsys.readouterr().err, flag, hint)
  assert not pathlib.Path(paths["out"]).exists()  # Nothing written.


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_flag_values_are_restored_after_a_case(name, paths, monkeypatch, capsys):
  flag_values = SCRIPTS[name].module.FLAGS
  before = flag_values.end_sparsity
  with pytest.raises(SystemExit):
    run_in_process(name, arguments(SCRIPTS[name], ("--end_sparsity=1.5",), paths),
                   monkeypatch)
  capsys.readouterr()
  assert flag_values.end_sparsity == before


def test_positional_arguments_exit_with_one_line(paths, monkeypatch, capsys):
  with pytest.raises(SystemExit) as exit_info:
    run_in_process("mnist", arguments(SCRIPTS["mnist"], ("stray",), paths), monkeypatch)
  assert exit_info.value.code == script_flags.EXIT_FAILURE
  assert_one_line_naming(capsys.readouterr().err, "stray", "unexpected arguments")


def test_multi_line_parse_errors_become_one_line(capsys):
  """absl's messages are one line today; a multi-line one would still print as one."""
  with pytest.raises(SystemExit) as exit_info:
    script_flags.fail("--flag=x is wrong\n  allowed values: a, b\n")
  assert exit_info.value.code == script_flags.EXIT_FAILURE
  assert capsys.readouterr().err == "error: --flag=x is wrong; allowed values: a, b\n"


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory) -> dict[str, tuple[int, str, pathlib.Path]]:
  """Runs SUBPROCESS_CASES at once: (exit status, stderr, output dir) per script."""
  running = {}
  for name, bad, _ in SUBPROCESS_CASES:
    root = tmp_path_factory.mktemp(name)
    (root / "data").mkdir()
    paths = {"data": str(root / "data"), "out": str(root / "run")}
    running[name] = (subprocess.Popen(
        [sys.executable] + arguments(SCRIPTS[name], bad, paths), cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), root / "run")
  results = {}
  try:
    for name, (process, out) in running.items():
      _, stderr = process.communicate(timeout=SUBPROCESS_TIMEOUT_S)
      results[name] = (process.returncode, stderr, out)
  finally:
    for process, _ in running.values():
      if process.poll() is None:
        process.kill()
        process.communicate()
  return results


def without_native_log_lines(stderr: str) -> str:
  """stderr less the lines TensorFlow's C++ runtime logs while it loads."""
  return "".join(line for line in stderr.splitlines(keepends=True)
                 if not NATIVE_LOG_LINE.match(line))


@pytest.mark.parametrize("name,bad,flag", SUBPROCESS_CASES)
def test_script_exits_with_one_line_naming_the_flag(name, bad, flag, subprocess_results):
  del bad  # Run by the fixture.
  returncode, stderr, out = subprocess_results[name]
  assert returncode == script_flags.EXIT_FAILURE, stderr[-2000:]
  assert "Traceback" not in stderr, stderr[-2000:]
  assert_one_line_naming(without_native_log_lines(stderr), flag)
  assert not out.exists()
