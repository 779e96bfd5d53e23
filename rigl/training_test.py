"""The shared train/eval loop: metrics, checkpoints, resume, strategies and modes."""

import json
import os
import pathlib
import random

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import rigl
from rigl import strategies
from rigl import run_directory
from rigl import training

NUM_FEATURES, NUM_CLASSES = 6, 7
TRAIN_EXAMPLES, EVAL_EXAMPLES, BATCH = 48, 30, 8


def _data(count, seed):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal((count, NUM_FEATURES)).astype(np.float32),
          rng.integers(0, NUM_CLASSES, count))


TRAIN, EVAL = _data(TRAIN_EXAMPLES, 0), _data(EVAL_EXAMPLES, 1)


def train_input(epoch, skip, context):
  dataset = tf.data.Dataset.from_tensor_slices(TRAIN).shuffle(TRAIN_EXAMPLES, seed=epoch)
  dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
  return dataset.batch(context.get_per_replica_batch_size(BATCH),
                       drop_remainder=True).skip(skip)


def eval_input(context):
  return tf.data.Dataset.from_tensor_slices(EVAL).batch(
      context.get_per_replica_batch_size(BATCH))


def build(method="rigl", learning_rate=0.1, strategy=None, batch_norm=True):
  """A small MLP; batch norm (per-replica statistics) is left out to compare strategies."""
  with (strategy or tf.distribute.get_strategy()).scope():
    tf_keras.utils.set_random_seed(3)
    inputs = tf_keras.Input((NUM_FEATURES,))
    hidden = tf_keras.layers.Dense(16, name="hidden")(inputs)
    if batch_norm:
      hidden = tf_keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = tf_keras.layers.ReLU()(hidden)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(NUM_CLASSES, name="logits")(hidden))
    optimizer = rigl.create_sparse_optimizer(
        method, tf_keras.optimizers.SGD(learning_rate, momentum=0.9), model,
        rigl.SparsityConfig(0.7, "erdos_renyi"),
        schedule=rigl.MaskUpdateSchedule(0, 100, 2, 0.5), pruning_frequency=2,
        pruning_end_step=100)
  return model, optimizer


def config(tmp_path=None, **overrides):
  settings = dict(train_steps=12, global_batch_size=BATCH,
                  steps_per_epoch=TRAIN_EXAMPLES // BATCH,
                  save_path=str(tmp_path) if tmp_path else "", log=lambda line: None)
  settings.update(overrides)
  return training.RunConfig(**settings)


def numpy_cross_entropy(logits, labels, smoothing=0.0):
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  targets = np.eye(NUM_CLASSES)[labels] * (1 - smoothing) + smoothing / NUM_CLASSES
  return -(targets * log_probs).sum(axis=1)


