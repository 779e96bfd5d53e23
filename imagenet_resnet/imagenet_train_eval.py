r"""Trains and evaluates sparse ResNets and MobileNets on ImageNet.

The flags of the original `rigl/imagenet_resnet/imagenet_train_eval.py`, with the same
names and defaults, on any `tf.distribute` strategy. For example, RigL on ResNet-50
with an ERK distribution at 80% sparsity, on 8 GPUs:

  python imagenet_resnet/imagenet_train_eval.py --data_directory=/data/imagenet \
      --output_dir=/tmp/imagenet --distribution_strategy=mirrored \
      --training_method=rigl --mask_init_method=erdos_renyi_kernel \
      --end_sparsity=0.8 --first_layer_sparsity=-1 --train_batch_size=4096 \
      --train_steps=32000 --mode=train_and_eval

and the released checkpoints (TF1) with `--mode=eval_once --use_folder_stub=False
--eval_once_ckpt_prefix=model.ckpt-3200000`. Re-running a command resumes from the
run directory's latest checkpoint; a command that changes any flag but the
`OPERATIONAL_FLAGS` is refused, naming the flag.

Flags of the TF1 TPUEstimator that have no meaning here are accepted and do nothing:
num_workers, ps_task, tpu_job_name, iterations_per_loop, num_cores, transpose_input,
data_format (models are channels-last; TensorFlow picks device layouts), is_warm_up,
block_width and block_height.
"""

from __future__ import annotations

import os

from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras

import rigl
from rigl import tf1_checkpoints
from rigl import strategies
from rigl import models
from rigl import script_flags
from rigl import training
from rigl import warm_start
from rigl.models.resnet import BLOCKS_PER_GROUP
from rigl import learning_rates as learning_rate_lib
from rigl.datasets import imagenet as imagenet_input

FLAGS = flags.FlagValues()
define = script_flags.FlagDefiner(FLAGS)
ARCHITECTURES = ("resnet", "mobilenet_v1", "mobilenet_v2")
MODES = ("train", "eval", "train_and_eval", "eval_once")
IMAGE_CHANNELS = 3

# Original flags (spec: same names, defaults and meaning).
define.enum("precision", "float32", list(strategies.PRECISIONS),
            "Computation precision; variables stay float32.")
define.integer("num_workers", 1, "No-op (TPUEstimator).")
define.float("base_learning_rate", 0.1,
             "Learning rate for batch 256; scaled by train_batch_size / 256.")
define.float("momentum", 0.9, "Nesterov momentum.")
define.integer("ps_task", 0, "No-op (TPUEstimator).")
define.float("weight_decay", 1e-4, "L2 weight_decay * sum(w^2) / 2 on conv and "
             "dense kernels (not BN, biases or depthwise kernels).")
define.string("master", "", "TPU address, when --tpu is empty.")
define.string("tpu_job_name", None, "No-op (TPUEstimator).")
define.integer("steps_per_checkpoint", 1000, "Steps between checkpoints.")
define.integer("keep_checkpoint_max", 0, "Checkpoints kept; 0 keeps all.")
define.integer("seed", 0, "Seed of weights, masks, data order and augmentation.")
define.string("data_directory", None,
              "ImageNet TFRecords (train-*, validation-*) in the standard layout.")
define.string("eval_once_ckpt_prefix", "",
              "mode=eval_once: checkpoint (file prefix) inside the output dir, "
              "e.g. model.ckpt-3200000; a TF1 checkpoint of the original or ours.")
define.enum("data_format", "channels_last", ["channels_last", "channels_first"],
            "No-op: models are channels-last.")
define.boolean("transpose_input", False, "No-op (TPU double transpose).")
define.boolean("log_mask_imgs_each_iteration", False,
               "Write every mask as an image at each evaluation.")
define.string("mask_init_method", "",
              "Sparsity distribution: random, erdos_renyi, erdos_renyi_kernel or "
              "str. Required for the sparse methods.")
define.integer("resnet_depth", 50, "ResNet depth: 18, 34, 50, 101, 152 or 200.")
define.float("label_smoothing", 0.1, "Label smoothing of the training loss.")
define.float("erk_power_scale", 1.0, "Exponent on ERK's raw layer densities.")
define.integer("train_steps", 2, "Training steps (x training_steps_multiplier).")
define.integer("train_batch_size", 1024, "Global training batch size.")
define.integer("eval_batch_size", 1000,
               "Global evaluation batch size; must divide num_eval_images.")
