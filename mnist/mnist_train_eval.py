r"""Trains and evaluates a sparse network on MNIST or Fashion-MNIST.

The flags of the original `rigl/mnist/mnist_train_eval.py`, with the same names and
defaults, plus `--dataset` and `--data_dir`. For example, on the real Fashion-MNIST
files that Debian's `dataset-fashion-mnist` package installs:

  python mnist/mnist_train_eval.py --dataset=fashion_mnist \
      --data_dir=/usr/share/datasets/fashion-mnist --training_method=rigl \
      --end_sparsity=0.98 --num_epochs=20 --save_path=/tmp/mnist_rigl

Re-running the same command resumes from the last checkpoint (one per epoch); a
command that changes any flag but the `OPERATIONAL_FLAGS` is refused, naming the flag.
"""

from __future__ import annotations

from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras

import rigl
from rigl import models
from rigl import run_directory
from rigl import script_flags
from rigl import training
from rigl import compression
from rigl.datasets import mnist as data

FLAGS = flags.FlagValues()
define = script_flags.FlagDefiner(FLAGS)
# --network_type -> the `rigl.models` builder.
NETWORK_BUILDERS = {"fc": "mnist_fc", "lenet5": "lenet5"}
# The layer whose mask --input_mask_path reads.
INPUT_LAYER = "layer1"
OPTIMIZERS = ("sgd", "momentum", "adam")
# Learning-rate drops of the original: dense runs at fixed epochs, sparse runs at
# --lr_drop_epoch and this many epochs later; every drop divides the rate by 3.
DENSE_LR_DROP_EPOCHS = (60, 70, 80)
SPARSE_SECOND_DROP_OFFSET = 20
LR_DROP_FACTOR = 3.0

define.string("mnist", "/tmp/data",
              "tensorflow-datasets data directory, used when --data_dir is empty.")
define.enum("dataset", "mnist", list(data.DATASETS), "Dataset to train on.")
define.string("data_dir", "",
              "Folder with the four standard IDX files; empty: tensorflow-datasets.")
define.integer("batch_size", 100, "Batch size.")
define.float("learning_rate", 0.2, "Initial learning rate.")
define.float("momentum", 0.9, "Momentum.")
define.boolean("use_nesterov", True, "Whether to use Nesterov momentum.")
define.integer("num_epochs", 200, "Number of training epochs.")
define.integer("lr_drop_epoch", 75, "Epoch of the first learning-rate drop "
               "(sparse runs; a second comes 20 epochs later).")
define.enum("optimizer", "momentum", list(OPTIMIZERS),
            "Optimizer (adam keeps the learning rate constant).")
define.float("l2_scale", 1e-4, "L2 penalty l2_scale * sum(w^2) / 2 on kernels.")
define.enum("network_type", "fc", list(NETWORK_BUILDERS),
            "fc: 784-300-100-10; lenet5: LeNet-5.")
script_flags.define_training_method_flag(define, "baseline")
script_flags.define_mask_update_flags(
    define, maskupdate_end_step=50000, drop_fraction_anneal="cosine")
define.string("input_mask_path", "",
              "Checkpoint (or run directory) whose layer1 mask removes dead pixels.")
define.float("sparsity_scale", 0.9, "layer2 sparsity = end_sparsity * this (fc).")
define.integer("mask_record_frequency", 0,
               "If > 0, record the masks every this many steps.")
define.enum("mask_init_method", "random",
            ["random", "erdos_renyi", "erdos_renyi_kernel"],
            "Sparsity distribution.")
define.integer("dense_block_size", 1,
               "Mask the Dense kernels in blocks of this many consecutive inputs (4: "
               "TFLite's 1x4 blocks, which its FULLY_CONNECTED kernel runs sparse); 1: "
               "elementwise.")
define.integer("prune_begin_step", 2000, "prune: first pruning step.")
define.integer("prune_end_step", 30000, "prune: last pruning step.")
define.float("end_sparsity", 0.98, "Target sparsity.")
define.integer("pruning_frequency", 500, "prune: steps between pruning updates.")
define.float("threshold_decay", 0.0, "prune: decay of the magnitude threshold.")
define.string("save_path", "", "Run directory (checkpoints, summaries, results); "
              "empty: keep nothing.")