def test_evaluation_metrics_match_numpy():
  model, optimizer = build()
  trainer = training.Trainer(model, optimizer,
                             config(l2_scale=1e-3, per_class_metrics=True))
  metrics = trainer.evaluate(eval_input)
  logits = model(EVAL[0], training=False).numpy()
  labels = EVAL[1]
  top_5 = np.argsort(-logits, axis=1)[:, :5]
  assert metrics["eval_examples"] == EVAL_EXAMPLES
  assert metrics["test_accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels))
  assert metrics["top_5_accuracy"] == pytest.approx(
      np.mean([label in row for label, row in zip(labels, top_5)]))
  assert metrics["test_loss"] == pytest.approx(
      numpy_cross_entropy(logits, labels).mean(), rel=1e-5)
  kernels = [model.get_layer(name).kernel.numpy() for name in ("hidden", "logits")]
  assert metrics["regularization_loss"] == pytest.approx(
      1e-3 * sum((k**2).sum() / 2 for k in kernels), rel=1e-5)
  recall = metrics["per_class"]["recall_at_1"]
  for label in range(NUM_CLASSES):
    chosen = labels == label
    expected = np.mean(logits[chosen].argmax(1) == label) if chosen.any() else np.nan
    np.testing.assert_allclose(recall[label], expected)


def test_training_loss_uses_label_smoothing():
  lines = []
  model, optimizer = build("static", learning_rate=0.0)
  trainer = training.Trainer(model, optimizer, config(
      train_steps=1, summary_steps=1, label_smoothing=0.1, log=lines.append))
  dataset = train_input(0, 0, tf.distribute.InputContext())
  images, labels = next(iter(dataset))
  expected = numpy_cross_entropy(model(images, training=True).numpy(), labels.numpy(), 0.1)
  trainer.train(train_input, 1)
  logged = float(lines[-1].split("train_loss ")[1].split()[0])
  assert logged == pytest.approx(expected.mean(), abs=1e-4)


def test_checkpoints_every_n_steps_and_resume_exactly(tmp_path):
  settings = dict(train_steps=10, steps_per_eval=10, steps_per_checkpoint=4,
                  keep_checkpoint_max=0)
  straight = training.train_and_evaluate(*build(), train_input, eval_input,
                                         config(tmp_path / "straight", **settings))
  assert [int(path.rsplit("-", 1)[1]) for path in tf.train.get_checkpoint_state(
      str(tmp_path / "straight")).all_model_checkpoint_paths] == [4, 8, 10]
  interrupted = config(tmp_path / "resumed", **dict(settings, train_steps=4))
  interrupted.identity = {"run": 1}
  training.train_and_evaluate(*build(), train_input, eval_input, interrupted)
  resumed = config(tmp_path / "resumed", **settings)
  resumed.identity = {"run": 1}
  resumed_results = training.train_and_evaluate(*build(), train_input, eval_input, resumed)
  for key in ("step", "batches", "test_loss", "per_layer_sparsity", "training_flops"):
    assert resumed_results[key] == straight[key], key
  on_disk = json.loads((tmp_path / "resumed" / training.RESULTS_FILE).read_text())
  assert on_disk["step"] == 10


def test_mirrored_strategy_matches_one_device():
  single_model, single = build(batch_norm=False)
  training.Trainer(single_model, single, config()).train(train_input, 9)
  strategy = strategies.create_strategy("mirrored")
  mirrored_model, mirrored = build(strategy=strategy, batch_norm=False)
  training.Trainer(mirrored_model, mirrored, config(), strategy).train(train_input, 9)
  assert int(mirrored.iterations.numpy()) == int(single.iterations.numpy()) == 9
  for name, mask in mirrored.masks.items():
    replicas = [component.numpy() for component in mask.values]
    np.testing.assert_array_equal(replicas[0], replicas[1])
    np.testing.assert_array_equal(replicas[0], single.masks[name].numpy())
    np.testing.assert_allclose(mirrored.kernels[name].values[0].numpy(),
                               single.kernels[name].numpy(), atol=1e-5)


# XLA's stateless random numbers differ from TF kernels' (each is deterministic), so
# methods whose masks depend on random draws match the plain step in counts only.
RANDOM_MASK_METHODS = ("set", "static")


@pytest.mark.parametrize("method", rigl.TRAINING_METHODS)
def test_xla_compiled_step_matches_the_plain_one(method):
  """The whole step, mask updates included, compiles (XLA must-compile) for every method."""
  plain_model, plain = build(method)
  training.Trainer(plain_model, plain, config()).train(train_input, 5)
  xla_model, xla = build(method)
  training.Trainer(xla_model, xla, config(jit_compile=True)).train(train_input, 5)
  assert int(xla.iterations.numpy()) == int(plain.iterations.numpy()) == 5
  if method not in ("baseline", "scratch", "static"):  # The masks changed on the way.
    assert any(np.any(mask.numpy() != initial)
               for mask, initial in zip(xla.masks.values(), xla.initial_masks().values()))
  for name, mask in xla.masks.items():
    kernel = xla.kernels[name].numpy()
    np.testing.assert_array_equal(kernel[mask.numpy() == 0], 0)
    if method in RANDOM_MASK_METHODS:
      assert mask.numpy().sum() == plain.masks[name].numpy().sum()
      continue
    np.testing.assert_array_equal(mask.numpy(), plain.masks[name].numpy())
    np.testing.assert_allclose(kernel, plain.kernels[name].numpy(), atol=1e-5)


@pytest.mark.parametrize("method", rigl.TRAINING_METHODS)
def test_host_planned_steps_equal_steps_that_decide_in_the_graph(method):
  """Calls chosen on the host (update or ordinary step) train bitwise as the schedule's
  conditional does: masks, kernels and step counters after every call."""
  planned_model, planned = build(method, batch_norm=False)
  planned_trainer = training.Trainer(planned_model, planned, config())
  graph_model, in_graph = build(method, batch_norm=False)
  graph_step = training.Trainer(graph_model, in_graph, config())._make_train_step(None)
  dataset = train_input(0, 0, tf.distribute.InputContext())
  updates = 0
  for images, labels in dataset.repeat().take(9):
    before = {name: mask.numpy() for name, mask in planned.masks.items()}
    planned_trainer._train_step(images, labels)
    graph_step(images, labels)
    assert int(planned.iterations.numpy()) == int(in_graph.iterations.numpy())
    for name, mask in planned.masks.items():
      np.testing.assert_array_equal(mask.numpy(), in_graph.masks[name].numpy())
      np.testing.assert_array_equal(planned.kernels[name].numpy(),
                                    in_graph.kernels[name].numpy())
    updates += any(np.any(mask.numpy() != before[name])
                   for name, mask in planned.masks.items())
  if method in ("set", "momentum", "rigl", "snip", "prune", "dnw"):
    assert updates, "no call changed the masks: the test exercised no update"


def _conditionals(step_function, *args) -> int:
  """How many If/StatelessIf ops the traced step has, nested functions included,
  besides the guards of the step's label assertions."""
  graph_def = step_function.get_concrete_function(*args).graph.as_graph_def()
  nodes = list(graph_def.node) + [node for function in graph_def.library.function
                                  for node in function.node_def]
  return sum(node.op in ("If", "StatelessIf") and "AssertGuard" not in node.name
             for node in nodes)


@pytest.mark.parametrize("method", ["rigl", "set", "prune"])
def test_ordinary_steps_carry_no_conditional(method):
  model, optimizer = build(method, batch_norm=False)
  trainer = training.Trainer(model, optimizer, config())
  images, labels = next(iter(train_input(0, 0, tf.distribute.InputContext())))
  assert _conditionals(trainer._make_train_step(None), images, labels) >= 1
  assert _conditionals(trainer._make_train_step(False), images, labels) == 0
  assert _conditionals(trainer._make_train_step(True), images, labels) == 0


def test_batch_statistics_evaluation_keeps_moving_statistics():
  model, optimizer = build()
  trainer = training.Trainer(model, optimizer, config(eval_batch_statistics=True))
  trainer.train(train_input, 3)
  before = [v.numpy() for v in model.get_layer("bn").non_trainable_variables]
  batch_stats = trainer.evaluate(eval_input)["test_loss"]
  after = [v.numpy() for v in model.get_layer("bn").non_trainable_variables]
  for old, new in zip(before, after):
    np.testing.assert_array_equal(old, new)
  trainer.config.eval_batch_statistics = False
  assert training.Trainer(model, optimizer, trainer.config).evaluate(
      eval_input)["test_loss"] != pytest.approx(batch_stats)


def test_evaluate_checkpoints_follows_a_finished_run(tmp_path):
  settings = dict(train_steps=8, steps_per_eval=4)
  trained = training.train_and_evaluate(*build(), train_input, eval_input,
                                        config(tmp_path, **settings))
  evaluator = training.Trainer(*build(), config(tmp_path, **settings))
  results = training.evaluate_checkpoints(evaluator, eval_input, until_step=8,
                                          timeout_s=1)
  assert results["step"] == 8 and results["checkpoint"].endswith("model.ckpt-8")
  assert results["test_loss"] == pytest.approx(trained["test_loss"])
  assert results["per_layer_sparsity"] == trained["per_layer_sparsity"]


def test_bad_settings_fail_clearly(tmp_path):
  with pytest.raises(ValueError, match="global_batch_size"):
    config(global_batch_size=0)
  (tmp_path / "file").write_text("")
  with pytest.raises(ValueError, match="is a file"):
    training.Trainer(*build(), config(tmp_path / "file"))


def test_float16_loss_scaling_trains_like_float32():
  plain_model, plain = build(batch_norm=False)
  training.Trainer(plain_model, plain, config()).train(train_input, 5)
  tf_keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    half_model, half = build(batch_norm=False)
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
  trainer = training.Trainer(half_model, half, config(loss_scaling=True))
  trainer.train(train_input, 5)
  assert half_model.get_layer("hidden").compute_dtype == "float16"
  assert int(half.iterations.numpy()) == 5
  for name, kernel in half.kernels.items():
    np.testing.assert_allclose(kernel.numpy(), plain.kernels[name].numpy(), atol=2e-2)
    assert np.all(kernel.numpy()[half.masks[name].numpy() == 0] == 0)


# ----- crash safety ---------------------------------------------------------------------

CRASH_SEED = 7
# Checkpoints every CRASH_CHECKPOINT_STEPS of CRASH_STEPS steps, all in one training
# stretch (one evaluation at the end), so a resumed run starts mid-stretch.
CRASH_STEPS, CRASH_CHECKPOINT_STEPS = 12, 3
STEPS_PER_EPOCH = TRAIN_EXAMPLES // BATCH
WALL_TIME_KEY = "counters/wall_time_s/.ATTRIBUTES/VARIABLE_VALUE"
HIDDEN_KERNEL_KEY = "model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"


def crash_config(run_dir, lines=None, **overrides):
  """One training stretch of CRASH_STEPS; log lines go to `lines`."""
  settings = dict(train_steps=CRASH_STEPS, steps_per_eval=CRASH_STEPS,
                  steps_per_checkpoint=CRASH_CHECKPOINT_STEPS, keep_checkpoint_max=0,
                  log=(lines if lines is not None else []).append)
  settings.update(overrides)
  return config(run_dir, **settings)


def crashing_input(crash_at_batch):
  """`train_input`, but the run dies (an error) drawing global batch `crash_at_batch`."""

  def input_fn(epoch, skip, context):
    batches = train_input(epoch, skip, context).enumerate(epoch * STEPS_PER_EPOCH + skip)

    def check(index, batch):
      with tf.control_dependencies([tf.debugging.assert_none_equal(
          index, tf.constant(crash_at_batch, tf.int64), message="simulated crash")]):
        return tf.identity(batch[0]), batch[1]

    return batches.map(check)

  return input_fn


def new_trainer(method, run_dir, **overrides):
  """A new process's worth of objects, resumed from the run directory."""
  trainer = training.Trainer(*build(method), crash_config(run_dir, **overrides))
  trainer.restore_latest()
  return trainer


def checkpoint_values(prefix):
  reader = tf.train.load_checkpoint(str(prefix))
  return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}


