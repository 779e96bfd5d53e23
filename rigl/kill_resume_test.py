"""Crash safety of the training scripts: SIGKILL at a random step, then the same command.

Each case is a script and a training method, run with `--deterministic`:

- straight through, as the reference;
- from the command line, killed with SIGKILL as soon as its progress lines pass a step
  drawn at random (seeded, after the first checkpoint and at least one checkpoint
  interval before the end), then run again with the same command, which resumes from
  its newest complete checkpoint.

Both must end with the same final checkpoint, bit for bit: weights, masks, optimizer
slots, step and counters, all but the wall-clock time.

Every process starts TensorFlow and traces the training step (about 10 s of CPU for
MNIST, 20 s for the ResNet), so the cases are few: RigL through each script. The same
crash, resume and comparison for every method is in `training_test` (in process, where a
run costs a few seconds). The reference runs share one process, which runs each case's
command line through its script's own flags and `run`, one after another. Processes run
two at a time, besides that one; each test waits for its own case only.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from imagenet_resnet import imagenet_train_eval
from rigl import script_flags
from rigl.testing import fake_mnist

REPO = pathlib.Path(__file__).resolve().parent.parent
# Seeds the draw of every case's kill step (with the case's name).
KILL_SEED = 20240611
# Killed-and-resumed runs at a time, beside the reference process (two cores).
CONCURRENT_PROCESSES = 2
# A process that runs longer than this is killed and its case fails.
PROCESS_TIMEOUT_S = 300
# The checkpoint counter that legitimately differs between two runs.
WALL_TIME_KEY = "counters/wall_time_s/.ATTRIBUTES/VARIABLE_VALUE"

# MNIST: an epoch of 6 batches, 4 epochs; the script checkpoints once per epoch.
MNIST_TRAIN_EXAMPLES, MNIST_TEST_EXAMPLES, MNIST_BATCH, MNIST_EPOCHS = 60, 20, 10, 4
MNIST_BATCHES_PER_EPOCH = MNIST_TRAIN_EXAMPLES // MNIST_BATCH
MNIST_METHODS = ("rigl",)
# ImageNet: a tiny ResNet-18 on synthetic data, checkpoints every 3 of 12 steps.
IMAGENET_STEPS, IMAGENET_CHECKPOINT_STEPS = 12, 3
IMAGENET_METHODS = ("rigl",)

# Progress lines: "step 4  batch 6/24  epoch ..." (MNIST counts batches) and
# "step 4/12  epoch ..." (ImageNet counts steps).
MNIST_PROGRESS = re.compile(r"^step \d+\s+batch (\d+)/\d+")
IMAGENET_PROGRESS = re.compile(r"^step (\d+)/\d+")
RESUMED = re.compile(r"^Resumed from (\S+) at step")
REFERENCE_DONE = "reference run finished:"
# The reference process: [name, script module, argv] for each case, in order.
REFERENCE_DRIVER = f"""
import importlib, json, sys
from rigl import script_flags
for name, module, argv in json.loads(sys.argv[1]):
  script = importlib.import_module(module)
  with script_flags.values_restored(script.FLAGS):
    script.FLAGS(argv)
    script.run()
  print({REFERENCE_DONE!r}, name, flush=True)
"""


@dataclasses.dataclass(frozen=True)
class Case:
  """One script and method: its flags, its progress lines and where to kill it."""
  name: str
  module: str
  flags: tuple[str, ...]
  run_dir_flag: str
  progress_line: re.Pattern
  first_checkpoint: int
  last_checkpoint_before_end: int

  def argv(self, run_dir: pathlib.Path) -> list[str]:
    """The command line without the interpreter: the script and its flags."""
    return [self.module.replace(".", "/") + ".py", *self.flags,
            f"--{self.run_dir_flag}={run_dir}"]

  def kill_step(self) -> int:
    """A step after the first checkpoint and before the last one before the end."""
    rng = random.Random(f"{KILL_SEED}/{self.name}")
    return rng.randint(self.first_checkpoint + 1, self.last_checkpoint_before_end - 1)


@dataclasses.dataclass
class Outcome:
  """What the killed and resumed run of a case left, and the kill's details."""
  run_dir: pathlib.Path
  kill_step: int
  killed_returncode: int
  killed_at_progress: int | None
  checkpoint_at_kill: str | None
  resumed_from: str | None
  logs: str


def mnist_case(method: str, data_dir: pathlib.Path) -> Case:
  flags = (f"--data_dir={data_dir}", f"--batch_size={MNIST_BATCH}",
           f"--num_epochs={MNIST_EPOCHS}", f"--training_method={method}",
           "--learning_rate=0.05", "--maskupdate_frequency=2", "--prune_begin_step=2",
           "--prune_end_step=16", "--pruning_frequency=2", "--end_sparsity=0.9",
           "--summary_steps=1", "--deterministic")
  total = MNIST_EPOCHS * MNIST_BATCHES_PER_EPOCH
  return Case(f"mnist-{method}", "mnist.mnist_train_eval", flags, "save_path",
              MNIST_PROGRESS, MNIST_BATCHES_PER_EPOCH, total - MNIST_BATCHES_PER_EPOCH)


