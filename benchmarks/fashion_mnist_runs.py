"""Runs of `mnist/mnist_train_eval.py` on real Fashion-MNIST, in parallel worker processes.

Shared by the benchmarks that compare methods on Fashion-MNIST: each run is a dict of
the script's flag values; each worker process
trains one run at a time with one TensorFlow thread, so `workers` runs share the cores
without oversubscribing them.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from typing import Iterable

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"


def train(run: dict, data_dir: str = DEFAULT_DATA_DIR) -> dict:
  """Trains one run in this process; returns it with its results."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  import tf_keras  # pylint: disable=import-outside-toplevel
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  from rigl import script_flags  # pylint: disable=import-outside-toplevel
  tf_keras.backend.clear_session()
  start = time.perf_counter()
  # Restored afterwards: a worker's next run starts from the defaults.
  with script_flags.values_restored(mnist_train_eval.FLAGS):
    script_flags.set_values(mnist_train_eval.FLAGS, dataset="fashion_mnist",
                            data_dir=data_dir, save_path="", **run)
    results = mnist_train_eval.run()
  return dict(run, test_accuracy=float(results["test_accuracy"]),
              inference_flops=float(results["inference_flops"]),
              inference_flops_ratio=float(results["inference_flops_ratio"]),
              training_flops_ratio=float(results["training_flops_ratio"]),
              global_sparsity=float(results["global_sparsity"]),
              wall_time_s=round(time.perf_counter() - start, 1))


def _train_indexed(job: tuple[int, dict, str]) -> tuple[int, dict]:
  index, run, data_dir = job
  return index, train(run, data_dir)


def train_all(runs: list[dict], workers: int = 2, data_dir: str = DEFAULT_DATA_DIR
              ) -> list[dict]:
  """Trains every run (in `workers` processes), printing a line per finished run.

  Returns the results in the order of `runs`.
  """
  jobs = [(index, run, data_dir) for index, run in enumerate(runs)]
  finished = {}
  context = multiprocessing.get_context("spawn")
  with context.Pool(workers, maxtasksperchild=4) as pool:
    for count, (index, result) in enumerate(pool.imap_unordered(_train_indexed, jobs),
                                            start=1):
      finished[index] = result
      settings = ", ".join(f"{k}={v}" for k, v in runs[index].items())
      print(f"[{count}/{len(runs)}] {settings}: accuracy {result['test_accuracy']:.4f} "
            f"({result['wall_time_s']} s)", flush=True)
  return [finished[index] for index in range(len(runs))]


def welch_p_value(a: list[float], b: list[float]) -> float | None:
  """Two-sided p-value of Welch's t-test, or None with fewer than two values each."""
  if len(a) < 2 or len(b) < 2:
    return None
  from scipy import stats  # pylint: disable=import-outside-toplevel
  return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for a single value)."""
  values = list(values)
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
