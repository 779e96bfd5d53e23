"""The train/eval loop every training script shares.

`Trainer` trains a Keras model with a sparse optimizer under any `tf.distribute`
strategy, step by step up to a global step, and evaluates it on a full evaluation set
(top-1, top-5, cross-entropy, regularisation loss, per-layer sparsity). It writes
TensorBoard summaries (loss, learning rate, throughput, drop fraction, sparsity,
inference and cumulative training FLOPs, mask images), prints progress lines,
checkpoints model, optimizer (masks, schedule state, slots, step) and its own counters
as `model.ckpt-<step>` in the run directory, resumes from the latest checkpoint, and
writes `results.json` after every evaluation.

The scripts compose it: `train_and_evaluate` alternates training and evaluation (the
modes `train`, `train_and_eval`), `evaluate_checkpoints` follows a training job's
checkpoints (`eval`), and `Trainer.restore` + `Trainer.evaluate` serve `eval_once`.

Input functions get a `tf.distribute.InputContext` and return per-replica batches
(`distribute_datasets_from_function`), so multi-worker jobs read their own shard. The
training input function also gets the epoch and the number of its batches already
trained on, so that a resumed run continues with exactly the batches it would have
seen.

A run directory records the settings that define the run (`run_config.json`); resuming
with different settings is refused rather than silently mixing two runs.

Crash safety: a process killed at any point (while saving included) resumes from its
newest complete checkpoint, which `restore_latest` reads in full before restoring,
falling back to an older one when the newest is damaged; with TensorFlow's op
determinism the resumed run ends bitwise where an uninterrupted one does. Restoring a
damaged checkpoint explicitly fails with a ValueError naming the file. A NaN or Inf
loss or weight stops training (`TrainingDivergedError`) before anything diverged is
saved.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import tempfile
import time
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import tensorflow as tf
import tf_keras

from rigl import tf1_checkpoints
from rigl import strategies
from rigl import flops
from rigl import keras_compat
from rigl import export as export_lib
from rigl import kernel_selection
from rigl import run_directory
from rigl import summaries
from rigl.sparse_optimizer import HostUpdatePlan
from rigl.sparse_optimizer import SparseOptimizer
# The run directory's names and checks, which the scripts and tests reach through here.
from rigl.run_directory import CHECKPOINT_NAME
from rigl.run_directory import EXPORT_DIR
from rigl.run_directory import MASK_RECORDS_FILE
from rigl.run_directory import RESULTS_FILE
from rigl.run_directory import RunIdentity
from rigl.run_directory import check_run_directory
from rigl.run_directory import verify_checkpoint
from rigl.run_directory import write_json_atomically
# Training FLOPs are accounted at every checkpoint, after the first call that follows
# one (or a progress line, or the start), and every this many calls, from the masks'
# FLOPs at both ends of each stretch between two such points.
FLOPS_SAMPLE_CALLS = 100
TOP_K = 5

# (epoch, batches to skip, input context) -> per-replica batches of (inputs, labels)
# of that epoch (or an endless stream) for this input pipeline, without its first
# `skip` batches (the pipeline's share of the global batches already trained on).
TrainInputFn = Callable[[int, int, tf.distribute.InputContext], tf.data.Dataset]
# input context -> per-replica batches of the whole evaluation set.
EvalInputFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]


@dataclasses.dataclass
class RunConfig:
  """How long to train, what to optimise and where to keep the run.

  Attributes:
    train_steps: the global step at which training ends (a batch count with
      `count_batches`).
    global_batch_size: training examples per step over all replicas.
    steps_per_epoch: batches in one pass over the training data.
    count_batches: measure training in batches drawn rather than optimizer steps
      (MNIST's epochs; RigL's and SNIP's mask-update calls draw a batch but take no
      step). Evaluation and checkpoint intervals count the same way.
    steps_per_eval: training steps between evaluations (0: one epoch).
    steps_per_checkpoint: steps between checkpoints (0: at every evaluation).
    summary_steps: steps between progress lines and training summaries (0: at every
      evaluation).
    save_path: run directory; empty keeps nothing on disk.
    identity: the settings that define the run (a `RunIdentity`, or a mapping of
      flag names to values); a resumed run must match them (None: neither recorded
      nor checked, e.g. to evaluate a foreign checkpoint).
    l2_scale: L2 penalty l2_scale * sum(w^2) / 2 on every conv and dense kernel.
    label_smoothing: targets (1 - s) * one_hot + s / num_classes in the training loss.
    save_checkpoints: write checkpoints and resume from the latest one.
    keep_checkpoint_max: checkpoints kept (0 keeps all).
    mask_record_frequency: record the masks every this many steps (0: never).
    mask_images: write every mask as an image at each evaluation.
    per_class_metrics: report per-class precision and recall at 1.
    eval_batch_statistics: evaluate with batch statistics in BN (moving statistics
      are left untouched).
    jit_compile: compile the training step with XLA: forward, backward, optimizer
      step and mask update on one replica; the forward and backward pass only on
      several (their cross-replica update cannot run inside XLA). XLA draws other
      stateless random numbers than TF's kernels, so SET's random growth differs from
      a run without it (each is deterministic).
    loss_scaling: dynamic loss scaling, for float16 computation (`mixed_float16`).
    log: where progress lines go.
  """
  train_steps: int
  global_batch_size: int
  steps_per_epoch: int
  count_batches: bool = False
  steps_per_eval: int = 0
  steps_per_checkpoint: int = 0
  summary_steps: int = 0
  save_path: str = ""
  identity: RunIdentity | Mapping[str, Any] | None = dataclasses.field(
      default_factory=dict)
  l2_scale: float = 0.0
  label_smoothing: float = 0.0
  save_checkpoints: bool = True
  keep_checkpoint_max: int = 5
  mask_record_frequency: int = 0
  mask_images: bool = True
  per_class_metrics: bool = False
  eval_batch_statistics: bool = False
  jit_compile: bool = False
  loss_scaling: bool = False
  log: Callable[[str], None] = print

  def __post_init__(self):
    for name in ("train_steps", "global_batch_size", "steps_per_epoch"):
      if getattr(self, name) <= 0:
        raise ValueError(f"`{name}` must be positive; got {getattr(self, name)}.")
    for name in ("steps_per_eval", "steps_per_checkpoint", "summary_steps"):
      if getattr(self, name) < 0:
        raise ValueError(f"`{name}` must be 0 or positive; got {getattr(self, name)}.")
    self.steps_per_eval = self.steps_per_eval or self.steps_per_epoch
    self.steps_per_checkpoint = self.steps_per_checkpoint or self.steps_per_eval


class TrainingDivergedError(ValueError):
  """The training loss or the weights became NaN or Inf; training stopped.

  A ValueError, so that the scripts report it as one `error:` line, as other bad
  settings (here typically a learning rate too high for the model or bad input).
  """


def l2_penalty(kernels) -> tf.Tensor:
  """sum(w^2) / 2 over `kernels` (TF1's l2_regularizer without its scale)."""
  return tf.add_n([tf.nn.l2_loss(tf.cast(kernel, tf.float32)) for kernel in kernels])


def model_kernels(model: tf_keras.Model) -> list[tf.Variable]:
  """Conv and dense kernels (not depthwise kernels, biases or BN), for L2."""
  return [layer.kernel for layer in kernel_selection.find_kernels(model)]


def sparsity_report(model: tf_keras.Model,
                    optimizer: SparseOptimizer) -> tuple[float, dict[str, float]]:
  """Global sparsity over all conv/dense kernels, and each masked layer's."""
  per_layer = {name: float(np.mean(mask.numpy() == 0))
               for name, mask in optimizer.masks.items()}
  return kernel_selection.global_sparsity(model, optimizer.kernels), per_layer


class _Counters(tf.Module):
  """Run counters kept in checkpoints beside model and optimizer."""

  def __init__(self):
    super().__init__()
    # Batches drawn from the training input; more than steps for methods whose
    # mask-update calls take no optimizer step (RigL, SNIP).
    self.batches = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.training_flops = tf.Variable(0.0, dtype=tf.float64, trainable=False)
    self.dense_step_flops = tf.Variable(0.0, dtype=tf.float64, trainable=False)
    self.wall_time_s = tf.Variable(0.0, dtype=tf.float64, trainable=False)


class _MaskRecorder:
  """Collects boolean masks every `frequency` steps into an .npz file."""

  def __init__(self, path: pathlib.Path, frequency: int):
    self.path, self.frequency = path, frequency
    self.steps: list[int] = []
    self.masks: dict[str, list[np.ndarray]] = {}
    if frequency and path.exists():
      with np.load(path) as records:
        self.steps = list(records["steps"])
        for name in records["layer_names"]:
          self.masks[str(name)] = list(records[str(name)])

  def maybe_record(self, step: int, optimizer: SparseOptimizer) -> None:
    if not self.frequency or step % self.frequency or step in self.steps:
      return
    self.steps.append(step)
    for name, mask in optimizer.masks.items():
      self.masks.setdefault(name, []).append(mask.numpy().astype(bool))

  def save(self) -> None:
    if self.frequency and self.steps:
      arrays = {name: np.stack(values) for name, values in self.masks.items()}
      temporary = self.path.with_suffix(".tmp.npz")
      np.savez_compressed(temporary, steps=np.array(self.steps),
                          layer_names=np.array(list(self.masks)), **arrays)
      os.replace(temporary, self.path)


class Trainer:
  """Trains and evaluates one model with one sparse optimizer (see module docstring).

  Args:
    model, optimizer: built under `strategy.scope()`; the model outputs logits.
    config: run length, loss, directory and reporting settings.
    strategy: the `tf.distribute` strategy (default: the current one).
  """

  def __init__(self, model: tf_keras.Model, optimizer: SparseOptimizer,
               config: RunConfig, strategy: tf.distribute.Strategy | None = None):
    self.model, self.optimizer, self.config = model, optimizer, config
    self.strategy = strategy or tf.distribute.get_strategy()
    self.save_path = pathlib.Path(config.save_path) if config.save_path else None
    # In a multi-worker job only the chief writes the run directory; the others save
    # their (identical) checkpoints to a scratch directory, as saving is collective.
    self.is_chief = strategies.is_chief(self.strategy)
    if self.save_path and config.identity is not None and self.is_chief:
      check_run_directory(config.save_path, config.identity)
    # Host-side counters (float64 is not a TPU type), outside the strategy.
    self.counters = _Counters()
    with self.strategy.scope():
      optimizer.build(model.trainable_variables)  # Slots exist before a restore.
      # Skips steps whose scaled gradients overflow (the sparse optimizer's update,
      # mask updates included, does not run; the step counter still advances).
      self._loss_scaler = (tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
                           if config.loss_scaling else None)
    tracked = {"loss_scale": self._loss_scaler} if self._loss_scaler else {}
    generators = _layer_random_generators(model)
    if generators:
      tracked["random_generators"] = generators
    self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                          counters=self.counters, **tracked)
    self.manager = None
    if self.save_path and config.save_checkpoints:
      directory = str(self.save_path) if self.is_chief else tempfile.mkdtemp()
      self.manager = tf.train.CheckpointManager(
          self.checkpoint, directory, max_to_keep=config.keep_checkpoint_max or None,
          checkpoint_name=CHECKPOINT_NAME)
    self._last_saved_progress = -1
    self._writers: dict[str, tf.summary.SummaryWriter] = {}
    writes = bool(self.save_path) and self.is_chief
    self._recorder = _MaskRecorder(
        self.save_path / MASK_RECORDS_FILE if writes else pathlib.Path(),
        config.mask_record_frequency if writes else 0)
    self._flops_meter = flops.TrainingFlopsMeter(tuple(flops.layer_specs(model)),
                                                 type(optimizer).flops_rule)
    self.dense_flops = self._flops_meter.dense_flops
    self._kernels = model_kernels(model)
    # Which calls update masks is decided on the host: ordinary calls run a compiled
    # step without the update or its conditional, update calls another one.
    self._plan = HostUpdatePlan(optimizer)
    self._train_steps: dict[bool, Callable] = {}
    self._eval_step = self._make_eval_step()

  # ----- state ------------------------------------------------------------------------

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  @property
  def progress(self) -> int:
    """How far training is, in the unit of `train_steps` (steps or batches)."""
    return self._progress_at(self.step, int(self.counters.batches.numpy()))

  def _progress_at(self, step: int, batches: int) -> int:
    """The progress after `batches` training calls, at optimizer step `step`."""
    return batches if self.config.count_batches else step

  def restore_latest(self) -> bool:
    """Resumes from the run directory's newest complete checkpoint, if there is one.

    The checkpoint manager lists a checkpoint only after writing all of its files, so
    a process killed while saving leaves the previous one listed. The newest complete
    checkpoint can still be another one: one written but not yet listed when the
    process died (taken from the directory), or a listed one damaged since (a full
    disk, a copy cut short). Every candidate is read in full before anything is
    restored, newest first; unreadable ones are skipped with a logged warning.

    Raises:
      ValueError: when checkpoints are listed but none of them can be read; starting
        over would silently discard the run.
    """
    if not self.manager:
      return False
    # Every worker of a multi-worker job reads the chief's run directory (a shared file
    # system), not the scratch directory it saves to, so that all resume together.
    listed, on_disk = run_directory.checkpoint_candidates(str(self.save_path))
    skipped = []
    for number in sorted(set(listed) | set(on_disk), reverse=True):
      path = listed.get(number) or on_disk[number]
      try:
        verify_checkpoint(path)
      except ValueError as error:
        skipped.append(path)
        self.config.log(f"warning: skipping checkpoint {path}: {error}")
        continue
      self.restore(path, verified=True)
      self._last_saved_progress = self.progress
      self.config.log(f"Resumed from {path} at step {self.step}.")
      return True
    if listed:
      raise ValueError(f"No checkpoint in {self.save_path} can be read "
                       f"({', '.join(skipped)}); delete them to start the run over.")
    return False

  def restore(self, path: str, *, verified: bool = False) -> None:
    """Restores model, optimizer and counters from a checkpoint of this loop.

    The checkpoint is read in full first (unless `verified`), so that a damaged one
    fails with the file's name and leaves every variable as it was.

    Raises:
      ValueError: when the checkpoint cannot be read (missing, truncated or corrupt
        files, named in the message), or does not hold every variable of this model,
        optimizer and loop (another model, method, or a TF1 checkpoint).
    """
    if not verified:
      verify_checkpoint(path)
    if tf1_checkpoints.is_tf1_checkpoint(path):
      raise ValueError(f"{path} is a TF1 checkpoint of the original code; evaluate it "
                       "with --mode=eval_once.")
    status = self.checkpoint.restore(path)
    try:
      status.assert_existing_objects_matched()
    except AssertionError as error:
      raise ValueError(f"{path} is not a checkpoint of this model and training method: "
                       f"{str(error)[:500]}") from None
    status.expect_partial()
    # A no-op on this loop's checkpoints; slots saved by older versions of this library
    # kept momentum on masked connections, which would revive them.
    self.optimizer.apply_masks()

  def save(self) -> None:
    """Checkpoints the current state as `model.ckpt-<step>` (and the mask records).

    The mask records go first: a process killed in between leaves records that reach
    past the latest checkpoint, which a resumed run keeps (it records only new steps),
    rather than a gap.

    Raises:
      TrainingDivergedError: when a weight, statistic or optimizer variable is NaN or
        Inf; nothing is written, so the previous checkpoint stays the latest. (A loss
        can be finite while the update it drives overflows the weights.)
    """
    if self.manager:
      self._check_finite_variables()
      self._last_saved_progress = self.progress
      self._recorder.save()
      self.manager.save(checkpoint_number=self.step)

  def _check_finite_variables(self) -> None:
    """Raises TrainingDivergedError if a float variable to be saved is NaN or Inf."""
    variables = [v for v in list(self.model.variables) + list(self.optimizer.variables)
                 if v.dtype.is_floating]
    finite = tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in variables]).numpy()
    if not finite.all():
      names = [v.name for v, ok in zip(variables, finite) if not ok]
      raise TrainingDivergedError(
          f"Training diverged: after step {self.step}, {len(names)} variables hold NaN "
          f"or Inf (first: {names[0]}); nothing was saved, so the latest checkpoint "
          f"({self._latest_checkpoint_name()}) is the last good one.")

  def _latest_checkpoint_name(self) -> str:
    return (self.manager.latest_checkpoint if self.manager else None) or "none"

  def export(self, directory: str | None = None) -> str:
    """Writes the model as a SavedModel with `rigl.export`'s serving signature.

    Masked weights are zeros in its kernels, so the SavedModel is the sparse model.
    """
    directory = directory or str(self.save_path / EXPORT_DIR / str(self.step))
    if not self.is_chief:
      directory = tempfile.mkdtemp()
    export_lib.export_saved_model(self.model, directory)
    return directory

  def _writer(self, split: str) -> tf.summary.SummaryWriter | None:
    if not self.save_path or not self.is_chief:
      return None
    if split not in self._writers:
      self._writers[split] = tf.summary.create_file_writer(str(self.save_path / split))
    return self._writers[split]

  # ----- compiled steps ---------------------------------------------------------------

  def _train_step(self, images, labels) -> tf.Tensor:
    """One training call; returns the summed loss of the batch (left on the device).

    Runs the compiled step with the mask update when the host plan says this call
    updates masks, else the one without.
    """
    update = self._plan.update_due()
    if update not in self._train_steps:
      self._train_steps[update] = self._make_train_step(update)
    loss_sum = self._train_steps[update](images, labels)
    self._plan.called(update)
    return loss_sum

  def _make_train_step(self, update_masks: bool | None):
    """The compiled training step, with (`update_masks`) or without the mask update.

    None: a step that decides itself, with the schedule's conditional in the graph.
    """
    config, model = self.config, self.model
    optimizer = self._loss_scaler or self.optimizer
    loss_object = tf_keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=config.label_smoothing,
        reduction=tf_keras.losses.Reduction.NONE)

    def loss_and_gradients(images, labels):
      with tf.GradientTape() as tape:
        logits = tf.cast(model(images, training=True), tf.float32)
        one_hot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1])
        per_example = loss_object(one_hot, logits)
        loss = tf.nn.compute_average_loss(per_example,
                                          global_batch_size=config.global_batch_size)
        if config.l2_scale:
          replicas = tf.distribute.get_replica_context().num_replicas_in_sync
          loss += config.l2_scale * l2_penalty(self._kernels) / tf.cast(replicas,
                                                                         loss.dtype)
        if self._loss_scaler:
          loss = self._loss_scaler.get_scaled_loss(loss)
      grads = tape.gradient(loss, model.trainable_variables)
      if self._loss_scaler:
        grads = self._loss_scaler.get_unscaled_gradients(grads)
      return tf.reduce_sum(per_example), grads

    def loss_and_update(images, labels):
      loss_sum, grads = loss_and_gradients(images, labels)
      optimizer.apply_gradients(zip(grads, model.trainable_variables))
      return loss_sum

    if config.jit_compile and self.strategy.num_replicas_in_sync == 1:
      # One XLA program: forward, backward, optimizer step and mask update.
      loss_and_update = tf.function(loss_and_update, jit_compile=True)
    elif config.jit_compile:
      # The update's cross-replica part (merge_call) cannot run inside XLA.
      loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

    def replica_step(images, labels):
      # Outside XLA, which drops assertions.
      num_classes = model.output_shape[-1]
      message = f"A training label is outside [0, {num_classes})."
      with tf.control_dependencies([
          tf.debugging.assert_less(tf.cast(labels, tf.int64),
                                   tf.constant(num_classes, tf.int64), message=message),
          tf.debugging.assert_non_negative(labels, message=message)]):
        return loss_and_update(images, tf.identity(labels))

    @tf.function
    def train_step(images, labels):
      # Traced here, in the main thread (replicas may trace in threads of their own).
      with self.optimizer.planned(update_masks):
        loss_sum = self.strategy.run(replica_step, args=(images, labels))
      return self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None)

    return train_step

  def _make_eval_step(self):
    model, config = self.model, self.config

    def replica_step(images, labels):
      logits = tf.cast(model(images, training=config.eval_batch_statistics), tf.float32)
      labels = tf.cast(labels, tf.int32)
      cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
      top_1 = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels)
      k = min(TOP_K, logits.shape[-1])
      top_k = tf.math.in_top_k(labels, logits, k)
      sums = {"cross_entropy": tf.reduce_sum(cross_entropy),
              "top_1": tf.reduce_sum(tf.cast(top_1, tf.float32)),
              "top_5": tf.reduce_sum(tf.cast(top_k, tf.float32)),
              "count": tf.cast(tf.size(labels), tf.float32)}
      if config.per_class_metrics:
        sums["confusion"] = tf.math.confusion_matrix(
            labels, tf.argmax(logits, -1), num_classes=logits.shape[-1], dtype=tf.float32)
      return sums

    @tf.function
    def eval_step(images, labels):
      sums = self.strategy.run(replica_step, args=(images, labels))
      return {key: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
              for key, value in sums.items()}

    return eval_step

  # ----- training ---------------------------------------------------------------------

  def _train_batches(self, input_fn: TrainInputFn) -> Iterator:
    """Distributed training batches from where the run stands, epoch after epoch."""
    epoch, skip = divmod(int(self.counters.batches.numpy()), self.config.steps_per_epoch)
    while True:
      dataset = self.strategy.distribute_datasets_from_function(
          functools.partial(_epoch_input, input_fn, epoch, skip,
                            self.config.steps_per_epoch - skip))
      yield from dataset
      epoch, skip = epoch + 1, 0

  def _sparse_flops(self) -> float:
    return self._flops_meter.sparse_flops(self.optimizer.masks)

  def _add_training_flops(self, sample: tuple[float, int], calls: int
                          ) -> tuple[float, int]:
    """Counts `calls` training calls since `sample` (sparse FLOPs, step) was taken.

    Calls that took no optimizer step changed masks instead (RigL, SNIP); the sparse
    FLOPs over the stretch are the mean of those at its two ends.
    """
    now = (self._sparse_flops(), self.step)
    batch = self.config.global_batch_size
    self.counters.training_flops.assign_add(
        batch * self._flops_meter.stretch(calls, now[1] - sample[1], sample[0], now[0]))
    self.counters.dense_step_flops.assign_add(batch * calls *
                                              self._flops_meter.dense_step())
    return now

  def train(self, input_fn: TrainInputFn, until: int) -> None:
    """Trains until `progress` (optimizer steps, or batches) reaches `until`.

    Training FLOPs are sampled after the first call that follows the start, a progress
    line or a checkpoint, every `FLOPS_SAMPLE_CALLS` calls after that, and at every
    checkpoint, so that each checkpoint holds all calls before it and a resumed run
    samples where an uninterrupted one does (its counters come out the same).

    Raises:
      TrainingDivergedError: on a NaN or Inf loss (naming its batch and step) or
        weights; see `_check_losses` for when losses are checked. Nothing is saved
        after the last check that passed.
    """
    config = self.config
    if self.progress >= until:
      return
    batches = self._train_batches(input_fn)
    sample = (self._sparse_flops(), self.step)
    calls_since_sample, sample_after_next_call = 0, True
    window = _ProgressWindow(self.progress)
    stretch_start = time.time()
    # The step counter and the schedule's state may have been restored; from here on
    # the host plan tracks the counter, and the loop does not read it after each call.
    self._plan.refresh()
    step, batches_drawn = self._plan.iterations, int(self.counters.batches.numpy())
    progress = self._progress_at(step, batches_drawn)
    while progress < until:
      loss_sum = self._train_step(*next(batches))
      self.counters.batches.assign_add(1)
      batches_drawn += 1
      calls_since_sample += 1
      window.add(loss_sum, config.global_batch_size, step, batches_drawn)
      step = self._plan.iterations
      progress = self._progress_at(step, batches_drawn)
      self._recorder.maybe_record(step, self.optimizer)
      if sample_after_next_call or calls_since_sample == FLOPS_SAMPLE_CALLS:
        sample = self._add_training_flops(sample, calls_since_sample)
        calls_since_sample, sample_after_next_call = 0, False
      if (config.summary_steps and progress % config.summary_steps == 0
          and progress > window.start):
        self._report_progress(window, step)
        window = _ProgressWindow(progress)
        sample_after_next_call = True
      if (0 < progress < until and progress % config.steps_per_checkpoint == 0
          and progress != self._last_saved_progress):
        sample = self._add_training_flops(sample, calls_since_sample)
        calls_since_sample, sample_after_next_call = 0, True
        self._checkpoint_now(window, stretch_start)
        stretch_start = time.time()
    self._add_training_flops(sample, calls_since_sample)
    if window.calls:
      self._report_progress(window, self.step)
    self._checkpoint_now(window, stretch_start)

  def _checkpoint_now(self, window: _ProgressWindow, stretch_start: float) -> None:
    self._check_losses(window)
    self.counters.wall_time_s.assign_add(time.time() - stretch_start)
    self.save()

  def _check_losses(self, window: _ProgressWindow) -> None:
    """Stops training on the first NaN or Inf loss of `window`, naming its batch.

    Losses stay on the device until the loop needs them: for a progress line, which
    reads them anyway, and before each checkpoint. Each check is one transfer of the
    window's losses instead of one per call, and no op in the compiled step (XLA drops
    assertions). A diverged run thus goes on for at most `summary_steps` (or
    `steps_per_checkpoint`) calls, none of which is saved, and the error names the
    first bad one.

    Raises:
      TrainingDivergedError: naming the batch, its step and the last good checkpoint.
    """
    bad = window.first_non_finite()
    if bad is None:
      return
    step, batch, value = bad
    raise TrainingDivergedError(
        f"Training diverged: the loss of batch {batch} (step {step}) is {value}; "
        f"stopped without saving, so the latest checkpoint "
        f"({self._latest_checkpoint_name()}) is the last good one. Lower the learning "
        "rate or check the input, then resume from it.")

  def _report_progress(self, window: _ProgressWindow, step: int) -> None:
    self._check_losses(window)
    loss = window.mean_loss()
    rate = window.examples_per_second()
    batches = int(self.counters.batches.numpy())
    epoch = batches / self.config.steps_per_epoch
    position = (f"step {step}  batch {batches}/{self.config.train_steps}"
                if self.config.count_batches else f"step {step}/{self.config.train_steps}")
    self.config.log(f"{position}  epoch {epoch:.2f}  train_loss {loss:.4f}  "
                    f"{rate:.1f} examples/s")
    writer = self._writer("train")
    if writer:
      summaries.write_scalars(writer, step, {
          "loss": loss, "examples_per_second": rate, "epoch": epoch,
          "learning_rate": summaries.current_learning_rate(self.optimizer),
          "training_flops": float(self.counters.training_flops.numpy()),
          "inference_flops": self._sparse_flops()})

  # ----- evaluation -------------------------------------------------------------------

  def evaluate(self, input_fn: EvalInputFn, *, write: bool = True) -> dict[str, Any]:
    """Evaluates on the whole evaluation set; writes summaries and `results.json`."""
    saved_statistics = None
    if self.config.eval_batch_statistics:
      saved_statistics = [(v, v.numpy()) for v in self.model.non_trainable_variables]
    totals: dict[str, Any] = {}
    start = time.time()
    for images, labels in self.strategy.distribute_datasets_from_function(input_fn):
      for key, value in self._eval_step(images, labels).items():
        totals[key] = totals.get(key, 0) + value.numpy()
    if saved_statistics:
      for variable, value in saved_statistics:
        variable.assign(value)
    if not totals.get("count"):
      raise ValueError("The evaluation input is empty.")
    count = totals["count"]
    regularization = (self.config.l2_scale * float(l2_penalty(self._kernels).numpy())
                      if self.config.l2_scale else 0.0)
    global_sparsity, per_layer = sparsity_report(self.model, self.optimizer)
    sparse_flops = self._sparse_flops()
    dense_step_flops = float(self.counters.dense_step_flops.numpy())
    training_flops = float(self.counters.training_flops.numpy())
    step = self.step
    metrics: dict[str, Any] = {
        "step": step,
        "batches": int(self.counters.batches.numpy()),
        "epochs": int(self.counters.batches.numpy()) / self.config.steps_per_epoch,
        "test_accuracy": float(totals["top_1"] / count),
        "top_5_accuracy": float(totals["top_5"] / count),
        "test_loss": float(totals["cross_entropy"] / count),
        "regularization_loss": regularization,
        "eval_examples": int(count),
        "global_sparsity": global_sparsity,
        "per_layer_sparsity": per_layer,
        "inference_flops": sparse_flops,
        "inference_flops_ratio": sparse_flops / self.dense_flops,
        "training_flops": training_flops,
        # Relative to dense training on the same number of batches.
        "training_flops_ratio": (training_flops / dense_step_flops if dense_step_flops
                                 else float("nan")),
        "wall_time_s": float(self.counters.wall_time_s.numpy()),
    }
    writer = self._writer("eval") if write else None
    if writer:
      summaries.write_scalars(writer, step, {
          "top_1_accuracy": metrics["test_accuracy"],
          "top_5_accuracy": metrics["top_5_accuracy"],
          "cross_entropy": metrics["test_loss"],
          "regularization_loss": regularization})
      summaries.write_sparsity(writer, step, self.optimizer, global_sparsity, per_layer,
                               mask_images=self.config.mask_images)
      if "confusion" in totals:
        metrics["per_class"] = summaries.write_per_class(writer, step, totals["confusion"])
    elif "confusion" in totals:
      metrics["per_class"] = summaries.per_class_metrics(totals["confusion"])
    self.config.log(
        f"eval at step {step}: top_1 {metrics['test_accuracy']:.4f}  top_5 "
        f"{metrics['top_5_accuracy']:.4f}  cross_entropy {metrics['test_loss']:.4f}  "
        f"sparsity {global_sparsity:.4f}  train_flops {training_flops:.3e}  "
        f"({time.time() - start:.1f} s, {int(count)} examples)")
    return metrics

  def write_results(self, metrics: Mapping[str, Any],
                    extra: Mapping[str, Any] | None = None,
                    filename: str = RESULTS_FILE) -> dict[str, Any]:
    """`metrics` plus `extra`, written to the run directory as JSON."""
    results = dict(metrics, **(extra or {}))
    if self.save_path and self.is_chief:
      write_json_atomically(self.save_path / filename, results)
    return results