def imagenet_case(method: str) -> Case:
  flags = ("--use_synthetic_data", "--resnet_depth=18", "--width=0.25",
           "--image_size=32", "--num_label_classes=10", "--train_batch_size=4",
           "--eval_batch_size=4", "--num_eval_images=4", "--num_train_images=24",
           f"--train_steps={IMAGENET_STEPS}", f"--steps_per_eval={IMAGENET_STEPS}",
           f"--steps_per_checkpoint={IMAGENET_CHECKPOINT_STEPS}", "--summary_steps=1",
           "--use_folder_stub=false", "--mode=train_and_eval",
           f"--training_method={method}", "--mask_init_method=erdos_renyi_kernel",
           "--maskupdate_frequency=2", "--sparsity_begin_step=0",
           "--sparsity_end_step=8", "--pruning_frequency=2", "--deterministic")
  return Case(f"imagenet-{method}", "imagenet_resnet.imagenet_train_eval", flags,
              "output_dir", IMAGENET_PROGRESS, IMAGENET_CHECKPOINT_STEPS,
              IMAGENET_STEPS - IMAGENET_CHECKPOINT_STEPS)


CASE_NAMES = ([f"mnist-{method}" for method in MNIST_METHODS]
              + [f"imagenet-{method}" for method in IMAGENET_METHODS])


def environment() -> dict[str, str]:
  # Progress lines as they are printed; one intra-op thread per process.
  return dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
              TF_NUM_INTRAOP_THREADS="1")