def latest_values(run_dir):
  return checkpoint_values(tf.train.latest_checkpoint(str(run_dir)))


def assert_bitwise_equal(expected, actual, context=""):
  assert sorted(actual) == sorted(expected), context
  different = [key for key in expected if key != WALL_TIME_KEY and
               np.asarray(expected[key]).tobytes() != np.asarray(actual[key]).tobytes()]
  assert not different, f"{context}: {different}"


def listed_checkpoints(run_dir):
  state = tf.train.get_checkpoint_state(str(run_dir))
  return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths]


@pytest.mark.parametrize("method", ["rigl", "set", "momentum", "snip", "prune"])
def test_a_crash_between_checkpoints_resumes_bitwise(tmp_path, method):
  """Crashed at a random batch, resumed from the last checkpoint: the same end state."""
  new_trainer(method, tmp_path / "straight").train(train_input, CRASH_STEPS)
  crash_at = random.Random(f"{CRASH_SEED}/{method}").randint(
      2 * CRASH_CHECKPOINT_STEPS, CRASH_STEPS - 1)
  context = f"{method}, crashed drawing batch {crash_at} (seed {CRASH_SEED})"
  with pytest.raises(tf.errors.InvalidArgumentError, match="simulated crash"):
    new_trainer(method, tmp_path / "resumed").train(crashing_input(crash_at),
                                                    CRASH_STEPS)
  at_crash = listed_checkpoints(tmp_path / "resumed")
  assert at_crash and at_crash[-1] < CRASH_STEPS, context
  lines = []
  resumed = new_trainer(method, tmp_path / "resumed", lines=lines)
  assert lines[0].startswith("Resumed from") and resumed.step == at_crash[-1], context
  resumed.train(train_input, CRASH_STEPS)
  assert listed_checkpoints(tmp_path / "resumed") == listed_checkpoints(
      tmp_path / "straight") == [3, 6, 9, 12], context
  # Counters too: the FLOPs sampled over a stretch that the crash cut short.
  assert_bitwise_equal(latest_values(tmp_path / "straight"),
                       latest_values(tmp_path / "resumed"), context)


