"""Exports a training run's model as a SavedModel or a TFLite flatbuffer.

Masked weights are exact zeros in the Keras kernels, so the model alone is the sparse
model: the export rebuilds it from the model description in the run directory's
`run_config.json` (written by the ImageNet, CIFAR-10 and MNIST scripts; see
`rigl.run_directory.build_model_from_run_config`), restores only its variables from a
`model.ckpt-<step>` checkpoint, and writes it with a `serving_default` signature that
maps a float32 batch `inputs` to `logits` (inference mode); the training loop's
SavedModels (`Trainer.export`) are written by the same `export_saved_model`. TFLite
weights are stored in TFLite's sparse tensor encoding by default, where the converter
finds that smaller. How a sparse weight runs depends on its pattern
(`tflite_weight_storage` tells, per weight):

- elementwise (random) sparsity: the converter puts a DENSIFY op in front of the weight,
  which expands it to a dense tensor at the first call; the file shrinks, the
  computation does not (`benchmarks/tflite_latency.py`);
- Dense kernels masked in blocks of 4 consecutive inputs
  (`SparsityConfig(dense_block_size=4)`): stored as TFLite's 1x4 blocks with no
  DENSIFY, and TFLite's FULLY_CONNECTED kernel computes with the blocks, skipping the
  zeros (`benchmarks/tflite_dense_layers.py`).

A name-based TF1 checkpoint of the original code is loaded with
`rigl.tf1_checkpoints.restore_tf1_checkpoint`; it has no run configuration, so its
architecture is named with `--model_architecture` (any of `rigl.models.ARCHITECTURES`,
built with its default settings), which also overrides a run's `run_config.json`.

The report sets the written file's size beside the analytic dense and sparse sizes of
`rigl.flops` (32-bit weights; a sparse layer stores its non-zeros plus a 1-bit mask).

The writing functions (`export_saved_model`, `tflite_flatbuffer`, `export_tflite`) and
`size_accounting` also take a Keras 3 model (`import keras`); SavedModels and TFLite
need its TensorFlow backend: on JAX or PyTorch they raise a ValueError that says to
save the model with `model.save("x.keras")` (Keras 3's own `model.export` writes a
SavedModel on JAX too, with its own signature names instead of `inputs`/`logits`).

Command line::

  python -m rigl.export --checkpoint=/tmp/run --format=tflite --output=/tmp/model.tflite
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from typing import Any, Sequence

import keras
import tensorflow as tf
import tf_keras

from rigl import keras_compat
from rigl import methods
from rigl import tf1_checkpoints
from rigl import flops
from rigl import models
from rigl import kernel_selection
from rigl import run_directory

SAVED_MODEL, TFLITE = "saved_model", "tflite"
FORMATS = (SAVED_MODEL, TFLITE)
INPUT_NAME, OUTPUT_NAME = "inputs", "logits"
SIGNATURE_KEY = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
BITS_PER_BYTE = 8
BYTES_PER_MEGABYTE = flops.BITS_PER_MEGABYTE / BITS_PER_BYTE
# Restore errors list every unmatched object; the message keeps their beginning.
MAX_ERROR_CHARS = 500
CHECKPOINT_FLAG = "checkpoint"
# The Keras 3 backend whose models are TensorFlow graphs, which SavedModel and TFLite
# write.
EXPORT_BACKEND = "tensorflow"
# The backend on which Keras 3's `model.export` still writes a SavedModel (jax2tf).
JAX_BACKEND = "jax"
AnyModel = tf_keras.Model | keras.Model


@dataclasses.dataclass(frozen=True)
class ExportReport:
  """What was written, and how its size compares with the analytic accounting.

  Attributes:
    path: the SavedModel directory or TFLite file.
    format: one of `FORMATS`.
    file_bytes: bytes on disk (all files of a SavedModel).
    dense_bytes: `rigl.flops` size of the counted layers with every weight stored.
    sparse_bytes: `rigl.flops` size at the kernels' sparsities (non-zeros + masks).
    sparsity: zero weights over all counted weights.
    weight_storage: TFLite only: how many weights are stored (and read) each way (see
      `tflite_weight_storage`).
  """
  path: str
  format: str
  file_bytes: int
  dense_bytes: float
  sparse_bytes: float
  sparsity: float
  weight_storage: dict[str, int] = dataclasses.field(default_factory=dict)

  def lines(self) -> list[str]:
    def size(num_bytes: float) -> str:
      return f"{num_bytes:,.0f} bytes ({num_bytes / BYTES_PER_MEGABYTE:.3f} MB)"

    return [f"wrote {self.format} {self.path}",
            f"  file size             {size(self.file_bytes)}",
            f"  analytic dense size   {size(self.dense_bytes)}",
            f"  analytic sparse size  {size(self.sparse_bytes)}",
            f"  weight sparsity       {self.sparsity:.4f}"] + [
                f"  weights, {kind}: {count}"
                for kind, count in self.weight_storage.items()]


# ----- loading a run ------------------------------------------------------------------

def read_run_config(prefix: str) -> dict[str, Any]:
  """The `run_config.json` next to the checkpoint `prefix`.

  Raises:
    ValueError: naming --checkpoint when there is none, or it is not a JSON object.
  """
  directory = os.path.dirname(prefix)
  try:
    settings = run_directory.read_run_config(directory)
  except ValueError as error:
    raise ValueError(f"--{CHECKPOINT_FLAG}={prefix}: {error}") from None
  if settings is None:
    path = os.path.join(directory, run_directory.RUN_CONFIG_FILE)
    raise ValueError(f"--{CHECKPOINT_FLAG}={prefix}: no {run_directory.RUN_CONFIG_FILE} "
                     f"next to it ({path}); name the architecture with "
                     "--model_architecture.")
  return settings


def restore_model(model: tf_keras.Model, prefix: str) -> None:
  """Restores `model`'s variables (only those) from a TF2 or TF1 checkpoint.

  Raises:
    ValueError: naming the checkpoint when it does not hold every model variable.
  """
  try:
    if tf1_checkpoints.is_tf1_checkpoint(prefix):
      tf1_checkpoints.restore_tf1_checkpoint(prefix, model)
      return
    status = tf.train.Checkpoint(model=model).restore(prefix)
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
    raise ValueError(f"--{CHECKPOINT_FLAG}={prefix} does not hold this model's "
                     f"variables: {str(error)[:MAX_ERROR_CHARS]}") from None
  status.expect_partial()


def load_run_model(checkpoint: str, model_architecture: str | None = None
                   ) -> tuple[tf_keras.Model, dict[str, Any]]:
  """Rebuilds a run's model and restores its weights.

  Args:
    checkpoint: a run directory (its latest checkpoint) or a checkpoint prefix.
    model_architecture: build this `rigl.models` architecture with its defaults
      instead of reading `run_config.json`.

  Returns:
    The model, and the settings it was built from (`run_config.json`'s, or
    `{"model_architecture": model_architecture}`).
  """
  prefix = run_directory.resolve_checkpoint(checkpoint, CHECKPOINT_FLAG)
  if model_architecture:
    if model_architecture not in models.ARCHITECTURES:
      raise ValueError(f"Unknown --model_architecture {model_architecture!r}; allowed "
                       f"values: {', '.join(models.ARCHITECTURES)}.")
    settings = {"model_architecture": model_architecture}
    model = models.build(model_architecture)
  else:
    settings = read_run_config(prefix)
    model = run_directory.build_model_from_run_config(settings)
  restore_model(model, prefix)
  return model, settings


# ----- writing ------------------------------------------------------------------------

def _check_exportable(model: AnyModel) -> None:
  """Raises a ValueError naming the backend unless `model` runs on TensorFlow.

  tf_keras models always do; Keras 3 models on the TensorFlow backend only.
  """
  backend = keras.backend.backend()
  if not methods.is_keras3_model(model) or backend == EXPORT_BACKEND:
    return
  alternative = (" (or write a SavedModel with Keras' own signature names: "
                 "`model.export(path)`)" if backend == JAX_BACKEND else "")
  raise ValueError(
      f"SavedModel and TFLite export of a Keras 3 model needs the {EXPORT_BACKEND!r} "
      f"backend; this model runs on {backend!r}. Save it with "
      f"`model.save(\"model.keras\")` there{alternative}, or set "
      f"KERAS_BACKEND={EXPORT_BACKEND} and export it.")


def _input_spec(model: AnyModel) -> tf.TensorSpec:
  return tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, INPUT_NAME)


def _serve(model: AnyModel):
  """The serving computation: `inputs` -> {`logits`}, in inference mode."""

  def serve(inputs):
    return {OUTPUT_NAME: model(inputs, training=False)}

  return serve


def serving_function(model: AnyModel) -> tf.types.experimental.ConcreteFunction:
  """`inputs` (any batch size) -> {`logits`}, in inference mode."""
  _check_exportable(model)
  return tf.function(_serve(model),
                     input_signature=[_input_spec(model)]).get_concrete_function()


def _path_bytes(path: str) -> int:
  """Size of a file, or of every file under a directory."""
  if not tf.io.gfile.isdir(path):
    return tf.io.gfile.stat(path).length
  return sum(tf.io.gfile.stat(os.path.join(directory, name)).length
             for directory, _, names in tf.io.gfile.walk(path) for name in names)


def export_saved_model(model: AnyModel, path: str) -> int:
  """Writes `model` as a SavedModel directory; returns its size in bytes.

  A Keras 3 model is written by Keras' `ExportArchive`, which records its variables
  so that the TFLite converter can turn them into constants.
  """
  if not methods.is_keras3_model(model):
    tf.saved_model.save(model, path, signatures={SIGNATURE_KEY: serving_function(model)})
    return _path_bytes(path)
  _check_exportable(model)
  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint(SIGNATURE_KEY, _serve(model), input_signature=[_input_spec(model)])
  archive.write_out(path, verbose=False)
  return _path_bytes(path)


def _convert(converter: tf.lite.TFLiteConverter, sparse: bool) -> bytes:
  if sparse:
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
  return converter.convert()


def tflite_flatbuffer(model: AnyModel, sparse: bool = True) -> bytes:
  """`model` converted to TFLite (float32), with sparse weight encoding if `sparse`."""
  if not methods.is_keras3_model(model):
    return _convert(tf.lite.TFLiteConverter.from_concrete_functions(
        [serving_function(model)], model), sparse)
  # The converter turns Keras 3 variables into constants only from a SavedModel that
  # Keras wrote (as Keras' own LiteRT export does): the model goes through one.
  with tempfile.TemporaryDirectory() as directory:
    export_saved_model(model, directory)
    return _convert(tf.lite.TFLiteConverter.from_saved_model(
        directory, signature_keys=[SIGNATURE_KEY]), sparse)


def _write_flatbuffer(flatbuffer: bytes, path: str) -> int:
  """Writes `flatbuffer` to `path` (creating its folder); returns its size in bytes."""
  directory = os.path.dirname(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  with tf.io.gfile.GFile(path, "wb") as file:
    file.write(flatbuffer)
  return len(flatbuffer)


def export_tflite(model: AnyModel, path: str, sparse: bool = True) -> int:
  """Writes `model` as a TFLite flatbuffer; returns its size in bytes."""
  return _write_flatbuffer(tflite_flatbuffer(model, sparse), path)


# How a weight of a TFLite file is stored and read (see `tflite_weight_storage`).
DENSE_STORAGE = "dense"
DENSIFIED_STORAGE = "sparse, densified"
BLOCK_STORAGE = "sparse 1x4 blocks, run sparse"
RANDOM_STORAGE = "sparse, run sparse"
# The dimension metadata of a weight stored in 1x4 blocks: rows dense, block columns
# in CSR, then each block's 4 values dense.
_BLOCK_DIMENSIONS = 3
_BLOCK_WIDTH = 4
# The weight operand of the ops whose weights are counted.
_WEIGHT_INPUT = {"FULLY_CONNECTED": 1, "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1}


@dataclasses.dataclass(frozen=True)
class TFLiteWeight:
  """One weight of a TFLite model: the op reading it, its tensor, how it is stored."""
  op: str
  tensor: str
  shape: tuple[int, ...]
  storage: str


def tflite_weight_storage(flatbuffer: bytes) -> list[TFLiteWeight]:
  """How each FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D weight of a model is kept.

  `DENSE_STORAGE`; `DENSIFIED_STORAGE` (sparse in the file, expanded by a DENSIFY op
  before the op reads it); `BLOCK_STORAGE` (1x4 blocks that the op itself reads: TFLite's
  FULLY_CONNECTED then runs its block-sparse kernel); `RANDOM_STORAGE` (elementwise
  sparse, read by the op itself). Read from the interpreter's own view of the graph.
  """
  interpreter = tf.lite.Interpreter(
      model_content=flatbuffer,
      experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
  tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
  nodes = keras_compat.tflite_nodes(interpreter)
  densified = {node["outputs"][0]: node["inputs"][0] for node in nodes
               if node["op_name"] == "DENSIFY"}
  weights = []
  for node in nodes:
    position = _WEIGHT_INPUT.get(node["op_name"])
    if position is None:
      continue
    index = node["inputs"][position]
    storage = DENSE_STORAGE
    if index in densified:
      storage, index = DENSIFIED_STORAGE, densified[index]
    else:
      dimensions = tensors[index].get("sparsity_parameters", {}).get("dim_metadata", [])
      if len(dimensions) == _BLOCK_DIMENSIONS and dimensions[-1].get(
          "dense_size") == _BLOCK_WIDTH:
        storage = BLOCK_STORAGE
      elif dimensions:
        storage = RANDOM_STORAGE
    weights.append(TFLiteWeight(node["op_name"], tensors[index]["name"],
                                tuple(int(d) for d in tensors[index]["shape"]), storage))
  return weights


def tflite_storage_counts(flatbuffer: bytes) -> dict[str, int]:
  """How many weights of a TFLite model are stored (and read) each way."""
  kinds = [weight.storage for weight in tflite_weight_storage(flatbuffer)]
  return {kind: kinds.count(kind) for kind in sorted(set(kinds))}


def kernel_sparsities(model: AnyModel) -> dict[str, float]:
  """Each conv/dense layer's fraction of zero weights (masked weights are zeros)."""
  return flops.mask_sparsities({layer.name: keras_compat.to_numpy(layer.kernel) != 0
                                for layer in kernel_selection.find_kernels(model)})