def _layer_random_generators(model: tf_keras.Model) -> list[tf.random.Generator]:
  """The tf.random.Generators of random layers (Dropout), when Keras uses them.

  With `enable_tf_random_generator`, Keras' random layers draw from their own
  generators, which checkpoints of the model do not include; checkpointing them here
  lets a resumed run draw what an uninterrupted one would.
  """
  generators = []
  for layer in model.submodules:
    generator = keras_compat.layer_random_generator(layer)
    if generator is not None:
      generators.append(generator)
  return generators


class _ProgressWindow:
  """Loss and throughput over the calls since the last progress line."""

  def __init__(self, progress: int):
    self.start, self.start_time = progress, time.time()
    self.calls, self.examples, self._loss_sums = 0, 0, []
    self._positions: list[tuple[int, int]] = []

  def add(self, loss_sum: tf.Tensor, examples: int, step: int, batch: int) -> None:
    """Adds one call's loss sum, computed at optimizer step `step` on batch `batch`."""
    self.calls += 1
    self.examples += examples
    self._loss_sums.append(loss_sum)
    self._positions.append((step, batch))

  def mean_loss(self) -> float:
    return float(tf.add_n(self._loss_sums).numpy()) / max(self.examples, 1)

  def first_non_finite(self) -> tuple[int, int, float] | None:
    """(step, batch, loss sum) of the first call whose loss is NaN or Inf, if any."""
    if not self._loss_sums:
      return None
    values = tf.stack(self._loss_sums).numpy()
    bad = np.flatnonzero(~np.isfinite(values))
    if not bad.size:
      return None
    step, batch = self._positions[bad[0]]
    return step, batch, float(values[bad[0]])

  def examples_per_second(self) -> float:
    return self.examples / max(time.time() - self.start_time, 1e-9)