@pytest.fixture(scope="module")
def rigl_run(tmp_path_factory):
  """An uninterrupted RigL run's directory, with checkpoints at 3, 6, 9 and 12."""
  run_dir = tmp_path_factory.mktemp("rigl_run")
  new_trainer("rigl", run_dir).train(train_input, CRASH_STEPS)
  return run_dir


def copy_run(source, target, numbers, listed=None):
  """Copies checkpoints `numbers` of a run; the state file lists `listed` (all)."""
  target.mkdir()
  (target / run_directory.RUN_CONFIG_FILE).write_bytes(
      (source / run_directory.RUN_CONFIG_FILE).read_bytes())
  for number in numbers:
    for path in source.glob(f"model.ckpt-{number}.*"):
      (target / path.name).write_bytes(path.read_bytes())
  prefixes = [str(target / f"model.ckpt-{n}") for n in (numbers if listed is None
                                                           else listed)]
  tf.compat.v1.train.update_checkpoint_state(str(target), prefixes[-1],
                                             all_model_checkpoint_paths=prefixes)
  return target


def data_file(prefix):
  return pathlib.Path(f"{prefix}.data-00000-of-00001")


def truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def flip_last_byte(path):
  content = bytearray(path.read_bytes())
  content[-1] ^= 0xFF
  path.write_bytes(bytes(content))