def size_accounting(model: AnyModel) -> tuple[flops.ModelStats, flops.ModelStats]:
  """`rigl.flops` statistics of `model` dense, and at its kernels' sparsities."""
  specs = flops.layer_specs(model)
  return flops.count(specs, {}), flops.count(specs, kernel_sparsities(model))


def export(checkpoint: str, export_format: str, output: str, *,
           model_architecture: str | None = None, sparse: bool = True) -> ExportReport:
  """Loads a run's model (see `load_run_model`) and writes it in `export_format`.

  `sparse=False` stores TFLite weights dense (e.g. as a size baseline).
  """
  if export_format not in FORMATS:
    raise ValueError(f"Unknown --format {export_format!r}; allowed values: "
                     f"{', '.join(FORMATS)}.")
  if not sparse and export_format != TFLITE:
    raise ValueError("--dense_weights applies to --format=tflite only.")
  if not output:
    raise ValueError("--output is empty; name the file or directory to write.")
  model, _ = load_run_model(checkpoint, model_architecture)
  storage = {}
  if export_format == SAVED_MODEL:
    file_bytes = export_saved_model(model, output)
  else:
    flatbuffer = tflite_flatbuffer(model, sparse)
    file_bytes = _write_flatbuffer(flatbuffer, output)
    storage = tflite_storage_counts(flatbuffer)
  dense, sparse_stats = size_accounting(model)
  return ExportReport(output, export_format, file_bytes,
                      dense.size_bits / BITS_PER_BYTE,
                      sparse_stats.size_bits / BITS_PER_BYTE, sparse_stats.sparsity,
                      storage)


