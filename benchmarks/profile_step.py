r"""Where the time of a training step and of a mask update goes, op type by op type.

Traces --steps ordinary training steps of every method (and, for the methods that
change masks, --updates mask updates alone) with the TensorFlow profiler, on the
models and settings of `step_overhead.py`, and sums the traced kernel time per op type
(CPU time summed over threads, per step or per update). The traces stay in
--trace_dir for TensorBoard's profile plugin; the tables go to
<output_dir>/step_profile_<model>.md.

  python benchmarks/profile_step.py                         # FC, batch 100
  python benchmarks/profile_step.py --model=wrn_22_2 --batch_size=32 --steps=5
"""

from __future__ import annotations

import collections
import pathlib
import re
import shutil
import tempfile

from absl import app
from absl import flags
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

# The benchmark beside this one: a script's own folder is importable.
import step_overhead

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "mnist_fc", f"One of {', '.join(step_overhead.MODELS)}.")
flags.DEFINE_integer("batch_size", 100, "Global batch.")
flags.DEFINE_list("methods", list(step_overhead.METHODS), "Methods to trace.")
flags.DEFINE_integer("steps", 50, "Traced ordinary steps per method.")
flags.DEFINE_integer("updates", 5, "Traced mask updates per method.")
flags.DEFINE_integer("top", 15, "Op types listed per table (by largest time).")
flags.DEFINE_string("trace_dir", None, "Where the traces go (default: a temporary "
                    "directory, printed).")

# Traced events named "<op name>:<op type>" are TensorFlow kernels, and this one is a
# run of an XLA-compiled program (the mask selection); the other events (executor
# bookkeeping, Python, the XLA program's insides) would count the same time twice.
_KERNEL_NAME = re.compile(r"^[^\s:]+:(\w+)$")
_XLA_PROGRAM_EVENT = "CpuExecutable::ExecuteAsyncOnStream"
XLA_PROGRAM = "(XLA-compiled program)"
_WARMUP_CALLS = 20


def op_type(event_name: str) -> str | None:
  """The op type of a traced kernel event, or None for other events."""
  if event_name == _XLA_PROGRAM_EVENT:
    return XLA_PROGRAM
  match = _KERNEL_NAME.match(event_name)
  return match.group(1) if match else None


def kernel_time_by_op_type(trace_dir: pathlib.Path, calls: int
                           ) -> tuple[dict[str, float], dict[str, float]]:
  """Microseconds and number of kernels per call, by op type, from one trace."""
  space = xplane_pb2.XSpace()
  space.ParseFromString(next(trace_dir.glob("**/*.xplane.pb")).read_bytes())
  micros, counts = collections.Counter(), collections.Counter()
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    for line in plane.lines:
      for event in line.events:
        kind = op_type(plane.event_metadata[event.metadata_id].name)
        if kind:
          micros[kind] += event.duration_ps / 1e6 / calls
          counts[kind] += 1 / calls
  return dict(micros), dict(counts)


def trace(function, calls: int, directory: pathlib.Path):
  """Traces `calls` calls of `function` into `directory`; returns the op-type sums."""
  step_overhead.seconds_per_call(function, _WARMUP_CALLS)
  shutil.rmtree(directory, ignore_errors=True)
  tf.profiler.experimental.start(str(directory))
  step_overhead.seconds_per_call(function, calls)
  tf.profiler.experimental.stop()
  return kernel_time_by_op_type(directory, calls)


def table(title: str, profiles: dict[str, tuple[dict, dict]], top: int) -> list[str]:
  methods = list(profiles)
  op_types = sorted({op for micros, _ in profiles.values() for op in micros},
                    key=lambda op: -max(profiles[m][0].get(op, 0.0) for m in methods))
  lines = [f"### {title}", "",
           "| Op type | " + " | ".join(step_overhead.METHODS[m] for m in methods) + " |",
           "|---|" + "---|" * len(methods),
           "| **all kernels** | " + " | ".join(
               f"**{sum(profiles[m][0].values()):.0f}** ({sum(profiles[m][1].values()):.0f})"
               for m in methods) + " |"]
  for op in op_types[:top]:
    lines.append(f"| {op} | " + " | ".join(
        f"{profiles[m][0].get(op, 0.0):.0f} ({profiles[m][1].get(op, 0.0):.1f})"
        for m in methods) + " |")
  return lines + [""]


def main(argv: list[str]) -> None:
  del argv
  tf.get_logger().setLevel("ERROR")
  if FLAGS.model not in step_overhead.MODELS:
    raise app.UsageError(f"--model={FLAGS.model}: allowed values: "
                         f"{', '.join(step_overhead.MODELS)}.")
  unknown = sorted(set(FLAGS.methods) - set(step_overhead.METHODS))
  if unknown:
    raise app.UsageError(f"--methods: unknown {unknown}; allowed values: "
                         f"{', '.join(step_overhead.METHODS)}.")
  trace_root = pathlib.Path(FLAGS.trace_dir or tempfile.mkdtemp(prefix="step_profile_"))
  spec = step_overhead.MODELS[FLAGS.model]
  images, labels = step_overhead.synthetic_batch(spec, FLAGS.batch_size)
  steps, updates = {}, {}
  for method in FLAGS.methods:
    print(f"{FLAGS.model}: tracing {method}", flush=True)
    trainer = step_overhead.build_trainer(spec, method, FLAGS.batch_size, False)
    steps[method] = trace(lambda trainer=trainer: trainer._train_step(images, labels),  # pylint: disable=protected-access
                          FLAGS.steps, trace_root / f"{method}_step")
    if method not in ("baseline", "scratch"):
      optimizer = trainer.optimizer
      gradients = [tf.random.stateless_normal(kernel.shape, [1, index])
                   for index, kernel in enumerate(optimizer.kernels.values())]
      update = tf.function(lambda optimizer=optimizer, gradients=gradients:
                           optimizer.update_masks(gradients))
      updates[method] = trace(update, FLAGS.updates, trace_root / f"{method}_update")
  output = pathlib.Path(FLAGS.output_dir)
  output.mkdir(parents=True, exist_ok=True)
  path = output / f"step_profile_{FLAGS.model}.md"
  lines = [f"# Kernel time per op type: {FLAGS.model}, batch {FLAGS.batch_size}", "",
           f"Device: {step_overhead.device_description()}. Written by "
           "`benchmarks/profile_step.py` from TensorFlow profiler traces: microseconds "
           "of kernel time per call (summed over threads, so it can exceed wall time), "
           "with the number of kernels per call in brackets. ERK "
           f"{step_overhead.SPARSITY}, drop fraction {step_overhead.DROP_FRACTION}.", ""]
  lines += table(f"One ordinary training step ({FLAGS.steps} traced)", steps, FLAGS.top)
  if updates:
    lines += table(f"One mask update alone ({FLAGS.updates} traced)", updates, FLAGS.top)
  path.write_text("\n".join(lines))
  print(f"Wrote {path}; traces in {trace_root}")


if __name__ == "__main__":
  app.run(main)