define.integer("num_train_images", 1281167, "Training images (epoch length).")
define.integer("num_eval_images", 50000, "Evaluation images.")
define.integer("num_label_classes", 1000, "Classes.")
define.integer("steps_per_eval", 1251, "mode=train_and_eval: steps between evals.")
define.boolean("use_tpu", False, "Same as --distribution_strategy=tpu.")
define.integer("iterations_per_loop", 1251, "No-op (TPUEstimator loop).")
define.integer("num_parallel_calls", 64, "Parallel image decoding calls.")
define.integer("num_cores", 8, "No-op (TPU shards; the strategy knows them).")
define.string("output_dir", "/tmp/imagenet/", "Run directory (base).")
define.boolean("use_folder_stub", True, "Append <training_method>/<end_sparsity>/"
               "<maskupdate_begin_step>/<maskupdate_end_step>/<maskupdate_frequency>/"
               "<drop_fraction>/<label_smoothing>/<weight_decay> to output_dir.")
define.boolean("use_batch_statistics", False,
               "Evaluate with batch statistics in BN.")
define.boolean("eval_on_train", False, "Evaluate on the training images.")
define.enum("mode", "train", list(MODES),
            "train, eval (follow checkpoints until train_steps), train_and_eval or "
            "eval_once.")
define.integer("export_model_freq", 2502,
               "mode=train: steps between SavedModel exports (and one at the end).")
script_flags.define_training_method_flag(define, "scratch")
define.enum("init_method", "baseline", ["baseline", "sparse"],
            "sparse: scale each masked kernel's initial values by "
            "1/sqrt(density), keeping the variance over active inputs.")
define.boolean("is_warm_up", True, "No-op.")
define.float("width", -1.0, "Channel multiplier; <= 0 means 1.")
define.boolean("use_adam", False, "Adam with the constant scaled learning rate.")
define.boolean("use_sgdr", False, "Cosine decay with warm restarts.")
define.float("sgdr_decay_step", 5, "SGDR: epochs of the first cycle.")
define.float("sgdr_t_mul", 1.5, "SGDR: cycle length multiplier.")
define.float("sgdr_m_mul", 0.5, "SGDR: restart rate multiplier.")
define.float("end_sparsity", 0.9, "Target sparsity.")
script_flags.define_mask_update_flags(
    define, maskupdate_end_step=25000, drop_fraction_anneal="constant")
define.float("first_layer_sparsity", 0.0,
             "0: first layer dense; -1: the distribution's share; >0: exact.")
define.float("last_layer_sparsity", -1.0,
             "0: last layer dense; -1: the distribution's share; >0: exact.")
define.string("load_mask_dir", "", "Start from this checkpoint's (or directory's) "
              "masks, when the run directory has no checkpoint yet.")
define.string("initial_value_checkpoint", "", "Start from this checkpoint's "
              "weights, when the run directory has no checkpoint yet.")
define.enum("model_architecture", "resnet", list(ARCHITECTURES), "Network.")
define.float("expansion_factor", 6.0, "MobileNet-v2 expansion factor.")
define.float("training_steps_multiplier", 1.0, "Multiplies train_steps, the mask "
             "update (and pruning) steps and the learning-rate schedule's epochs.")
define.integer("block_width", 1, "No-op.")
define.integer("block_height", 1, "No-op.")

# Additions.
define.enum("distribution_strategy", "default", list(strategies.STRATEGIES),
            "tf.distribute strategy.")
define.string("tpu", "", "TPU name or grpc:// address (distribution_strategy=tpu).")
define.integer("num_gpus", 0, "mirrored: GPUs to use; 0 uses all visible ones.")
define.string("tfds_data_dir", "",
              "tensorflow-datasets directory with imagenet2012 (instead of "
              "--data_directory).")
define.boolean("use_synthetic_data", False,
               "Random images and labels, for benchmarks and smoke runs.")
define.integer("image_size", imagenet_input.IMAGE_SIZE, "Model input side.")
define.boolean("jit_compile", False,
               "Compile each replica's forward and backward pass with XLA.")
define.integer("summary_steps", 100, "Steps between progress lines and summaries.")
define.integer("sparsity_begin_step", 10000, "prune: first pruning step.")
define.integer("sparsity_end_step", 25000, "prune: last pruning step.")
define.integer("pruning_frequency", 1000, "prune: steps between pruning updates.")
script_flags.define_deterministic_flag(define)