# ----- command line -------------------------------------------------------------------

class _ArgumentParser(argparse.ArgumentParser):
  """Reports a usage error in one line, as the export's own errors are."""

  def error(self, message: str):
    self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
  """Exports as the flags say; prints the report, or one error line and returns 1."""
  parser = _ArgumentParser(prog="python -m rigl.export",
                           description=__doc__.split("\n\n", 1)[0])
  parser.add_argument("--checkpoint", required=True,
                      help="run directory (its latest checkpoint) or checkpoint prefix")
  parser.add_argument("--format", required=True, help=" or ".join(FORMATS))
  parser.add_argument("--output", required=True,
                      help="SavedModel directory or TFLite file to write")
  parser.add_argument("--model_architecture", default="",
                      help="build this rigl.models architecture with its defaults "
                           "instead of reading run_config.json: "
                           + ", ".join(models.ARCHITECTURES))
  parser.add_argument("--dense_weights", action="store_true",
                      help="TFLite: store weights dense (no sparse encoding)")
  args = parser.parse_args(argv)
  try:
    report = export(args.checkpoint, args.format, args.output,
                    model_architecture=args.model_architecture or None,
                    sparse=not args.dense_weights)
  except ValueError as error:
    message = " ".join(str(error).split())
  else:
    print("\n".join(report.lines()))
    return 0
  # Printed once the error (and a half-restored model) is freed, as TF may then warn
  # about unrestored values: the error stays the last line.
  print(f"{parser.prog}: error: {message}", file=sys.stderr)
  return 1


if __name__ == "__main__":
  sys.exit(main())