define.boolean("save_model", True, "Whether to write checkpoints.")
define.integer("seed", 0, "Seed of weights, masks and data order.")
define.integer("summary_steps", 0, "Batches between progress lines and training "
               "summaries; 0: one per epoch, with each evaluation.")
script_flags.define_deterministic_flag(define)

# Flags that say where and how a run goes, not what it trains; every other flag is the
# run's identity (`script_flags.run_identity`), which a resumed run must match.
OPERATIONAL_FLAGS = (
    # Where the data are (the same dataset, read as IDX files or through
    # tensorflow-datasets) and where the run is kept. --input_mask_path, which chooses
    # the input pixels, is part of the identity.
    "mnist", "data_dir", "save_path",
    # How long to train: the learning-rate drops are at fixed epochs, so a longer run
    # continues a shorter one.
    "num_epochs",
    # Reporting and checkpointing.
    "summary_steps", "mask_record_frequency", "save_model",
    # Op determinism makes the computation reproducible without changing it.
    "deterministic",
)


def shortened_schedule(num_epochs: int) -> dict[str, int]:
  """Flag values for a `num_epochs` run that keeps the defaults' schedule in proportion.

  The first learning-rate drop and the last mask update fall at the same fractions of
  training as with the defaults (epoch 75 of 200; step 50,000 of 120,000).
  """
  scale = num_epochs / FLAGS["num_epochs"].default
  return {"num_epochs": num_epochs,
          "lr_drop_epoch": max(1, round(FLAGS["lr_drop_epoch"].default * scale)),
          "maskupdate_end_step": round(FLAGS["maskupdate_end_step"].default * scale)}


def sparsity_config(network_type: str, end_sparsity: float, mask_init_method: str,
                    sparsity_scale: float, dense_block_size: int = 1
                    ) -> rigl.SparsityConfig:
  """Per-layer rules: fc as the original (layer3 dense, layer2 thinned less).

  LeNet-5 keeps its first convolution (150 weights) and its output layer dense, as the
  paper keeps the first layer dense under uniform sparsity: a uniform 95% mask leaves
  conv1 eight weights for six filters, and training then collapses to chance.
  """
  if network_type == "fc":
    return rigl.SparsityConfig(
        end_sparsity, mask_init_method,
        custom_sparsity_map={"layer2": end_sparsity * sparsity_scale, "layer3": 0.0},
        dense_block_size=dense_block_size)
  return rigl.SparsityConfig(end_sparsity, mask_init_method, first_layer_sparsity=0.0,
                             last_layer_sparsity=0.0, dense_block_size=dense_block_size)


def learning_rate(steps_per_epoch: int):
  """Piecewise-constant rate with the original's drops (constant for Adam)."""
  if FLAGS.optimizer == "adam":
    return FLAGS.learning_rate
  if not script_flags.training_method_class(FLAGS).sparsifies:
    epochs = DENSE_LR_DROP_EPOCHS
  else:
    epochs = (FLAGS.lr_drop_epoch, FLAGS.lr_drop_epoch + SPARSE_SECOND_DROP_OFFSET)
  values = [FLAGS.learning_rate / LR_DROP_FACTOR**i for i in range(len(epochs) + 1)]
  return tf_keras.optimizers.schedules.PiecewiseConstantDecay(
      [epoch * steps_per_epoch for epoch in epochs], values)


def inner_optimizer(steps_per_epoch: int) -> tf_keras.optimizers.Optimizer:
  rate = learning_rate(steps_per_epoch)
  if FLAGS.optimizer == "adam":
    return tf_keras.optimizers.Adam(rate)
  if FLAGS.optimizer == "sgd":
    return tf_keras.optimizers.SGD(rate)
  return tf_keras.optimizers.SGD(rate, momentum=FLAGS.momentum, nesterov=FLAGS.use_nesterov)


def read_input_mask(path: str) -> np.ndarray:
  """Input pixels that layer1 of a saved run still uses (any outgoing connection)."""
  checkpoint = run_directory.resolve_checkpoint(path, "input_mask_path")
  reader = tf.train.load_checkpoint(checkpoint)
  key = run_directory.mask_keys(reader).get(INPUT_LAYER)
  if key is None:
    raise ValueError(f"--input_mask_path={path}: no {INPUT_LAYER} mask in "
                     f"{checkpoint}.")
  return reader.get_tensor(key).any(axis=1)


