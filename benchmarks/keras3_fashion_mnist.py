r"""Fashion-MNIST RigL accuracy: the Keras 3 optimizer on JAX against the tf_keras script.

Trains the FC 784-300-100-10 network at 98% sparsity with RigL, --seeds seeds each:

- tf_keras: `mnist/mnist_train_eval.py`, driven in-process (as
  `benchmarks/mnist_methods.py` does) in a subprocess;
- Keras 3: `rigl.models.mnist_fc` built with `keras` (the same layer names, so the script's
  per-layer sparsities apply), `rigl.sparsify` and `model.fit` on the JAX backend, in a
  subprocess with KERAS_BACKEND=jax.

Both take every setting from the script's flags, set once: its defaults (batch 100,
SGD with Nesterov momentum 0.9 at 0.2, L2 1e-4 on kernels, the `random` (uniform)
distribution with layer2 at 0.9 x 98% and layer3 dense, a mask update every 100 steps
from step 0, drop fraction 0.3 with cosine annealing, zero-initialised grown weights)
with --num_epochs instead of 200 and the schedule compressed to fit: the first
learning-rate drop and the last mask update at the same fraction of training as the
defaults (epoch 75 of 200; step 50,000 of 120,000). The Keras 3 run mirrors the script:
the same sparsity config, mask-update options and piecewise-constant learning rate
(from the script's functions and constants), L2 as a kernel regularizer of
l2_scale / 2 (the script adds l2_scale * sum(w^2) / 2), softmax cross-entropy on logits,
data from `rigl.datasets.mnist` scaled to [0, 1] and reshuffled every epoch.

Reports mean +- sample standard deviation of test accuracy per implementation, and
whether their difference is within seed noise (Welch's t-test, p >= 0.05). Writes
keras3_fashion_mnist.json and .md under --output_dir. Full run (six runs of 30 epochs:
about 5 minutes on two CPU cores), from the repository root:

  env/bin/python -m benchmarks.keras3_fashion_mnist

Smoke test: add --num_epochs=1 --seeds=1 --train_examples=2000 --output_dir=/tmp/k3.
"""

from __future__ import annotations

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
IMPLEMENTATIONS = ("tf_keras", "keras3")
LABELS = {"tf_keras": "tf_keras script (mnist/mnist_train_eval.py)",
          "keras3": "Keras 3, JAX backend, model.fit"}
KERAS3_BACKEND = "jax"
TRAINING_METHOD = "rigl"
END_SPARSITY = 0.98
# Welch's t-test p-value at or above which a difference counts as seed noise.
NOISE_P_VALUE = 0.05

flags.DEFINE_string("fashion_mnist_dir", "/usr/share/datasets/fashion-mnist",
                    "Folder with the Fashion-MNIST IDX files.")
flags.DEFINE_integer("num_epochs", 30, "Training epochs of every run.")
flags.DEFINE_integer("seeds", 3, "Seeds per implementation (0, 1, ...).")
flags.DEFINE_integer("train_examples", 0,
                     "If > 0, train on only the first this many training images (smoke "
                     "tests); the test set is always whole.")
flags.DEFINE_string("output_dir", str(REPO / "benchmarks" / "results"),
                    "Where the results go.")
flags.DEFINE_enum("worker", None, list(IMPLEMENTATIONS),
                  "Internal: train every seed with this implementation.")
flags.DEFINE_string("worker_output", None, "Internal: the worker's JSON result.")


def script_settings(seed: int) -> dict[str, object]:
  """Flag values of `mnist/mnist_train_eval.py` for one run (defaults otherwise).

  The first learning-rate drop and the last mask update keep the defaults' fractions
  of training.
  """
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  return {
      "dataset": "fashion_mnist", "data_dir": FLAGS.fashion_mnist_dir,
      "network_type": "fc", "training_method": TRAINING_METHOD,
      "end_sparsity": END_SPARSITY, "seed": seed, "save_path": "",
      **mnist_train_eval.shortened_schedule(FLAGS.num_epochs),
  }


# ----- workers -------------------------------------------------------------------------


def load_data():
  """(train, test) Fashion-MNIST splits, the training split cut by --train_examples."""
  from rigl.datasets import mnist as data  # pylint: disable=import-outside-toplevel
  train, test = data.load("fashion_mnist", FLAGS.fashion_mnist_dir)
  if FLAGS.train_examples:
    train = data.Split(train.images[:FLAGS.train_examples],
                       train.labels[:FLAGS.train_examples])
  return train, test


def train_tf_keras(seed: int) -> dict[str, object]:
  """One run of the tf_keras script, in-process."""
  import tf_keras  # pylint: disable=import-outside-toplevel
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  from rigl import script_flags  # pylint: disable=import-outside-toplevel
  from rigl.datasets import mnist as data  # pylint: disable=import-outside-toplevel
  script_flags.set_values(mnist_train_eval.FLAGS, **script_settings(seed))
  tf_keras.backend.clear_session()
  if FLAGS.train_examples:
    # The script reads the files itself: hand it the cut training split.
    splits = load_data()
    original_load = data.load
    data.load = lambda *args, **kwargs: splits
    try:
      results = mnist_train_eval.run()
    finally:
      data.load = original_load
  else:
    results = mnist_train_eval.run()
  return {"test_accuracy": float(results["test_accuracy"]),
          "global_sparsity": float(results["global_sparsity"])}