# Flags that say where and how a run goes, not what it trains; every other flag is the
# run's identity (`script_flags.run_identity`), which a resumed run must match.
OPERATIONAL_FLAGS = (
    # TPUEstimator settings that do nothing here.
    "num_workers", "ps_task", "tpu_job_name", "iterations_per_loop", "num_cores",
    "transpose_input", "data_format", "is_warm_up", "block_width", "block_height",
    # Where the data are (the same images, as TFRecords or through tensorflow-datasets)
    # and where the run is kept. --load_mask_dir and --initial_value_checkpoint, which
    # choose the run's start, and --use_synthetic_data are part of the identity.
    "data_directory", "tfds_data_dir", "output_dir", "use_folder_stub",
    # How long to train: the learning-rate schedule is in epochs, so a longer run
    # continues a shorter one.
    "train_steps",
    # Checkpoint, export and evaluation cadence, checkpoints kept, reporting.
    "steps_per_checkpoint", "keep_checkpoint_max", "export_model_freq", "steps_per_eval",
    "summary_steps", "log_mask_imgs_each_iteration",
    # What evaluation covers and how; training does not depend on them.
    "eval_batch_size", "num_eval_images", "eval_on_train", "use_batch_statistics",
    # Hardware: the strategy, its devices and the input's parallelism. The batch is
    # global (--train_batch_size) and the input order does not depend on them.
    "distribution_strategy", "use_tpu", "tpu", "master", "num_gpus",
    "num_parallel_calls",
    # What this process does with the run: train, evaluate, which checkpoint.
    "mode", "eval_once_ckpt_prefix",
    # Op determinism makes the computation reproducible without changing it.
    "deterministic",
)


def run_directory() -> str:
  if not FLAGS.use_folder_stub:
    return FLAGS.output_dir
  stub = [FLAGS.training_method, FLAGS.end_sparsity, scaled(FLAGS.maskupdate_begin_step),
          scaled(FLAGS.maskupdate_end_step), FLAGS.maskupdate_frequency, FLAGS.drop_fraction,
          FLAGS.label_smoothing, FLAGS.weight_decay]
  return os.path.join(FLAGS.output_dir, *map(str, stub))


def scaled(steps: int) -> int:
  """Steps stretched by --training_steps_multiplier, as the original."""
  return int(steps * FLAGS.training_steps_multiplier)


def validate_flags() -> None:
  """Fails at start, naming the flag, on settings that cannot work."""
  method = script_flags.training_method_class(FLAGS)
  if method.needs_sparsity_distribution and not FLAGS.mask_init_method:
    raise ValueError(f"--training_method={FLAGS.training_method} needs "
                     "--mask_init_method (random, erdos_renyi, erdos_renyi_kernel or str).")
  if FLAGS.mask_init_method:
    script_flags.check_sparsity_distribution(FLAGS, "mask_init_method")
  script_flags.check_sparsity(FLAGS, "end_sparsity")
  for name in ("first_layer_sparsity", "last_layer_sparsity"):
    if FLAGS[name].value >= 1.0:
      raise ValueError(f"--{name} must be below 1 (0: dense, negative: the "
                       "distribution's share, in (0, 1): exact); got "
                       f"{FLAGS[name].value}.")
  if FLAGS.model_architecture == "resnet":
    script_flags.check_choice(FLAGS, "resnet_depth", BLOCKS_PER_GROUP)
  for name in ("train_batch_size", "eval_batch_size", "train_steps", "num_train_images",
               "num_eval_images", "steps_per_checkpoint", "steps_per_eval", "image_size",
               "export_model_freq"):
    if FLAGS[name].value <= 0:
      raise ValueError(f"--{name} must be positive; got {FLAGS[name].value}.")
  if FLAGS.mode != "train" and FLAGS.num_eval_images % FLAGS.eval_batch_size:
    raise ValueError(f"--eval_batch_size={FLAGS.eval_batch_size} must divide "
                     f"--num_eval_images={FLAGS.num_eval_images}.")
  if FLAGS.mode == "eval_once" and not FLAGS.eval_once_ckpt_prefix:
    raise ValueError("--mode=eval_once needs --eval_once_ckpt_prefix.")
  if FLAGS.training_steps_multiplier <= 0:
    raise ValueError("--training_steps_multiplier must be positive.")
  script_flags.check_mask_update_flags(FLAGS, scaled)
  script_flags.check_data_directory(FLAGS, "data_directory")
  script_flags.check_output_directory(FLAGS, "output_dir")