def validate_flags() -> None:
  """Fails at start, naming the flag, on settings that cannot work (before any data)."""
  script_flags.check_positive(FLAGS, ["batch_size", "dense_block_size"])
  script_flags.check_sparsity(FLAGS, "end_sparsity")
  if FLAGS.network_type == "fc":
    layer2_sparsity = FLAGS.end_sparsity * FLAGS.sparsity_scale
    if not 0.0 <= layer2_sparsity < 1.0:
      raise ValueError(f"--sparsity_scale={FLAGS.sparsity_scale} makes layer2's sparsity "
                       f"(--end_sparsity * --sparsity_scale) {layer2_sparsity}; it must "
                       "be in [0, 1).")
  script_flags.check_mask_update_flags(FLAGS)
  script_flags.check_data_directory(FLAGS, "data_dir")
  script_flags.check_output_directory(FLAGS, "save_path")


def model_description() -> dict[str, object]:
  """The network --network_type names, as `rigl.models.from_description` builds it."""
  return models.describe(NETWORK_BUILDERS[FLAGS.network_type])


def run() -> dict[str, object]:
  """Trains and evaluates as the flags say; returns the results."""
  validate_flags()
  # Data first: a missing or corrupt file fails before anything is written.
  train_split, test_split = data.load(FLAGS.dataset, FLAGS.data_dir, FLAGS.mnist)
  input_mask = read_input_mask(FLAGS.input_mask_path) if FLAGS.input_mask_path else None
  flatten = FLAGS.network_type == "fc"
  steps_per_epoch = len(train_split.labels) // FLAGS.batch_size

  script_flags.apply_deterministic_flag(FLAGS)
  tf_keras.utils.set_random_seed(FLAGS.seed)
  description = model_description()
  model = models.from_description(description)
  optimizer = rigl.create_sparse_optimizer(
      FLAGS.training_method, inner_optimizer(steps_per_epoch), model,
      sparsity_config(FLAGS.network_type, FLAGS.end_sparsity, FLAGS.mask_init_method,
                      FLAGS.sparsity_scale, FLAGS.dense_block_size),
      **script_flags.mask_update_options(FLAGS), pruning_begin_step=FLAGS.prune_begin_step,
      pruning_end_step=FLAGS.prune_end_step, pruning_frequency=FLAGS.pruning_frequency,
      threshold_decay=FLAGS.threshold_decay, seed=FLAGS.seed)

  def train_input(epoch: int, skip: int, context: tf.distribute.InputContext):
    return data.to_dataset(train_split, context.get_per_replica_batch_size(FLAGS.batch_size),
                           flatten, FLAGS.seed + epoch, input_mask, context, skip)

  def eval_input(context: tf.distribute.InputContext):
    return data.to_dataset(test_split, context.get_per_replica_batch_size(FLAGS.batch_size),
                           flatten, None, input_mask, context)

  def extra_results():
    results = {"training_method": FLAGS.training_method,
               "end_sparsity": FLAGS.end_sparsity, "network_type": FLAGS.network_type}
    if flatten:
      masks = {layer.name: (optimizer.masks[layer.name].numpy()
                            if layer.name in optimizer.masks else
                            np.ones(layer.kernel.shape))
               for layer in model.layers if isinstance(layer, tf_keras.layers.Dense)}
      results.update(compression.compression_report(masks))
    return results

  config = training.RunConfig(
      train_steps=FLAGS.num_epochs * steps_per_epoch, global_batch_size=FLAGS.batch_size,
      steps_per_epoch=steps_per_epoch,
      count_batches=True,  # The original trains num_epochs full passes.
      save_path=FLAGS.save_path,
      identity=script_flags.run_identity(FLAGS, OPERATIONAL_FLAGS, description),
      l2_scale=FLAGS.l2_scale,
      save_checkpoints=FLAGS.save_model,
      mask_record_frequency=FLAGS.mask_record_frequency,
      summary_steps=FLAGS.summary_steps)
  results = training.train_and_evaluate(model, optimizer, train_input, eval_input, config,
                                        extra_results=extra_results)
  print(f"test_accuracy {results['test_accuracy']:.4f}  "
        f"global_sparsity {results['global_sparsity']:.4f}  "
        f"training_flops_ratio {results['training_flops_ratio']:.3f}")
  return results


if __name__ == "__main__":
  script_flags.run(run, FLAGS)
