"""Timing TFLite interpreters fairly on a shared CPU, for the TFLite benchmarks.

Several interpreters of one comparison take turns in chunks of calls, so that drifts
of the machine (other jobs, frequency changes) fall on all of them alike.
"""

from __future__ import annotations

import os
import pathlib
import platform
import time
import warnings
from typing import Hashable, Mapping

import numpy as np
import tensorflow as tf

from rigl import keras_compat

MILLISECONDS = 1e3
PERCENTILES = (10, 90)
_RESOLVER = tf.lite.experimental.OpResolverType
# The interpreter's default kernels (XNNPACK delegate first), and the built-in ones.
XNNPACK, BUILT_IN = "XNNPACK", "built-in"
RESOLVERS = {XNNPACK: _RESOLVER.AUTO, BUILT_IN: _RESOLVER.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


def interpreter(path: pathlib.Path, kernels: str, num_threads: int,
                input_shape: tuple[int, ...] | None = None) -> tf.lite.Interpreter:
  """An allocated interpreter of the file at `path` with `kernels` (a RESOLVERS key).

  `input_shape` resizes the (single) input first, e.g. to another batch size.
  """
  with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice.
    warnings.simplefilter("ignore")
    result = tf.lite.Interpreter(model_path=str(path), num_threads=num_threads,
                                 experimental_op_resolver_type=RESOLVERS[kernels])
  if input_shape is not None:
    result.resize_tensor_input(result.get_input_details()[0]["index"], input_shape)
  result.allocate_tensors()
  return result


def timed_invoke(runner: tf.lite.Interpreter) -> float:
  """Seconds one `invoke()` takes."""
  start = time.perf_counter()
  runner.invoke()
  return time.perf_counter() - start


def op_counts(runner: tf.lite.Interpreter) -> dict[str, int]:
  """How many nodes of each op the interpreter holds (DELEGATE: delegated partitions)."""
  names = [node["op_name"] for node in keras_compat.tflite_nodes(runner)]
  return {name: names.count(name) for name in sorted(set(names))}


def time_in_turns(runners: Mapping[Hashable, tf.lite.Interpreter], runs: int,
                  warmup_runs: int, chunk_runs: int) -> dict[Hashable, np.ndarray]:
  """Seconds of `runs` calls of each runner after `warmup_runs` untimed ones.

  The runners take turns in chunks of `chunk_runs` calls.
  """
  for runner in runners.values():
    for _ in range(warmup_runs):
      runner.invoke()
  times = {key: [] for key in runners}
  while any(len(values) < runs for values in times.values()):
    for key, runner in runners.items():
      chunk = min(chunk_runs, runs - len(times[key]))
      times[key].extend(timed_invoke(runner) for _ in range(chunk))
  return {key: np.array(values) for key, values in times.items()}


def summary_ms(seconds: np.ndarray) -> dict[str, float]:
  """Median, percentiles, min and max of call times, in milliseconds."""
  values = seconds * MILLISECONDS
  low, high = np.percentile(values, PERCENTILES)
  return {"median_ms": float(np.median(values)), f"p{PERCENTILES[0]}_ms": float(low),
          f"p{PERCENTILES[1]}_ms": float(high), "min_ms": float(values.min()),
          "max_ms": float(values.max()), "runs": int(values.size)}


def cpu_description() -> str:
  """The CPU model and core count."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
      for line in cpuinfo:
        if line.startswith("model name"):
          return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
  except OSError:
    pass
  return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