def model_description() -> dict[str, object]:
  """The network the flags name, as `rigl.models.from_description` builds it."""
  arguments = {"width": FLAGS.width if FLAGS.width > 0 else 1.0,
               "num_classes": FLAGS.num_label_classes,
               "input_shape": (FLAGS.image_size, FLAGS.image_size, IMAGE_CHANNELS)}
  if FLAGS.model_architecture == "resnet":
    arguments["depth"] = FLAGS.resnet_depth
  elif FLAGS.model_architecture == "mobilenet_v2":
    arguments["expansion_factor"] = FLAGS.expansion_factor
  return models.describe(FLAGS.model_architecture, **arguments)


def sparsity_config() -> rigl.SparsityConfig:
  """The first layer is never masked in MobileNets (the original built it dense)."""
  first = FLAGS.first_layer_sparsity
  if FLAGS.model_architecture.startswith("mobilenet"):
    first = 0.0
  return rigl.SparsityConfig(FLAGS.end_sparsity, FLAGS.mask_init_method or "random",
                             erk_power_scale=FLAGS.erk_power_scale,
                             first_layer_sparsity=first,
                             last_layer_sparsity=FLAGS.last_layer_sparsity)


def inner_optimizer(steps_per_epoch: float) -> tf_keras.optimizers.Optimizer:
  """The original's optimizer; epochs are fractional (step * batch / images)."""
  peak = learning_rate_lib.scaled_learning_rate(FLAGS.base_learning_rate,
                                                FLAGS.train_batch_size)
  if FLAGS.use_adam:
    return tf_keras.optimizers.Adam(peak)
  if FLAGS.use_sgdr:
    rate = tf_keras.optimizers.schedules.CosineDecayRestarts(
        peak, FLAGS.sgdr_decay_step * steps_per_epoch, FLAGS.sgdr_t_mul, FLAGS.sgdr_m_mul)
  else:
    rate = learning_rate_lib.PiecewiseWithWarmup(
        peak, steps_per_epoch, learning_rate_lib.schedule_for(FLAGS.model_architecture),
        FLAGS.training_steps_multiplier)
  return tf_keras.optimizers.SGD(rate, momentum=FLAGS.momentum, nesterov=True)


def create_optimizer(model: tf_keras.Model) -> rigl.SparseOptimizer:
  steps_per_epoch = FLAGS.num_train_images / FLAGS.train_batch_size
  optimizer = rigl.create_sparse_optimizer(
      FLAGS.training_method, inner_optimizer(steps_per_epoch), model, sparsity_config(),
      **script_flags.mask_update_options(FLAGS, scaled),
      pruning_begin_step=scaled(FLAGS.sparsity_begin_step),
      pruning_end_step=scaled(FLAGS.sparsity_end_step),
      pruning_frequency=FLAGS.pruning_frequency, seed=FLAGS.seed)
  if FLAGS.init_method == "sparse":
    for name, kernel in optimizer.kernels.items():
      density = 1.0 - optimizer.layer_sparsities[name]
      kernel.assign(kernel / np.sqrt(max(density, np.finfo(np.float32).tiny)))
  return optimizer


def input_config() -> imagenet_input.InputConfig:
  return imagenet_input.InputConfig(
      data_directory=FLAGS.data_directory or "", tfds_data_dir=FLAGS.tfds_data_dir,
      use_synthetic_data=FLAGS.use_synthetic_data, image_size=FLAGS.image_size,
      num_classes=FLAGS.num_label_classes, num_parallel_calls=FLAGS.num_parallel_calls,
      seed=FLAGS.seed)


def input_functions(config: imagenet_input.InputConfig):
  """(training, evaluation) input functions of the shared loop."""
  eval_batches = FLAGS.num_eval_images // FLAGS.eval_batch_size

  def train_input(epoch: int, skip: int, context: tf.distribute.InputContext):
    return imagenet_input.dataset(
        config, True, context.get_per_replica_batch_size(FLAGS.train_batch_size), context,
        epoch, skip)

  def eval_input(context: tf.distribute.InputContext):
    per_pipeline = eval_batches * context.num_replicas_in_sync // context.num_input_pipelines
    dataset = imagenet_input.dataset(
        config, False, context.get_per_replica_batch_size(FLAGS.eval_batch_size), context,
        num_synthetic_batches=per_pipeline,
        split="train" if FLAGS.eval_on_train else None)
    return dataset.take(per_pipeline)

  return train_input, eval_input