DAMAGES = {
    "truncated data": lambda prefix: truncate(data_file(prefix)),
    "missing data": lambda prefix: data_file(prefix).unlink(),
    "corrupt data": lambda prefix: flip_last_byte(data_file(prefix)),
    "truncated index": lambda prefix: truncate(pathlib.Path(f"{prefix}.index")),
    "missing index": lambda prefix: pathlib.Path(f"{prefix}.index").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_resume_falls_back_from_a_damaged_latest_checkpoint(rigl_run, tmp_path, damage):
  run_dir = copy_run(rigl_run, tmp_path / "run", [3, 6])
  DAMAGES[damage](run_dir / "model.ckpt-6")
  lines = []
  trainer = new_trainer("rigl", run_dir, lines=lines)
  assert trainer.step == 3
  assert lines[0].startswith(f"warning: skipping checkpoint {run_dir / 'model.ckpt-6'}")
  assert lines[1].startswith(f"Resumed from {run_dir / 'model.ckpt-3'}")
  np.testing.assert_array_equal(
      trainer.model.get_layer("hidden").kernel.numpy(),
      checkpoint_values(rigl_run / "model.ckpt-3")[HIDDEN_KERNEL_KEY])


def test_resume_falls_back_and_ends_as_an_uninterrupted_run(rigl_run, tmp_path):
  run_dir = copy_run(rigl_run, tmp_path / "run", [3, 6])
  truncate(data_file(run_dir / "model.ckpt-6"))
  new_trainer("rigl", run_dir).train(train_input, CRASH_STEPS)
  assert_bitwise_equal(checkpoint_values(rigl_run / "model.ckpt-12"),
                       latest_values(run_dir))


def test_resume_takes_a_complete_checkpoint_written_before_it_was_listed(rigl_run,
                                                                          tmp_path):
  """A process killed between writing a checkpoint and listing it."""
  run_dir = copy_run(rigl_run, tmp_path / "run", [3, 6, 9], listed=[3, 6])
  assert new_trainer("rigl", run_dir).step == 9


def test_resume_ignores_an_unfinished_save(rigl_run, tmp_path):
  """A process killed while writing a checkpoint that was never listed."""
  run_dir = copy_run(rigl_run, tmp_path / "run", [3, 6, 9], listed=[3, 6])
  truncate(pathlib.Path(f"{run_dir / 'model.ckpt-9'}.index"))
  assert new_trainer("rigl", run_dir).step == 6


def test_resume_refuses_when_no_listed_checkpoint_can_be_read(rigl_run, tmp_path):
  run_dir = copy_run(rigl_run, tmp_path / "run", [3])
  truncate(data_file(run_dir / "model.ckpt-3"))
  with pytest.raises(ValueError, match="No checkpoint .* can be read"):
    new_trainer("rigl", run_dir)


@pytest.mark.parametrize("damage,named", [
    ("truncated data", ".data-00000-of-00001"), ("missing data", ".data-00000-of-00001"),
    ("corrupt data", ".data-00000-of-00001"), ("truncated index", ".index"),
    ("missing index", ".index")])
def test_restoring_a_damaged_checkpoint_names_the_file(rigl_run, tmp_path, damage, named):
  run_dir = copy_run(rigl_run, tmp_path / "run", [6])
  prefix = str(run_dir / "model.ckpt-6")
  DAMAGES[damage](prefix)
  trainer = training.Trainer(*build(), crash_config(""))
  before = [v.numpy() for v in trainer.model.variables]
  with pytest.raises(ValueError) as error:
    trainer.restore(prefix)
  assert prefix + named in str(error.value)
  assert "\n" not in str(error.value)  # One line, for the scripts' `error:` line.
  for old, variable in zip(before, trainer.model.variables):  # Nothing was restored.
    np.testing.assert_array_equal(old, variable.numpy())


def test_evaluate_checkpoints_skips_a_damaged_checkpoint(rigl_run, tmp_path):
  run_dir = copy_run(rigl_run, tmp_path / "run", [12])
  truncate(data_file(run_dir / "model.ckpt-12"))
  lines = []
  evaluator = training.Trainer(*build(), crash_config(run_dir, lines=lines))
  assert training.evaluate_checkpoints(evaluator, eval_input, until_step=CRASH_STEPS,
                                       timeout_s=0) is None
  assert lines[0].startswith(f"warning: skipping checkpoint {run_dir / 'model.ckpt-12'}")


def poisoned_input(poisoned_batch):
  """`train_input` with NaN features in the global batch `poisoned_batch` (0-based)."""

  def input_fn(epoch, skip, context):
    batches = train_input(epoch, skip, context).enumerate(epoch * STEPS_PER_EPOCH + skip)
    return batches.map(lambda index, batch: (
        tf.where(index == poisoned_batch, np.nan, batch[0]), batch[1]))

  return input_fn


@pytest.mark.parametrize("summary_steps", [0, 1])
def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                      summary_steps):
  poisoned = 4  # The fifth batch, at step 4 (static masks: a step per batch).
  trainer = training.Trainer(*build("static"), crash_config(
      tmp_path, summary_steps=summary_steps))
  with pytest.raises(training.TrainingDivergedError,
                     match=f"loss of batch {poisoned + 1} \\(step {poisoned}\\) is nan.*"
                     "model.ckpt-3"):
    trainer.train(poisoned_input(poisoned), CRASH_STEPS)
  assert listed_checkpoints(tmp_path) == [3]
  assert sorted(path.name for path in tmp_path.glob("model.ckpt-*.index")) == [
      "model.ckpt-3.index"]
  for key, value in checkpoint_values(tmp_path / "model.ckpt-3").items():
    if np.asarray(value).dtype.kind == "f":
      assert np.isfinite(value).all(), key


def test_overflowing_weights_are_never_saved(tmp_path):
  """The first loss is finite; the update it drives makes every weight NaN or Inf."""
  trainer = training.Trainer(*build("static", learning_rate=np.inf),
                             crash_config(tmp_path, steps_per_checkpoint=1))
  with pytest.raises(training.TrainingDivergedError, match="after step 1,.*NaN or Inf"):
    trainer.train(train_input, CRASH_STEPS)
  assert tf.train.latest_checkpoint(str(tmp_path)) is None
  assert not list(tmp_path.glob("model.ckpt-*"))
