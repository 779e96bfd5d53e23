r"""Trains and evaluates sparse WideResNets on CIFAR-10 (or CIFAR-100).

The flags of the original `rigl/cifar_resnet/resnet_train_eval.py`, with the same names
and defaults. The paper's WRN-22-2 with RigL at 90% sparsity (ERK):

  python cifar10/cifar10_train_eval.py --resnet_depth=22 --resnet_width=2 \
      --training_method=rigl --mask_init_method=erdos_renyi_kernel \
      --end_sparsity=0.9 --drop_fraction_anneal=cosine --mode=train_and_eval \
      --train_dir=/tmp/cifar10

or `--flagfile=configs/cifar10/<name>.cfg` for each experiment of the paper. Data come
from tensorflow-datasets (`--data_directory` is its data dir). Re-running a command
resumes from the run directory's latest checkpoint; a command that changes any flag but
the `OPERATIONAL_FLAGS` is refused, naming the flag.

`train_and_eval` trains and evaluates on the whole test set every `checkpoint_steps`
(the original's does nothing). `master`, `ps_task` and `pruning_hparams` are accepted
and do nothing.
"""

from __future__ import annotations

import os

from absl import flags
import tensorflow as tf
import tf_keras

import rigl
from rigl import models
from rigl import script_flags
from rigl import training
from rigl import warm_start
from rigl.datasets import cifar as data
from rigl.run_directory import latest_checkpoint

FLAGS = flags.FlagValues()
define = script_flags.FlagDefiner(FLAGS)
MODES = ("train", "eval", "train_and_eval", "eval_once")
# Learning rate: 0.1, divided by 5 at each boundary (steps x training_steps_multiplier).
LR_BOUNDARIES = (30000, 60000, 90000)
LR_VALUES = (0.1, 0.02, 0.004, 0.0008)
# The original's folder stub: pruning records its own schedule, these methods record
# zeros, every other method its mask-update schedule (a path format, kept as it was).
PRUNING_STUB_METHOD = "prune"
ZERO_STUB_METHODS = ("baseline", "snip")
# WideResNet depths are 6n + 4 (three groups of n blocks of two convolutions), n >= 1.
WRN_DEPTH_PER_BLOCK = 6
WRN_DEPTH_OFFSET = 4

define.string("master", "local", "No-op.")
define.integer("ps_task", 0, "No-op.")
define.integer("keep_checkpoint_max", 5, "Checkpoints kept; 0 keeps all.")
define.string("pruning_hparams", "", "No-op (pruning settings come from flags).")
define.string("train_dir", "/tmp/cifar10/", "Run directory (base); the original's "
              "<training_method>/<end_sparsity>/<begin>/<end>/<frequency> is appended "
              "(mask-update or pruning steps, after --training_steps_multiplier; 0.0 for "
              "baseline and snip).")
define.string("load_mask_dir", "", "Start from this checkpoint's (or directory's) "
              "masks, when the run directory has no checkpoint yet.")
define.string("initial_value_checkpoint", "", "Start from this checkpoint's "
              "weights, when the run directory has no checkpoint yet.")
define.integer("seed", 0, "Seed of weights, masks, data order and augmentation.")
script_flags.define_deterministic_flag(define)
define.float("momentum", 0.9, "Nesterov momentum.")
define.integer("max_steps", 97656, "Training steps (x training_steps_multiplier).")
define.float("l2", 5e-4, "L2 l2 * sum(w^2) / 2 on conv and dense kernels.")
define.integer("resnet_depth", 16, "WideResNet depth, 6n + 4.")
define.integer("resnet_width", 4, "WideResNet widening factor.")
define.string("data_directory", "",
              "tensorflow-datasets data dir; empty: its default.")
define.integer("num_classes", 10, "10: CIFAR-10; 100: CIFAR-100.")
define.integer("dataset_size", 50000, "Training images (epoch length).")
define.integer("batch_size", 128, "Batch size.")
define.integer("checkpoint_steps", 5000,
               "Steps between checkpoints (and evaluations in train_and_eval).")
define.integer("summaries_steps", 300, "Steps between progress lines and summaries.")
define.boolean("per_class_metrics", True, "Per-class precision and recall at 1.")
define.enum("mode", "train", list(MODES),
            "train, eval (follow checkpoints until max_steps), train_and_eval or "
            "eval_once.")