def learning_rate_schedule(script, steps_per_epoch: int):
  """The script's piecewise-constant rate for a sparse run, in Keras 3."""
  import keras  # pylint: disable=import-outside-toplevel
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  epochs = (script.lr_drop_epoch,
            script.lr_drop_epoch + mnist_train_eval.SPARSE_SECOND_DROP_OFFSET)
  values = [script.learning_rate / mnist_train_eval.LR_DROP_FACTOR**i
            for i in range(len(epochs) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(
      [epoch * steps_per_epoch for epoch in epochs], values)


def train_keras3(seed: int) -> dict[str, object]:
  """One run with the Keras 3 sparse optimizer and `model.fit`, as the script's flags say."""
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import rigl  # pylint: disable=import-outside-toplevel
  from rigl.models import mnist_fc  # pylint: disable=import-outside-toplevel
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  from rigl import kernel_selection  # pylint: disable=import-outside-toplevel
  from rigl import script_flags  # pylint: disable=import-outside-toplevel
  from rigl.datasets import mnist as data  # pylint: disable=import-outside-toplevel
  train, test = load_data()
  script = mnist_train_eval.FLAGS
  script_flags.set_values(script, **script_settings(seed))
  batch = script.batch_size
  steps_per_epoch = len(train.labels) // batch

  def arrays(split):
    images = split.images.reshape(len(split.images), -1).astype(np.float32)
    return images / data.PIXEL_SCALE, split.labels.astype(np.int32)

  keras.backend.clear_session()
  keras.utils.set_random_seed(seed)
  model = mnist_fc(
      kernel_regularizer=keras.regularizers.L2(script.l2_scale / 2), keras_module=keras)
  inner = keras.optimizers.SGD(learning_rate_schedule(script, steps_per_epoch),
                               momentum=script.momentum, nesterov=script.use_nesterov)
  optimizer = rigl.sparsify(
      model, inner, method=script.training_method,
      sparsity=mnist_train_eval.sparsity_config(
          script.network_type, script.end_sparsity, script.mask_init_method,
          script.sparsity_scale),
      seed=seed, **script_flags.mask_update_options(script))
  model.compile(optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  train_images, train_labels = arrays(train)
  # Full batches only, as the script's training input.
  used = steps_per_epoch * batch
  model.fit(train_images[:used], train_labels[:used], batch_size=batch,
            epochs=script.num_epochs, shuffle=True, verbose=2)
  test_images, test_labels = arrays(test)
  _, accuracy = model.evaluate(test_images, test_labels, batch_size=batch, verbose=0)
  return {"test_accuracy": float(accuracy),
          "global_sparsity": kernel_selection.global_sparsity(model, optimizer.kernels)}


def versions() -> dict[str, str]:
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  found = {"python": platform.python_version(), "tensorflow": tf.__version__,
           "numpy": np.__version__}
  if FLAGS.worker == "tf_keras":
    import tf_keras  # pylint: disable=import-outside-toplevel
    found["tf_keras"] = tf_keras.__version__
  else:
    import jax  # pylint: disable=import-outside-toplevel
    found.update(keras=keras.__version__, jax=jax.__version__)
  return found


def run_worker() -> None:
  """Trains every seed with --worker's implementation; writes --worker_output."""
  if FLAGS.worker == "keras3":
    import keras  # pylint: disable=import-outside-toplevel
    if keras.backend.backend() != KERAS3_BACKEND:
      raise RuntimeError(f"Keras runs on {keras.backend.backend()}, not "
                         f"{KERAS3_BACKEND}.")
  train = train_tf_keras if FLAGS.worker == "tf_keras" else train_keras3
  runs = []
  for seed in range(FLAGS.seeds):
    start = time.perf_counter()
    run = dict(train(seed), seed=seed)
    run["wall_time_s"] = round(time.perf_counter() - start, 1)
    print(f"{FLAGS.worker} seed {seed}: test accuracy {run['test_accuracy']:.4f}, "
          f"sparsity {run['global_sparsity']:.4f} ({run['wall_time_s']} s)", flush=True)
    runs.append(run)
  from mnist import mnist_train_eval  # pylint: disable=import-outside-toplevel
  settings = {name: mnist_train_eval.FLAGS[name].value
              for name in ("num_epochs", "batch_size", "learning_rate", "lr_drop_epoch",
                           "end_sparsity", "mask_init_method", "maskupdate_frequency",
                           "maskupdate_end_step", "drop_fraction", "drop_fraction_anneal")}
  settings["train_examples"] = len(load_data()[0].labels)
  result = {"implementation": FLAGS.worker, "versions": versions(), "settings": settings,
            "runs": runs}
  pathlib.Path(FLAGS.worker_output).write_text(json.dumps(result, indent=2) + "\n")


# ----- parent ----------------------------------------------------------------------------


def run_implementation(implementation: str, directory: pathlib.Path) -> dict[str, object]:
  output = directory / f"{implementation}.json"
  environment = dict(os.environ,
                     TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
  if implementation == "keras3":
    environment["KERAS_BACKEND"] = KERAS3_BACKEND
  command = [sys.executable, "-m", "benchmarks.keras3_fashion_mnist", *sys.argv[1:],
             f"--worker={implementation}", f"--worker_output={output}"]
  print(f"=== {implementation} ===", flush=True)
  subprocess.run(command, env=environment, cwd=REPO, check=True)
  return json.loads(output.read_text())


def compare(results: dict[str, dict[str, object]]) -> dict[str, object]:
  """Mean, sample std of accuracy per implementation, and Welch's test of the gap."""
  from scipy import stats  # pylint: disable=import-outside-toplevel
  accuracies = {name: [run["test_accuracy"] for run in result["runs"]]
                for name, result in results.items()}
  summary = {name: {"mean": statistics.mean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "n": len(values)}
             for name, values in accuracies.items()}
  difference = summary["keras3"]["mean"] - summary["tf_keras"]["mean"]
  comparison = {"accuracy": summary, "difference": difference}
  if all(len(values) > 1 for values in accuracies.values()):
    test = stats.ttest_ind(accuracies["keras3"], accuracies["tf_keras"], equal_var=False)
    comparison.update(welch_p_value=float(test.pvalue),
                      within_seed_noise=bool(test.pvalue >= NOISE_P_VALUE))
  return comparison


def write_report(report: dict[str, object], directory: pathlib.Path) -> pathlib.Path:
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "keras3_fashion_mnist.json").write_text(json.dumps(report, indent=2) + "\n")
  settings = report["settings"]
  comparison = report["comparison"]
  machine = report["machine"]
  lines = [
      "# Fashion-MNIST FC at 98% sparsity, RigL: Keras 3 (JAX) against tf_keras", "",
      f"Machine: {machine['processor']}, {machine['cpu_count']} CPUs "
      f"({machine['usable_cpus']} usable), no GPU. Versions: "
      + ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
      + ". Written by `benchmarks/keras3_fashion_mnist.py` (its docstring gives the "
      "settings).", "",
      f"{settings['num_epochs']} epochs, first learning-rate drop at epoch "
      f"{settings['lr_drop_epoch']}, mask updates until step "
      f"{settings['maskupdate_end_step']}; {settings['train_examples']} training "
      f"images; the script's defaults otherwise. Test accuracy (%), mean +- sample "
      "standard deviation over seeds.", "",
      "| Implementation | Seeds | Test accuracy (%) | Per seed | Global sparsity |",
      "|---|---|---|---|---|"]
  for name in IMPLEMENTATIONS:
    runs = report["results"][name]["runs"]
    entry = comparison["accuracy"][name]
    lines.append(
        f"| {LABELS[name]} | {entry['n']} | {100 * entry['mean']:.2f} +- "
        f"{100 * entry['std']:.2f} | "
        + ", ".join(f"{100 * run['test_accuracy']:.2f}" for run in runs)
        + f" | {statistics.mean(run['global_sparsity'] for run in runs):.4f} |")
  verdict = ""
  if "welch_p_value" in comparison:
    verdict = (f"; Welch's t-test p = {comparison['welch_p_value']:.3f}: "
               + ("within" if comparison["within_seed_noise"] else "outside")
               + f" seed noise (p >= {NOISE_P_VALUE})")
  lines += ["", f"Keras 3 - tf_keras: {100 * comparison['difference']:+.2f} points"
            f"{verdict}."]
  path = directory / "keras3_fashion_mnist.md"
  path.write_text("\n".join(lines) + "\n")
  return path


def main(argv: list[str]) -> None:
  del argv
  if FLAGS.worker:
    run_worker()
    return
  start = time.perf_counter()
  results = {}
  with tempfile.TemporaryDirectory() as directory:
    for implementation in IMPLEMENTATIONS:
      results[implementation] = run_implementation(implementation, pathlib.Path(directory))
  machine = {"processor": platform.processor() or platform.machine(),
             "cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
             "platform": platform.platform(), "versions": {}}
  settings = [result.pop("settings") for result in results.values()]
  if any(other != settings[0] for other in settings):
    raise RuntimeError(f"The implementations trained with different settings: {settings}.")
  for result in results.values():
    machine["versions"].update(result.pop("versions"))
  report = {"machine": machine, "settings": settings[0], "results": results,
            "comparison": compare(results),
            "wall_time_s": round(time.perf_counter() - start, 1)}
  path = write_report(report, pathlib.Path(FLAGS.output_dir))
  print(path.read_text())
  print(f"Wrote {path} ({report['wall_time_s']} s)")


if __name__ == "__main__":
  app.run(main)
