r"""Per-step cost of RigL and SET against dense training with the Keras 3 optimizer.

Two measurements, each Keras backend in its own subprocess (KERAS_BACKEND must be set
before Keras is imported):

1. Cycle-mean training step (tensorflow and jax backends). For FC-300-100 and
   WRN-22-2 (`rigl.models` built with `keras`), three copies of the model (dense: plain
   SGD; RigL and SET: `rigl.sparsify`, sparsity 0.9, ERK, one mask update every
   --cycle_steps steps, drop fraction 0.3) are compiled with `jit_compile=True` and
   SGD with momentum 0.9, then trained with `model.fit` on one fixed random batch,
   repeated. After --warmup_steps (compilation, the first mask update), each method
   runs --cycles whole mask-update cycles, one `fit` call of --cycle_steps steps per
   cycle, the methods alternating (each round starts one method later), so that
   drifts of the machine fall on every method alike. A cycle's time runs from the
   epoch's start to its end after the epoch's loss and the last-updated weights have
   been copied to the host (JAX dispatches asynchronously), so it also holds `fit`'s
   per-epoch work, the same for every method; it includes exactly one mask-update
   step (for RigL, the update replaces that step's optimizer step). WRN-22-2 trains
   at batch 32, not CIFAR's 128, so that the full run fits about 10 minutes.
   Reported: mean step per cycle (median [min, max] over cycles) and ratios to dense
   paired within rounds. Target: <= 1.05x dense on WRN-22-2.
2. One mask update (`SparseOptimizer.update_masks` on fixed random gradients) of a
   single Conv2D 3x3x512x512 kernel (2,359,296 weights) at sparsity 0.9, RigL and SET,
   on the tensorflow, jax and (if installed) torch backends. TensorFlow: a
   `tf.function(jit_compile=True)`; JAX: `jax.jit` of a pure function that runs the
   update in a `keras.StatelessScope` over the optimizer's and model's variables and
   returns their new values (waited for with `block_until_ready`); torch: eager.
   After one compiling call, --update_repeats calls are timed. Target: < 100 ms.

Writes keras3_overhead.json and keras3_overhead.md under --output_dir. Full run
(about 10 minutes on two idle CPU cores, most of it WRN-22-2: compiling three
models and 3 x 4 cycles of 100 steps per backend), from the repository root:

  env/bin/python -m benchmarks.keras3_overhead

Smoke test (a few minutes, most of it compiling WRN-22-2):

  env/bin/python -m benchmarks.keras3_overhead --cycle_steps=3 --cycles=1,1 \
      --warmup_steps=1,1 --batch_sizes=8,2 --update_repeats=1 --output_dir=/tmp/k3
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parent.parent
FLAGS = flags.FLAGS
BACKENDS = ("tensorflow", "jax", "torch")
# Backends the training steps are timed on (torch has no `jit_compile=True` step).
STEP_BACKENDS = ("tensorflow", "jax")
MODELS = ("mnist_fc", "wrn_22_2")
MODEL_LABELS = {"mnist_fc": "FC-300-100", "wrn_22_2": "WRN-22-2"}
INPUT_SHAPES = {"mnist_fc": (784,), "wrn_22_2": (32, 32, 3)}
NUM_CLASSES = 10
# Timed methods: "dense" trains with the plain optimizer.
METHODS = ("dense", "rigl", "set")
METHOD_LABELS = {"dense": "Dense", "rigl": "RigL", "set": "SET"}
SPARSITY = 0.9
DISTRIBUTION = "erdos_renyi_kernel"
DROP_FRACTION = 0.3
LEARNING_RATE = 0.1
MOMENTUM = 0.9
STEP_TARGET_RATIO = 1.05
STEP_TARGET_MODEL = "wrn_22_2"
# The single kernel of the mask-update measurement: Conv2D 3x3, 512 -> 512 channels.
UPDATE_KERNEL_SIZE = 3
UPDATE_CHANNELS = 512
UPDATE_INPUT_SIZE = 4
UPDATE_SPARSITY = 0.9
UPDATE_DISTRIBUTION = "random"  # Uniform: the single layer gets exactly 0.9.
UPDATE_METHODS = ("rigl", "set")
UPDATE_TARGET_S = 0.1

flags.DEFINE_list("backends", list(STEP_BACKENDS),
                  f"Backends whose training steps are timed, of {', '.join(STEP_BACKENDS)}.")
flags.DEFINE_list("update_backends", list(BACKENDS),
                  "Backends whose mask update is timed (torch is skipped if it is not "
                  "installed).")
flags.DEFINE_list("models", list(MODELS), f"Models, of {', '.join(MODELS)}.")
flags.DEFINE_list("batch_sizes", ["100", "32"], "Batch per model, in --models order.")
flags.DEFINE_list("cycles", ["30", "4"], "Timed mask-update cycles per method, per model.")
flags.DEFINE_list("warmup_steps", ["100", "3"],
                  "Untimed steps per method before the cycles, per model (the first "
                  "compiles the step).")
flags.DEFINE_integer("cycle_steps", 100, "Steps between mask updates (Delta T).")
flags.DEFINE_integer("update_repeats", 10, "Timed mask updates per method and backend.")
flags.DEFINE_string("output_dir", str(REPO / "benchmarks" / "results"),
                    "Where the results go.")
flags.DEFINE_enum("worker", None, list(BACKENDS),
                  "Internal: measure on this backend (KERAS_BACKEND set by the parent).")
flags.DEFINE_string("worker_output", None, "Internal: the worker's JSON result.")


def summary(values: list[float]) -> dict[str, float]:
  return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def rotated(items: tuple[str, ...], shift: int) -> list[str]:
  shift %= len(items)
  return list(items[shift:] + items[:shift])


def per_model(values: list[str], name: str) -> dict[str, int]:
  if len(values) != len(FLAGS.models):
    raise app.UsageError(f"--{name} needs one value per model in --models; got {values}.")
  return {model: int(value) for model, value in zip(FLAGS.models, values)}


# ----- worker: runs under one backend -------------------------------------------------


def build_model(name: str):
  """The Keras 3 twin of `rigl.models`' `name` (same layer names and initialisers)."""
  import keras  # pylint: disable=import-outside-toplevel
  from rigl.models import mnist_fc  # pylint: disable=import-outside-toplevel
  from rigl.models import wide_resnet  # pylint: disable=import-outside-toplevel
  if name == "mnist_fc":
    return mnist_fc(keras_module=keras)
  return wide_resnet(22, 2, keras_module=keras)


