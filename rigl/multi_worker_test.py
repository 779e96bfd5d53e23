"""MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1.

One two-worker RigL job (`rigl.testing.multi_worker_job`, TF_CONFIG set here) records
its masks and kernels after each of its first batches, trains on with checkpoints,
and then loses worker 1 to SIGKILL. The tests check that

- both workers hold the same masks after every batch, equal to those of a one-process
  run with the same global batch (in this process): gradients are all-reduced before
  any score is computed and random draws are stateless, so only the summation order
  of the all-reduce differs, which moves weights by float rounding but no mask;
- worker 0 then stops within `FAILURE_EXIT_S` with a one-line message naming worker
  1 (no hang, no traceback), and every checkpoint in the run directory restores and
  equals the one-process run trained on the same batches;
- a restarted non-chief worker resumes from the run directory's latest checkpoint,
  as the chief does (in this process, with `is_chief` saying no);
- `strategies.stop_on_worker_failure` turns the errors TensorFlow raised here into
  that one line, and lets other errors through.

The job runs once for the first two tests (a module fixture), as every worker process
pays TensorFlow's start-up.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf

from rigl import strategies
from rigl import training
from rigl.testing import multi_worker_job as job

NUM_WORKERS = 2
HOST = "127.0.0.1"
# Batches recorded one by one: four RigL mask updates at a frequency of 2 steps.
RECORD_BATCHES = 12
CHECKPOINT_BATCHES = 4
# More batches than the job can train before it is killed.
ENDLESS_BATCHES = 10**6
# Start-up of two TensorFlow processes and the recorded batches, on a busy machine.
STARTUP_TIMEOUT_S = 240
# Worker 0 sees worker 1's connections drop (about 2 s), or the coordination service
# misses its heartbeats (timeout 10 s, detected within 8-21 s here). Longer is a hang.
FAILURE_EXIT_S = 60
POLL_S = 0.1
# Weights of the two- and one-process runs differ by the all-reduce's rounding.
KERNEL_TOLERANCE = 1e-5
LOG_TAIL_CHARS = 3000
REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class KilledJob:
  """What the two-worker job left behind and how worker 0 ended."""
  masks_dir: pathlib.Path
  run_dir: pathlib.Path
  logs: list[pathlib.Path]
  exit_code: int | None  # None: worker 0 was still running after FAILURE_EXIT_S.
  exit_s: float  # From the kill of worker 1 to the end of worker 0.

  def log(self, index: int) -> str:
    return self.logs[index].read_text(errors="replace")


def _free_ports(count: int) -> list[int]:
  sockets = [socket.socket() for _ in range(count)]
  try:
    for sock in sockets:
      sock.bind((HOST, 0))
    return [sock.getsockname()[1] for sock in sockets]
  finally:
    for sock in sockets:
      sock.close()


def _latest_checkpoint_step(run_dir: pathlib.Path) -> int:
  latest = tf.train.latest_checkpoint(str(run_dir))
  return int(latest.rsplit("-", 1)[1]) if latest else -1


def _wait_until(condition, processes, logs, what: str) -> None:
  """Polls `condition` until it holds; fails if a worker ends or time runs out first."""
  deadline = time.monotonic() + STARTUP_TIMEOUT_S
  while not condition():
    for index, process in enumerate(processes):
      if process.poll() is not None:
        pytest.fail(f"Worker {index} ended (status {process.returncode}) before {what}:\n"
                    f"{logs[index].read_text(errors='replace')[-LOG_TAIL_CHARS:]}")
    if time.monotonic() > deadline:
      pytest.fail(f"No {what} within {STARTUP_TIMEOUT_S} s:\n" + "\n".join(
          log.read_text(errors="replace")[-LOG_TAIL_CHARS:] for log in logs))
    time.sleep(POLL_S)


@pytest.fixture(scope="module")
def killed_job(tmp_path_factory) -> KilledJob:
  """Runs the two-worker job, SIGKILLs worker 1 mid-run, and waits for worker 0."""
  root = tmp_path_factory.mktemp("multi_worker")
  masks_dir, run_dir, scratch = root / "masks", root / "run", root / "scratch"
  masks_dir.mkdir()
  scratch.mkdir()
  addresses = [f"{HOST}:{port}" for port in _free_ports(NUM_WORKERS)]
  logs = [root / f"worker-{index}.log" for index in range(NUM_WORKERS)]
  processes = []
  try:
    for index, log in enumerate(logs):
      tf_config = {"cluster": {"worker": addresses},
                   "task": {"type": "worker", "index": index}}
      # TMPDIR: the non-chief worker writes its checkpoints to a temporary directory.
      env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TMPDIR=str(scratch),
                 TF_CPP_MIN_LOG_LEVEL="2")
      with open(log, "w") as output:
        processes.append(subprocess.Popen(
            [sys.executable, "-m", job.__name__, "--strategy=multi_worker_mirrored",
             f"--batches={ENDLESS_BATCHES}", f"--record_batches={RECORD_BATCHES}",
             f"--masks_dir={masks_dir}", f"--run_dir={run_dir}",
             f"--steps_per_checkpoint={CHECKPOINT_BATCHES}"],
            cwd=REPOSITORY, env=env, stdout=output, stderr=subprocess.STDOUT))
    records = [masks_dir / job.MASKS_FILE.format(task=index)
               for index in range(NUM_WORKERS)]
    _wait_until(lambda: all(path.exists() for path in records), processes, logs,
                "mask records")
    with np.load(records[0]) as recorded:
      recorded_step = int(recorded["steps"][-1])
    # A checkpoint after the recorded batches: the job is in its long training stretch.
    _wait_until(lambda: _latest_checkpoint_step(run_dir) > recorded_step, processes, logs,
                "checkpoint after the recorded batches")
    processes[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    try:
      exit_code = processes[0].wait(timeout=FAILURE_EXIT_S)
    except subprocess.TimeoutExpired:
      exit_code = None
    return KilledJob(masks_dir, run_dir, logs, exit_code, time.monotonic() - killed_at)
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
      process.wait()


def _one_process_trainer(batches: int, run_dir: str = "") -> training.Trainer:
  model, optimizer = job.build(tf.distribute.get_strategy())
  return training.Trainer(model, optimizer,
                          job.run_config(batches, run_dir, log=lambda line: None))


def _assert_kernels_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
  np.testing.assert_allclose(actual, expected, rtol=0, atol=KERNEL_TOLERANCE,
                             err_msg=what)


def test_masks_identical_across_workers_and_to_one_process(killed_job):
  workers = [dict(np.load(killed_job.masks_dir / job.MASKS_FILE.format(task=index)))
             for index in range(NUM_WORKERS)]
  trainer = _one_process_trainer(RECORD_BATCHES)
  reference = job.train_recording(trainer, RECORD_BATCHES)
  steps = reference["steps"]
  for index, records in enumerate(workers):
    np.testing.assert_array_equal(records["steps"], steps)
    for name in trainer.optimizer.masks:
      for batch, step in enumerate(steps):
        np.testing.assert_array_equal(
            records[f"{name}.mask"][batch], reference[f"{name}.mask"][batch],
            err_msg=f"{name}'s mask of worker {index} differs from the one-process "
                    f"run's after batch {batch + 1} (step {step}).")
      _assert_kernels_close(records[f"{name}.kernel"], reference[f"{name}.kernel"],
                            f"{name}'s kernels of worker {index}")
  # RigL's mask updates take no optimizer step: they are the batches whose step stays.
  initial = {name: np.packbits(mask != 0)
             for name, mask in trainer.optimizer.initial_masks().items()}
  previous_steps = np.concatenate([[0], steps[:-1]])
  updates = 0
  for batch, is_update in enumerate(steps == previous_steps):
    changed = [name for name in initial if not np.array_equal(
        reference[f"{name}.mask"][batch],
        reference[f"{name}.mask"][batch - 1] if batch else initial[name])]
    assert bool(changed) == is_update, (
        f"Batch {batch + 1} (steps {steps}) changed the masks of {changed}.")
    updates += is_update
  # Each update follows MASK_UPDATE_FREQUENCY optimizer steps, one batch each.
  assert updates == RECORD_BATCHES // (job.MASK_UPDATE_FREQUENCY + 1)


def test_killed_worker_stops_the_job_cleanly(killed_job):
  assert killed_job.exit_code is not None, (
      f"Worker 0 still ran {FAILURE_EXIT_S} s after worker 1 was killed:\n"
      f"{killed_job.log(0)[-LOG_TAIL_CHARS:]}")
  output = killed_job.log(0)
  assert killed_job.exit_code == 1, (
      f"Worker 0 ended with status {killed_job.exit_code} {killed_job.exit_s:.1f} s "
      f"after worker 1 was killed:\n{output[-LOG_TAIL_CHARS:]}")
  assert "Worker 0 stops: worker 1 of the multi-worker job failed" in output, (
      output[-LOG_TAIL_CHARS:])
  assert "Traceback" not in output, output[-LOG_TAIL_CHARS:]

  state = tf.train.get_checkpoint_state(str(killed_job.run_dir))
  assert state.all_model_checkpoint_paths
  restored = _one_process_trainer(ENDLESS_BATCHES)
  reference = _one_process_trainer(ENDLESS_BATCHES)
  for path in state.all_model_checkpoint_paths:  # Oldest first.
    restored.restore(path)  # Raises unless every variable is in the checkpoint.
    assert path.endswith(f"-{restored.step}")
    reference.train(job.train_input, until=restored.progress)
    assert (reference.step, reference.progress) == (restored.step, restored.progress)
    for name, mask in reference.optimizer.masks.items():
      np.testing.assert_array_equal(restored.optimizer.masks[name].numpy(), mask.numpy(),
                                    err_msg=f"{name}'s mask in {path}")
      _assert_kernels_close(restored.optimizer.kernels[name].numpy(),
                            reference.optimizer.kernels[name].numpy(),
                            f"{name}'s kernel in {path}")


def test_restarted_non_chief_worker_resumes_from_the_run_directory(tmp_path,
                                                                   monkeypatch):
  """A non-chief saves to scratch space but resumes from the chief's run directory."""
  run_dir = str(tmp_path / "run")
  chief = _one_process_trainer(CHECKPOINT_BATCHES, run_dir)
  chief.train(job.train_input, until=CHECKPOINT_BATCHES)
  assert tf.train.latest_checkpoint(run_dir)
  scratch = tmp_path / "scratch"
  scratch.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(scratch))
  monkeypatch.setattr(strategies, "is_chief", lambda strategy: False)
  worker = _one_process_trainer(ENDLESS_BATCHES, run_dir)
  assert not worker.is_chief
  assert worker.restore_latest()
  assert (worker.step, worker.progress) == (chief.step, chief.progress)