define.string("eval_once_ckpt_prefix", "", "mode=eval_once: checkpoint inside the "
              "run directory (e.g. model.ckpt-5000); empty: the latest.")
define.integer("sparsity_begin_step", 20000, "prune: first pruning step.")
define.integer("sparsity_end_step", 75000, "prune: last pruning step.")
define.integer("pruning_frequency", 1000, "prune: steps between pruning updates.")
define.float("end_sparsity", 0.9, "Target sparsity.")
script_flags.define_training_method_flag(define, "baseline")
define.boolean("prune_first_layer", False, "Sparsify the first convolution.")
define.boolean("prune_last_layer", True, "Sparsify the logits layer.")
script_flags.define_mask_update_flags(
    define, maskupdate_end_step=75000, drop_fraction_anneal="constant")
define.string("mask_init_method", "random",
              "random, erdos_renyi or erdos_renyi_kernel.")
define.float("training_steps_multiplier", 1.0, "Multiplies max_steps, the mask "
             "update and pruning steps and the learning-rate boundaries.")

# Flags that say where and how a run goes, not what it trains; every other flag is the
# run's identity (`script_flags.run_identity`), which a resumed run must match.
OPERATIONAL_FLAGS = (
    # No-ops.
    "master", "ps_task", "pruning_hparams",
    # Where the data are and where the run is kept. --load_mask_dir and
    # --initial_value_checkpoint, which choose the run's start, are part of the identity.
    "train_dir", "data_directory",
    # How long to train: the learning-rate boundaries are fixed steps, so a longer run
    # continues a shorter one.
    "max_steps",
    # Checkpoint and evaluation cadence, checkpoints kept, reporting.
    "checkpoint_steps", "keep_checkpoint_max", "summaries_steps", "per_class_metrics",
    # What this process does with the run: train, evaluate, which checkpoint.
    "mode", "eval_once_ckpt_prefix",
    # Op determinism makes the computation reproducible without changing it.
    "deterministic",
)


def scaled(steps: int) -> int:
  return int(steps * FLAGS.training_steps_multiplier)


def run_directory() -> str:
  """train_dir plus the original's folder stub (steps after the multiplier)."""
  method = FLAGS.training_method
  if method == PRUNING_STUB_METHOD:
    stub = [FLAGS.end_sparsity, scaled(FLAGS.sparsity_begin_step),
            scaled(FLAGS.sparsity_end_step), FLAGS.pruning_frequency]
  elif method in ZERO_STUB_METHODS:
    stub = [0.0] * 4
  else:
    stub = [FLAGS.end_sparsity, scaled(FLAGS.maskupdate_begin_step),
            scaled(FLAGS.maskupdate_end_step), FLAGS.maskupdate_frequency]
  return os.path.join(FLAGS.train_dir, method, *map(str, stub))


def validate_flags() -> None:
  """Fails at start, naming the flag, on settings that cannot work (before any model)."""
  script_flags.check_positive(FLAGS, ["batch_size", "max_steps", "dataset_size",
                                      "checkpoint_steps", "resnet_width",
                                      "training_steps_multiplier"])
  depth = FLAGS.resnet_depth
  if depth < WRN_DEPTH_OFFSET + WRN_DEPTH_PER_BLOCK or (
      (depth - WRN_DEPTH_OFFSET) % WRN_DEPTH_PER_BLOCK):
    raise ValueError(f"--resnet_depth must be {WRN_DEPTH_PER_BLOCK}n + "
                     f"{WRN_DEPTH_OFFSET} with n >= 1 (e.g. 16, 22, 28); got {depth}.")
  data.dataset_name(FLAGS.num_classes)
  script_flags.check_sparsity(FLAGS, "end_sparsity")
  script_flags.check_sparsity_distribution(FLAGS, "mask_init_method")
  script_flags.check_mask_update_flags(FLAGS, scaled)
  script_flags.check_data_directory(FLAGS, "data_directory")
  script_flags.check_output_directory(FLAGS, "train_dir")


