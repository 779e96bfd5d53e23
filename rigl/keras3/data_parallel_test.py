"""Data-parallel Keras 3 training keeps one set of masks, those of a one-device run.

JAX `keras.distribution.DataParallel` and TensorFlow `MirroredStrategy`, each over
two CPU devices, train RigL and SET with `model.fit` for a few mask updates; every
replica must hold the same masks, equal to those of a one-device run with the same
global batches. Devices must be configured before JAX or TensorFlow initialises, so
each configuration trains in a process of its own
(`rigl.testing.keras3_data_parallel_job`); the four processes run concurrently.

Gradients summed over replicas differ from one-device ones in the last float bits
(kernels end up ~1e-8 apart). The job's tiny model has a few hundred Gaussian weights
and gradients, spread far wider than that (the kept weights differ by 3e-4 or more),
so no drop or grow score is near a tie and the masks are compared exactly.
"""

import subprocess
import sys

import keras
import numpy as np
import pytest

from rigl.testing import keras3_data_parallel_job as job

# The jobs choose their own backends: run them once, in the default-backend session.
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="runs its JAX and TensorFlow jobs in the TensorFlow-backend session")

BACKENDS = ("jax", "tensorflow")
REPLICAS = 2
ONE_DEVICE = 1
JOB_MODULE = job.__name__
JOB_TIMEOUT_S = 300
# Characters of a failed job's output shown in the failure message.
LOG_TAIL = 4000


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[tuple[str, int], dict[str, np.ndarray]]:
  """The arrays written by the job of every (backend, replicas), run concurrently."""
  directory = tmp_path_factory.mktemp("data_parallel")
  processes = {}
  for backend in BACKENDS:
    for replicas in (ONE_DEVICE, REPLICAS):
      output = directory / f"{backend}-{replicas}.npz"
      processes[backend, replicas] = output, subprocess.Popen(
          [sys.executable, "-m", JOB_MODULE, f"--replicas={replicas}",
           f"--output={output}"],
          env=job.environment(backend, replicas), stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT, text=True)
  results = {}
  for (backend, replicas), (output, process) in processes.items():
    log, _ = process.communicate(timeout=JOB_TIMEOUT_S)
    assert process.returncode == 0, (
        f"{backend} job with {replicas} replicas failed:\n{log[-LOG_TAIL:]}")
    with np.load(output) as arrays:
      results[backend, replicas] = dict(arrays)
  return results


def masks(arrays: dict[str, np.ndarray], method: str, kind: str) -> dict[str, np.ndarray]:
  """`kind` (`initial`, `replicas`, `sparsity`) of every masked layer, by layer name."""
  prefix, suffix = f"{method}/", f"/{kind}"
  return {key[len(prefix):-len(suffix)]: value for key, value in arrays.items()
          if key.startswith(prefix) and key.endswith(suffix)}


@pytest.mark.parametrize("method", job.METHODS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_replica_holds_the_same_masks(runs, backend, method):
  for name, copies in masks(runs[backend, REPLICAS], method, "replicas").items():
    assert len(copies) == REPLICAS, name
    for replica, copy in enumerate(copies[1:], start=1):
      np.testing.assert_array_equal(copy, copies[0], err_msg=f"{name}, replica {replica}")


@pytest.mark.parametrize("method", job.METHODS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_masks_equal_those_of_one_device(runs, backend, method):
  distributed = masks(runs[backend, REPLICAS], method, "replicas")
  one_device = masks(runs[backend, ONE_DEVICE], method, "replicas")
  assert distributed.keys() == one_device.keys()
  assert distributed
  for name, copies in one_device.items():
    assert len(copies) == ONE_DEVICE, name
    np.testing.assert_array_equal(distributed[name][0], copies[0], err_msg=name)


@pytest.mark.parametrize("method", job.METHODS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_updated_masks_keep_the_target_sparsity(runs, backend, method):
  arrays = runs[backend, REPLICAS]
  initial = masks(arrays, method, "initial")
  sparsity = masks(arrays, method, "sparsity")
  for name, copies in masks(arrays, method, "replicas").items():
    final = copies[0]
    assert np.isin(final, (0, 1)).all(), name
    assert np.count_nonzero(final) == np.count_nonzero(initial[name]), name
    assert abs(np.mean(final == 0) - sparsity[name]) <= 1 / final.size, name
    assert np.any(final != initial[name]), f"{name}: the mask was never updated"