# What worker 0 raised when worker 1 was killed: its connection dropped during a
# compiled training step, or the coordination service missed its heartbeats.
CONNECTION_RESET = (
    "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most "
    "recent call last):\n  File \"rigl/training.py\", line 387, in train_step\n\n"
    "Collective ops is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC "
    "error information from remote target /job:worker/replica:0/task:1 while calling "
    "/tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received from peer  "
    "{grpc_message:\"recvmsg:Connection reset by peer\", grpc_status:14}\nThe error "
    "could be from a previous operation. Restart your program to reset.\n\t "
    "[[{{node CollectiveReduceV2}}]] [Op:__inference_train_step_1206]")
MISSED_HEARTBEATS = (
    "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/"
    "replica:0/task:0/device:CPU:0}} Collective ops is aborted by: Error reported from "
    "/job:worker/task:1: The following tasks are unhealthy (stopped sending "
    "heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed. Check the task "
    "logs for an earlier error, or scheduler events (e.g. preemption, eviction) to debug "
    "further.\nThe error could be from a previous operation. Restart your program to "
    "reset. [Op:CollectiveReduceV2] name: ")


class _WorkerStrategy:
  """Stands for a strategy of worker 0 of a two-worker job (only its resolver)."""

  def __init__(self):
    self.cluster_resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": [f"{HOST}:1", f"{HOST}:2"]}),
        task_type="worker", task_id=0)