def create_optimizer(model: tf_keras.Model) -> rigl.SparseOptimizer:
  rate = tf_keras.optimizers.schedules.PiecewiseConstantDecay(
      [scaled(step) for step in LR_BOUNDARIES], list(LR_VALUES))
  return rigl.create_sparse_optimizer(
      FLAGS.training_method,
      tf_keras.optimizers.SGD(rate, momentum=FLAGS.momentum, nesterov=True), model,
      rigl.SparsityConfig(FLAGS.end_sparsity, FLAGS.mask_init_method,
                          first_layer_sparsity=-1.0 if FLAGS.prune_first_layer else 0.0,
                          last_layer_sparsity=-1.0 if FLAGS.prune_last_layer else 0.0),
      **script_flags.mask_update_options(FLAGS, scaled),
      pruning_begin_step=scaled(FLAGS.sparsity_begin_step),
      pruning_end_step=scaled(FLAGS.sparsity_end_step),
      pruning_frequency=FLAGS.pruning_frequency, seed=FLAGS.seed)


def model_description() -> dict[str, object]:
  """The WideResNet the flags name, as `rigl.models.from_description` builds it."""
  return models.describe("wide_resnet", depth=FLAGS.resnet_depth,
                         width=FLAGS.resnet_width, num_classes=FLAGS.num_classes)


def input_functions():
  """(training, evaluation) input functions of the shared loop."""

  def train_input(epoch: int, skip: int, context: tf.distribute.InputContext):
    records = data.load_split(FLAGS.num_classes, data.TRAIN_SPLIT, FLAGS.data_directory,
                              context)
    return data.train_dataset(records, context.get_per_replica_batch_size(FLAGS.batch_size),
                              FLAGS.seed, epoch, skip)

  def eval_input(context: tf.distribute.InputContext):
    records = data.load_split(FLAGS.num_classes, data.TEST_SPLIT, FLAGS.data_directory,
                              context)
    return data.eval_dataset(records, context.get_per_replica_batch_size(FLAGS.batch_size))

  return train_input, eval_input


def run() -> dict[str, object] | None:
  """Runs the mode the flags name; returns the last evaluation's results, if any."""
  validate_flags()
  save_path = run_directory()
  # Dropout then draws from a tf.random.Generator per layer, whose state the training
  # loop checkpoints: a resumed run draws the dropout masks an uninterrupted one would.
  tf_keras.backend.experimental.enable_tf_random_generator()
  script_flags.apply_deterministic_flag(FLAGS)
  tf_keras.utils.set_random_seed(FLAGS.seed)
  description = model_description()
  model = models.from_description(description)
  optimizer = create_optimizer(model)
  if FLAGS.mode in ("train", "train_and_eval"):
    warm_start.start_new_run(
        save_path, model, optimizer, load_mask_dir=FLAGS.load_mask_dir,
        initial_value_checkpoint=FLAGS.initial_value_checkpoint,
        uses_mask_dir=not script_flags.training_method_class(FLAGS).chooses_own_masks)
  config = training.RunConfig(
      train_steps=scaled(FLAGS.max_steps), global_batch_size=FLAGS.batch_size,
      steps_per_epoch=max(FLAGS.dataset_size // FLAGS.batch_size, 1),
      steps_per_eval=FLAGS.checkpoint_steps,
      steps_per_checkpoint=FLAGS.checkpoint_steps, summary_steps=FLAGS.summaries_steps,
      save_path=save_path,
      identity=script_flags.run_identity(FLAGS, OPERATIONAL_FLAGS, description),
      l2_scale=FLAGS.l2,
      keep_checkpoint_max=FLAGS.keep_checkpoint_max,
      per_class_metrics=FLAGS.per_class_metrics, log=lambda line: print(line, flush=True))
  trainer = training.Trainer(model, optimizer, config)
  train_input, eval_input = input_functions()
  if FLAGS.mode == "train":
    trainer.restore_latest()
    trainer.train(train_input, config.train_steps)
    return None
  if FLAGS.mode == "train_and_eval":
    return training.train_and_evaluate(model, optimizer, train_input, eval_input, config,
                                       trainer=trainer)
  if FLAGS.mode == "eval":
    return training.evaluate_checkpoints(trainer, eval_input, until_step=config.train_steps)
  prefix = (os.path.join(save_path, FLAGS.eval_once_ckpt_prefix)
            if FLAGS.eval_once_ckpt_prefix else latest_checkpoint(save_path))
  if not prefix:
    raise ValueError(f"--mode=eval_once: {save_path} holds no checkpoint.")
  trainer.restore(prefix)
  return trainer.write_results(trainer.evaluate(eval_input), {"checkpoint": prefix})


if __name__ == "__main__":
  script_flags.run(run, FLAGS)