def evaluate_once(trainer: training.Trainer, eval_input) -> dict[str, object]:
  """mode=eval_once: one checkpoint, TF1 (the released ones) or ours."""
  prefix = os.path.join(trainer.config.save_path, FLAGS.eval_once_ckpt_prefix)
  extra: dict[str, object] = {"checkpoint": prefix}
  training.verify_checkpoint(prefix)  # A damaged file fails here, named.
  if tf1_checkpoints.is_tf1_checkpoint(prefix):
    report = tf1_checkpoints.restore_tf1_checkpoint(prefix, trainer.model, trainer.optimizer)
    if report.global_step is not None:  # Summaries and results at the trained step.
      trainer.optimizer.iterations.assign(report.global_step)
    extra.update(checkpoint_global_step=report.global_step,
                 checkpoint_masked_layers=list(report.masked_layers),
                 checkpoint_layer_sparsity=report.layer_sparsities)
  else:
    trainer.restore(prefix, verified=True)
  metrics = trainer.evaluate(eval_input)
  name = os.path.basename(FLAGS.eval_once_ckpt_prefix)
  return trainer.write_results(metrics, extra, filename=f"eval_once_{name}.json")


def train_with_exports(trainer: training.Trainer, train_input) -> None:
  """mode=train: trains, exporting a SavedModel every export_model_freq steps."""
  train_steps = trainer.config.train_steps
  trainer.restore_latest()
  while trainer.step < train_steps:
    next_export = (trainer.step // FLAGS.export_model_freq + 1) * FLAGS.export_model_freq
    trainer.train(train_input, min(next_export, train_steps))
    trainer.config.log(f"Exported the model to {trainer.export()}.")


def run() -> dict[str, object] | None:
  """Runs the mode the flags name; returns the last evaluation's results, if any."""
  validate_flags()
  data_config = input_config()
  strategy_name = "tpu" if FLAGS.use_tpu else FLAGS.distribution_strategy
  strategy = strategies.create_strategy(strategy_name, FLAGS.tpu or FLAGS.master,
                                          FLAGS.num_gpus)
  with strategies.stop_on_worker_failure(strategy):
    return run_on(strategy, data_config)


def run_on(strategy: tf.distribute.Strategy,
           data_config: imagenet_input.InputConfig) -> dict[str, object] | None:
  """`run` under `strategy`, whose multi-worker failures end it with one line."""
  strategies.set_precision(FLAGS.precision)
  steps_per_epoch = max(FLAGS.num_train_images // FLAGS.train_batch_size, 1)
  save_path = run_directory()
  script_flags.apply_deterministic_flag(FLAGS)
  with strategy.scope():
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
      train_steps=scaled(FLAGS.train_steps), global_batch_size=FLAGS.train_batch_size,
      steps_per_epoch=steps_per_epoch, steps_per_eval=FLAGS.steps_per_eval,
      steps_per_checkpoint=FLAGS.steps_per_checkpoint,
      summary_steps=FLAGS.summary_steps, save_path=save_path,
      # eval_once may read a checkpoint of another run (the released ones).
      identity=(None if FLAGS.mode == "eval_once" else
                script_flags.run_identity(FLAGS, OPERATIONAL_FLAGS, description)),
      l2_scale=FLAGS.weight_decay, label_smoothing=FLAGS.label_smoothing,
      keep_checkpoint_max=FLAGS.keep_checkpoint_max,
      mask_images=FLAGS.log_mask_imgs_each_iteration,
      eval_batch_statistics=FLAGS.use_batch_statistics, jit_compile=FLAGS.jit_compile,
      loss_scaling=FLAGS.precision == "mixed_float16",
      log=lambda line: print(line, flush=True))
  trainer = training.Trainer(model, optimizer, config, strategy)
  train_input, eval_input = input_functions(data_config)
  if FLAGS.mode == "train":
    train_with_exports(trainer, train_input)
    return None
  if FLAGS.mode == "train_and_eval":
    return training.train_and_evaluate(model, optimizer, train_input, eval_input, config,
                                       trainer=trainer)
  if FLAGS.mode == "eval":
    return training.evaluate_checkpoints(trainer, eval_input, until_step=config.train_steps)
  return evaluate_once(trainer, eval_input)


if __name__ == "__main__":
  script_flags.run(run, FLAGS)