def compiled_model(name: str, method: str, cycle_steps: int):
  """`name` with `method`'s optimizer, compiled with a jit-compiled step."""
  import keras  # pylint: disable=import-outside-toplevel
  import rigl  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(0)
  model = build_model(name)
  optimizer = keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM)
  if method != "dense":
    optimizer = rigl.sparsify(
        model, optimizer, method=method, sparsity=SPARSITY, distribution=DISTRIBUTION,
        schedule=rigl.MaskUpdateSchedule(0, -1, cycle_steps, DROP_FRACTION))
  model.compile(optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=True)
  return model


def cycle_timer():
  """A callback that records each epoch's seconds, waiting for its results."""
  import keras  # pylint: disable=import-outside-toplevel

  class CycleTimer(keras.callbacks.Callback):
    """Seconds from epoch start to the epoch's loss and last weights on the host."""

    def __init__(self):
      super().__init__()
      self.seconds = []
      self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
      self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      keras.ops.convert_to_numpy(logs["loss"])
      keras.ops.convert_to_numpy(self.model.trainable_variables[-1])
      self.seconds.append(time.perf_counter() - self._start)

  return CycleTimer()


def measure_steps(name: str, batch: int, cycles: int, warmup: int) -> dict[str, object]:
  """Cycle-mean step of every method on one model (see the module docstring)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(batch,) + INPUT_SHAPES[name]).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, size=(batch,)).astype(np.int32)
  data = tf.data.Dataset.from_tensors((images, labels)).repeat()
  models = {method: compiled_model(name, method, FLAGS.cycle_steps) for method in METHODS}
  warmup_s = {}
  for method, model in models.items():
    timer = cycle_timer()
    model.fit(data, epochs=1, steps_per_epoch=warmup, verbose=0, callbacks=[timer])
    warmup_s[method] = timer.seconds[0]
    print(f"{name}: {method} compiled and warmed up in {warmup_s[method]:.1f} s",
          flush=True)
  seconds = {method: [] for method in METHODS}
  for cycle in range(cycles):
    for method in rotated(METHODS, cycle):
      timer = cycle_timer()
      models[method].fit(data, epochs=1, steps_per_epoch=FLAGS.cycle_steps, verbose=0,
                         callbacks=[timer])
      seconds[method].append(timer.seconds[0] / FLAGS.cycle_steps)
    print(f"{name}: cycle {cycle + 1}/{cycles}: " + "  ".join(
        f"{method} {seconds[method][-1] * 1e3:.1f} ms/step" for method in METHODS),
          flush=True)
  rows = []
  for method in METHODS:
    rows.append({
        "method": method, "step_s": summary(seconds[method]),
        "ratio_to_dense": summary([step / dense for step, dense in
                                   zip(seconds[method], seconds["dense"])]),
        "warmup_s": warmup_s[method], "cycle_step_s": seconds[method]})
  return {"model": name, "batch": batch, "cycles": cycles, "warmup_steps": warmup,
          "rows": rows}


def update_function(optimizer, model):
  """A compiled call of `optimizer.update_masks(gradients)` that waits for the result."""
  import keras  # pylint: disable=import-outside-toplevel
  from keras import ops  # pylint: disable=import-outside-toplevel
  backend = keras.backend.backend()
  if backend == "jax":
    import jax  # pylint: disable=import-outside-toplevel
    variables = list(model.trainable_variables) + optimizer.variables

    def pure_update(values, gradients):
      with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
        optimizer.update_masks(gradients)
      return [scope.get_current_value(variable) for variable in variables]

    jitted = jax.jit(pure_update)
    values = [variable.value for variable in variables]
    return lambda gradients: jax.block_until_ready(jitted(values, gradients))
  if backend == "tensorflow":
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    update = tf.function(optimizer.update_masks, jit_compile=True, autograph=False)
  else:
    update = optimizer.update_masks

  def update_and_wait(gradients):
    update(gradients)
    return ops.convert_to_numpy(optimizer.schedule_state)

  return update_and_wait


def measure_update(method: str) -> dict[str, object]:
  """Seconds of one mask update of the single 3x3x512x512 kernel."""
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import rigl  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(0)
  inputs = keras.Input((UPDATE_INPUT_SIZE, UPDATE_INPUT_SIZE, UPDATE_CHANNELS))
  outputs = keras.layers.Conv2D(UPDATE_CHANNELS, UPDATE_KERNEL_SIZE, padding="same",
                                use_bias=False, name="conv")(inputs)
  model = keras.Model(inputs, outputs)
  optimizer = rigl.sparsify(
      model, keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM), method=method,
      sparsity=UPDATE_SPARSITY, distribution=UPDATE_DISTRIBUTION,
      schedule=rigl.MaskUpdateSchedule(0, -1, FLAGS.cycle_steps, DROP_FRACTION))
  optimizer.build(model.trainable_variables)
  kernel = optimizer.kernels["conv"]
  gradients = [keras.ops.convert_to_tensor(np.random.default_rng(1).normal(
      size=tuple(kernel.shape)).astype(np.float32))]
  update = update_function(optimizer, model)
  start = time.perf_counter()
  update(gradients)
  first_s = time.perf_counter() - start
  times = []
  for _ in range(FLAGS.update_repeats):
    start = time.perf_counter()
    update(gradients)
    times.append(time.perf_counter() - start)
  print(f"{method} mask update of {int(np.prod(kernel.shape)):,} weights: "
        f"{statistics.median(times) * 1e3:.1f} ms (first call {first_s:.1f} s)", flush=True)
  return {"method": method, "weights": int(np.prod(kernel.shape)),
          "first_call_s": first_s, "update_s": summary(times)}


def versions() -> dict[str, str]:
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  found = {"python": platform.python_version(), "keras": keras.__version__,
           "tensorflow": tf.__version__, "numpy": np.__version__}
  backend = keras.backend.backend()
  if backend != "tensorflow":
    found[backend] = importlib.import_module(backend).__version__
  return found


def run_worker() -> None:
  """Measures on the backend the parent chose; writes --worker_output."""
  import keras  # pylint: disable=import-outside-toplevel
  backend = keras.backend.backend()
  if backend != FLAGS.worker:
    raise RuntimeError(f"--worker={FLAGS.worker} but Keras runs on {backend}.")
  result: dict[str, object] = {"backend": backend, "versions": versions(), "models": [],
                               "updates": []}
  if backend in FLAGS.backends:
    batches = per_model(FLAGS.batch_sizes, "batch_sizes")
    cycles = per_model(FLAGS.cycles, "cycles")
    warmups = per_model(FLAGS.warmup_steps, "warmup_steps")
    for name in FLAGS.models:
      keras.backend.clear_session()
      result["models"].append(measure_steps(name, batches[name], cycles[name],
                                            warmups[name]))
  if backend in FLAGS.update_backends:
    for method in UPDATE_METHODS:
      keras.backend.clear_session()
      result["updates"].append(measure_update(method))
  pathlib.Path(FLAGS.worker_output).write_text(json.dumps(result, indent=2) + "\n")


# ----- parent: one subprocess per backend, then the report ------------------------------


def run_backend(backend: str, directory: pathlib.Path) -> dict[str, object]:
  output = directory / f"{backend}.json"
  environment = dict(os.environ, KERAS_BACKEND=backend,
                     TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
  command = [sys.executable, "-m", "benchmarks.keras3_overhead", *sys.argv[1:],
             f"--worker={backend}", f"--worker_output={output}"]
  print(f"=== {backend} ===", flush=True)
  subprocess.run(command, env=environment, cwd=REPO, check=True)
  return json.loads(output.read_text())


def _span(values: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
  return (f"{values['median'] * scale:.{digits}f} [{values['min'] * scale:.{digits}f}, "
          f"{values['max'] * scale:.{digits}f}]")


def write_report(results: dict[str, object], directory: pathlib.Path) -> pathlib.Path:
  """Writes keras3_overhead.json and .md; returns the markdown's path."""
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "keras3_overhead.json").write_text(json.dumps(results, indent=2) + "\n")
  machine = results["machine"]
  lines = [
      "# Keras 3 sparse training: step cost against dense, and one mask update", "",
      f"Machine: {machine['processor']}, {machine['cpu_count']} CPUs "
      f"({machine['usable_cpus']} usable), no GPU. Versions: "
      + ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
      + ". Written by `benchmarks/keras3_overhead.py` (its docstring describes the "
      "method).", "",
      "## Cycle-mean training step", "",
      f"`model.fit` with `jit_compile=True`, SGD momentum {MOMENTUM}; RigL and SET at "
      f"sparsity {SPARSITY} ({DISTRIBUTION}), one mask update every "
      f"{results['cycle_steps']} steps (drop fraction {DROP_FRACTION}). ms/step is the "
      "mean over one whole cycle, median [min, max] over cycles; ratios are paired "
      f"within rounds. Target: RigL and SET <= {STEP_TARGET_RATIO:.2f}x dense on "
      f"{MODEL_LABELS[STEP_TARGET_MODEL]}.", "",
      "| Backend | Model | Batch | Cycles | Dense ms/step | RigL ms/step | RigL / dense "
      "| SET ms/step | SET / dense | Target met |",
      "|---|---|---|---|---|---|---|---|---|---|"]
  for backend in results["backends"]:
    for model in backend["models"]:
      rows = {row["method"]: row for row in model["rows"]}
      target = "-"
      if model["model"] == STEP_TARGET_MODEL:
        target = "yes" if all(rows[m]["ratio_to_dense"]["median"] <= STEP_TARGET_RATIO
                              for m in ("rigl", "set")) else "no"
      lines.append(
          f"| {backend['backend']} | {MODEL_LABELS[model['model']]} | {model['batch']} | "
          f"{model['cycles']} | {_span(rows['dense']['step_s'], 1e3)} | "
          f"{_span(rows['rigl']['step_s'], 1e3)} | "
          f"{_span(rows['rigl']['ratio_to_dense'], 1.0, 3)} | "
          f"{_span(rows['set']['step_s'], 1e3)} | "
          f"{_span(rows['set']['ratio_to_dense'], 1.0, 3)} | {target} |")
  lines += [
      "", "## One mask update", "",
      f"`update_masks` of one Conv2D kernel {UPDATE_KERNEL_SIZE}x{UPDATE_KERNEL_SIZE}x"
      f"{UPDATE_CHANNELS}x{UPDATE_CHANNELS} at sparsity {UPDATE_SPARSITY}: "
      "TensorFlow `tf.function(jit_compile=True)`, JAX `jax.jit` of the update in a "
      "stateless scope, torch eager. Median [min, max] over "
      f"{results['update_repeats']} calls after a compiling one. Target: < "
      f"{UPDATE_TARGET_S * 1e3:.0f} ms.", "",
      "| Backend | Method | Weights | Update (ms) | First call (s) | Target met |",
      "|---|---|---|---|---|---|"]
  for backend in results["backends"]:
    for row in backend["updates"]:
      met = "yes" if row["update_s"]["median"] < UPDATE_TARGET_S else "no"
      lines.append(f"| {backend['backend']} | {METHOD_LABELS[row['method']]} | "
                   f"{row['weights']:,} | {_span(row['update_s'], 1e3, 1)} | "
                   f"{row['first_call_s']:.1f} | {met} |")
  skipped = results.get("skipped_backends")
  if skipped:
    lines += ["", f"Not installed, skipped: {', '.join(skipped)}."]
  path = directory / "keras3_overhead.md"
  path.write_text("\n".join(lines) + "\n")
  return path