@pytest.mark.parametrize("message, reason", [
    (CONNECTION_RESET, "(UnavailableError: recvmsg:Connection reset by peer)"),
    (MISSED_HEARTBEATS, "(UnavailableError: Error reported from /job:worker/task:1: The "
                        "following tasks are unhealthy (stopped sending heartbeats))"),
])
def test_worker_failure_names_the_failed_worker(message, reason):
  strategy = _WorkerStrategy()
  assert strategies.num_workers(strategy) == NUM_WORKERS
  with pytest.raises(strategies.WorkerFailure) as raised:
    with strategies.stop_on_worker_failure(strategy):
      raise tf.errors.UnavailableError(None, None, message)
  failure = raised.value
  assert failure.failed_tasks == ("worker 1",)
  assert str(failure).startswith(
      f"Worker 0 stops: worker 1 of the multi-worker job failed {reason}.")
  assert "\n" not in str(failure)
  assert failure.__cause__ is None and failure.__suppress_context__


@pytest.mark.parametrize("error, strategy", [
    # Not about a peer: an input file on an unreachable file system.
    (tf.errors.UnavailableError(None, None, "gs://bucket/train-00001: connection "
                                "failed"), _WorkerStrategy()),
    # Not a peer's failure, though it mentions collectives.
    (tf.errors.InvalidArgumentError(None, None, CONNECTION_RESET), _WorkerStrategy()),
    # No other worker to blame.
    (tf.errors.UnavailableError(None, None, CONNECTION_RESET),
     tf.distribute.get_strategy()),
])
def test_other_errors_pass_unchanged(error, strategy):
  with pytest.raises(type(error)) as raised:
    with strategies.stop_on_worker_failure(strategy):
      raise error
  assert raised.value is error