class ReferenceRuns:
  """Every case run straight through, one after another, in one process.

  The process parses each case's command line with the script's own flags and calls
  its `run`, as the script's entry point does, sparing a TensorFlow start-up per case.
  """

  def __init__(self, cases: list[Case], root: pathlib.Path):
    self.directories = {case.name: root / case.name / "straight" for case in cases}
    spec = [[case.name, case.module, case.argv(self.directories[case.name])]
            for case in cases]
    self._process = subprocess.Popen(
        [sys.executable, "-c", REFERENCE_DRIVER, json.dumps(spec)], cwd=REPO,
        env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    self._watchdog = threading.Timer(PROCESS_TIMEOUT_S * len(cases), self._process.kill)
    self._watchdog.start()
    self._finished: set[str] = set()
    self._events = {case.name: threading.Event() for case in cases}
    self._output: list[str] = []
    self._reader = threading.Thread(target=self._read)
    self._reader.start()

  def _read(self) -> None:
    for line in self._process.stdout:
      self._output.append(line)
      if line.startswith(REFERENCE_DONE):
        name = line.split()[-1]
        self._finished.add(name)
        self._events[name].set()
    self._process.wait()
    for event in self._events.values():  # Wakes the waiters of runs that never ended.
      event.set()

  def wait(self, name: str) -> pathlib.Path:
    """The run directory of `name`'s reference run, once it has finished."""
    self._events[name].wait()
    assert name in self._finished, (
        f"the reference run of {name} failed:\n{''.join(self._output)[-3000:]}")
    return self.directories[name]

  def close(self) -> None:
    if self._process.poll() is None:
      self._process.kill()
    self._reader.join()
    self._watchdog.cancel()
    self._process.stdout.close()


def run_command(case: Case, run_dir: pathlib.Path) -> str:
  """Runs the case's command to its end; returns its output."""
  result = subprocess.run([sys.executable, *case.argv(run_dir)], cwd=REPO,
                          env=environment(), capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False)
  assert result.returncode == 0, f"{case.name} failed:\n{result.stderr[-3000:]}"
  return result.stdout


def run_until_killed(case: Case, run_dir: pathlib.Path, kill_step: int
                     ) -> tuple[int, int | None, str]:
  """Starts the case's command; SIGKILLs it once a progress line reaches `kill_step`.

  Returns (exit status, progress of the line that triggered the kill, output).
  """
  process = subprocess.Popen([sys.executable, *case.argv(run_dir)], cwd=REPO,
                             env=environment(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  watchdog = threading.Timer(PROCESS_TIMEOUT_S, process.kill)
  watchdog.start()
  lines, killed_at = [], None
  try:
    for line in process.stdout:
      lines.append(line)
      match = case.progress_line.match(line)
      if match and int(match.group(1)) >= kill_step:
        os.kill(process.pid, signal.SIGKILL)
        killed_at = int(match.group(1))
        break
    lines.extend(process.stdout)
    process.wait()
  finally:
    watchdog.cancel()
    process.stdout.close()
  return process.returncode, killed_at, "".join(lines)


def kill_and_resume(case: Case, run_dir: pathlib.Path) -> Outcome:
  """Kills the case's command at its drawn step, then runs the same command again."""
  kill_step = case.kill_step()
  returncode, killed_at, killed_output = run_until_killed(case, run_dir, kill_step)
  checkpoint_at_kill = tf.train.latest_checkpoint(str(run_dir))
  resumed_output = (run_command(case, run_dir) if returncode == -signal.SIGKILL
                    else "")
  resumed = [RESUMED.match(line) for line in resumed_output.splitlines()]
  resumed_from = next((match.group(1) for match in resumed if match), None)
  logs = f"killed run:\n{killed_output[-3000:]}\nresumed run:\n{resumed_output[-3000:]}"
  return Outcome(run_dir, kill_step, returncode, killed_at, checkpoint_at_kill,
                 resumed_from, logs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Starts every case's runs: (reference runs, {name: future Outcome})."""
  root = tmp_path_factory.mktemp("kill_resume")
  data_dir = root / "mnist_data"
  data_dir.mkdir()
  fake_mnist.write_dataset(data_dir, MNIST_TRAIN_EXAMPLES, MNIST_TEST_EXAMPLES)
  # The longest case first, so that the processes end about together.
  cases = ([imagenet_case(method) for method in IMAGENET_METHODS]
           + [mnist_case(method, data_dir) for method in MNIST_METHODS])
  references = ReferenceRuns(cases, root)
  try:
    with concurrent.futures.ThreadPoolExecutor(CONCURRENT_PROCESSES) as executor:
      yield references, {case.name: executor.submit(kill_and_resume, case,
                                                    root / case.name / "resumed")
                         for case in cases}
  finally:
    references.close()


def checkpoint_number(path: str) -> int:
  return int(path.rsplit("-", 1)[1])


def final_checkpoint(directory: pathlib.Path) -> tuple[str, dict[str, np.ndarray]]:
  path = tf.train.latest_checkpoint(str(directory))
  assert path, f"no checkpoint in {directory}"
  reader = tf.train.load_checkpoint(path)
  return path, {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}


def assert_same_final_state(straight_dir: pathlib.Path, resumed_dir: pathlib.Path,
                            context: str) -> None:
  straight_path, straight = final_checkpoint(straight_dir)
  resumed_path, resumed = final_checkpoint(resumed_dir)
  assert os.path.basename(resumed_path) == os.path.basename(straight_path), context
  assert sorted(resumed) == sorted(straight), context
  # What the comparison covers: masks, optimizer slots, the step and the weights.
  assert any("/_masks/" in key for key in straight), sorted(straight)
  assert any("_optimizer/_variables/" in key for key in straight), sorted(straight)
  assert any("_optimizer/_iterations/" in key for key in straight), sorted(straight)
  different = [key for key in straight if key != WALL_TIME_KEY
               and (np.asarray(straight[key]).dtype != np.asarray(resumed[key]).dtype
                    or np.asarray(straight[key]).tobytes()
                    != np.asarray(resumed[key]).tobytes())]
  assert not different, f"{context}\n{len(different)} variables differ: {different[:10]}"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_killed_run_resumes_to_the_same_end_state(runs, name):
  references, outcomes = runs
  outcome = outcomes[name].result()
  context = (f"{name}: SIGKILL drawn at step {outcome.kill_step} (seed {KILL_SEED}), "
             f"sent at progress {outcome.killed_at_progress}, latest checkpoint then "
             f"{outcome.checkpoint_at_kill}, resumed from {outcome.resumed_from}\n"
             f"{outcome.logs}")
  assert outcome.killed_returncode == -signal.SIGKILL, context
  straight_dir = references.wait(name)
  final = checkpoint_number(tf.train.latest_checkpoint(str(straight_dir)))
  # The kill came after a checkpoint and before the end; the rerun resumed from the
  # newest complete checkpoint: the one listed at the kill, or one written as it came.
  assert outcome.checkpoint_at_kill is not None, context
  assert outcome.resumed_from is not None, context
  assert (checkpoint_number(outcome.checkpoint_at_kill)
          <= checkpoint_number(outcome.resumed_from) < final), context
  assert_same_final_state(straight_dir, outcome.run_dir, context)


def test_eval_once_names_a_damaged_checkpoint(runs, tmp_path):
  """--mode=eval_once on a truncated checkpoint: a one-line error naming the file."""
  references, _ = runs
  method = IMAGENET_METHODS[0]
  prefix = pathlib.Path(tf.train.latest_checkpoint(
      str(references.wait(f"imagenet-{method}"))))
  for path in prefix.parent.glob(prefix.name + ".*"):
    shutil.copy(path, tmp_path / path.name)
  data = tmp_path / f"{prefix.name}.data-00000-of-00001"
  data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
  # In this process, without --deterministic: op determinism is process-wide.
  flags = [flag for flag in imagenet_case(method).flags
           if not flag.startswith(("--deterministic", "--mode="))]
  flags += ["--mode=eval_once", f"--eval_once_ckpt_prefix={prefix.name}",
            f"--output_dir={tmp_path}"]
  with script_flags.values_restored(imagenet_train_eval.FLAGS):
    imagenet_train_eval.FLAGS(["imagenet_train_eval", *flags])
    with pytest.raises(ValueError) as error:
      imagenet_train_eval.run()
  assert str(data) in str(error.value) and "\n" not in str(error.value)