def main(argv: list[str]) -> None:
  del argv
  if FLAGS.worker:
    run_worker()
    return
  for name, allowed in (("backends", STEP_BACKENDS), ("update_backends", BACKENDS),
                        ("models", MODELS)):
    unknown = sorted(set(FLAGS[name].value) - set(allowed))
    if unknown:
      raise app.UsageError(f"--{name}: unknown {unknown}; allowed: {', '.join(allowed)}.")
  for name in ("batch_sizes", "cycles", "warmup_steps"):
    per_model(FLAGS[name].value, name)
  wanted = [b for b in BACKENDS if b in FLAGS.backends or b in FLAGS.update_backends]
  skipped = [b for b in wanted if b != "tensorflow" and importlib.util.find_spec(b) is None]
  results: dict[str, object] = {
      "machine": {"processor": platform.processor() or platform.machine(),
                  "cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
                  "platform": platform.platform(), "versions": {}},
      "cycle_steps": FLAGS.cycle_steps, "update_repeats": FLAGS.update_repeats,
      "skipped_backends": skipped, "backends": []}
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as directory:
    for backend in wanted:
      if backend not in skipped:
        result = run_backend(backend, pathlib.Path(directory))
        results["machine"]["versions"].update(result.pop("versions"))
        results["backends"].append(result)
  results["wall_time_s"] = round(time.perf_counter() - start, 1)
  path = write_report(results, pathlib.Path(FLAGS.output_dir))
  print(path.read_text())
  print(f"Wrote {path} ({results['wall_time_s']} s)")


if __name__ == "__main__":
  app.run(main)