def _epoch_input(input_fn: TrainInputFn, epoch: int, skip: int, batches: int,
                 context: tf.distribute.InputContext) -> tf.data.Dataset:
  """The rest of an epoch for one input pipeline, counted in its own batches.

  Each global batch takes `replicas / pipelines` per-replica batches from every input
  pipeline, so `skip` and `batches` (global batches) scale by that.
  """
  per_global = context.num_replicas_in_sync // context.num_input_pipelines
  return input_fn(epoch, skip * per_global, context).take(batches * per_global)


def train_and_evaluate(model: tf_keras.Model, optimizer: SparseOptimizer,
                       train_input_fn: TrainInputFn, eval_input_fn: EvalInputFn,
                       config: RunConfig, *,
                       strategy: tf.distribute.Strategy | None = None,
                       extra_results: Callable[[], Mapping[str, Any]] | None = None,
                       trainer: Trainer | None = None) -> dict[str, Any]:
  """Resumes, then alternates `steps_per_eval` training steps and a full evaluation.

  Returns the last evaluation's results (also in `results.json`), with `extra_results`.
  """
  trainer = trainer or Trainer(model, optimizer, config, strategy)
  trainer.restore_latest()
  metrics = None
  while trainer.progress < config.train_steps:
    next_eval = (trainer.progress // config.steps_per_eval + 1) * config.steps_per_eval
    trainer.train(train_input_fn, min(next_eval, config.train_steps))
    metrics = trainer.evaluate(eval_input_fn)
    trainer.write_results(metrics)
  if metrics is None:
    metrics = trainer.evaluate(eval_input_fn)
  return trainer.write_results(metrics, extra_results() if extra_results else None)


def evaluate_checkpoints(trainer: Trainer, eval_input_fn: EvalInputFn, *,
                         until_step: int, timeout_s: float | None = None
                         ) -> dict[str, Any] | None:
  """Evaluates each new checkpoint of the run directory until one reaches `until_step`.

  A checkpoint that cannot be read (deleted by `keep_checkpoint_max` since it was
  listed, or damaged) is skipped with a logged line; the training job goes on writing
  newer ones. Returns the last results, or None when no checkpoint came within
  `timeout_s`.
  """
  metrics = None
  for path in tf.train.checkpoints_iterator(str(trainer.save_path), timeout=timeout_s):
    try:
      verify_checkpoint(path)
    except ValueError as error:
      trainer.config.log(f"warning: skipping checkpoint {path}: {error}")
      continue
    trainer.restore(path, verified=True)
    metrics = trainer.write_results(trainer.evaluate(eval_input_fn), {"checkpoint": path})
    if trainer.progress >= until_step:
      break
  return metrics

