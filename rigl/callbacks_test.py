"""`SparsitySummaries` through `model.fit`: tags, and values recomputed from the masks."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import rigl
from rigl import flops

BATCH, BATCHES_PER_EPOCH = 4, 6
FREQUENCY = 2
LAYERS = ("conv", "hidden", "out")


def cnn(seed: int = 0) -> tf_keras.Model:
  tf_keras.utils.set_random_seed(seed)
  return tf_keras.Sequential([
      tf_keras.Input((6, 6, 1)),
      tf_keras.layers.Conv2D(4, 3, name="conv"),
      tf_keras.layers.Flatten(),
      tf_keras.layers.Dense(8, activation="relu", name="hidden"),
      tf_keras.layers.Dense(3, name="out"),
  ])


def data():
  rng = np.random.default_rng(0)
  images = rng.standard_normal((BATCH * BATCHES_PER_EPOCH, 6, 6, 1)).astype(np.float32)
  return images, rng.integers(0, 3, len(images))


def compile_rigl(model, method="rigl", seed=0):
  optimizer = rigl.sparsify(
      model, tf_keras.optimizers.SGD(0.1, momentum=0.9), method=method, sparsity=0.6,
      schedule=rigl.MaskUpdateSchedule(0, 100, FREQUENCY, 0.4), seed=seed)
  model.compile(optimizer=optimizer,
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return optimizer


def fit(model, epochs=2, callback_list=()):
  images, labels = data()
  model.fit(images, labels, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
            callbacks=list(callback_list))


def read_events(log_dir) -> list[tuple[int, dict[str, float]]]:
  """The (step, {tag: value}) of every write, in order."""
  writes = []
  for path in sorted(pathlib.Path(log_dir).glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "images":
          continue
        if not writes or value.tag == "global_sparsity":
          writes.append((event.step, {}))
        writes[-1][1][value.tag] = float(tf.make_ndarray(value.tensor))
  return writes


class Recorder(tf_keras.callbacks.Callback):
  """The masks and optimizer step after every batch."""

  def __init__(self, optimizer):
    super().__init__()
    self.optimizer = optimizer
    self.masks = [{n: m.numpy() > 0 for n, m in optimizer.masks.items()}]
    self.steps = [int(optimizer.iterations.numpy())]

  def on_train_batch_end(self, batch, logs=None):
    self.masks.append({n: m.numpy() > 0 for n, m in self.optimizer.masks.items()})
    self.steps.append(int(self.optimizer.iterations.numpy()))


def test_writes_every_tag(tmp_path):
  model = cnn()
  compile_rigl(model)
  fit(model, epochs=1, callback_list=[rigl.SparsitySummaries(
      tmp_path, update_freq=FREQUENCY, batch_size=BATCH, mask_images=True)])
  writes = read_events(tmp_path)
  assert len(writes) == BATCHES_PER_EPOCH // FREQUENCY
  expected = {"global_sparsity", "drop_fraction", "grown", "dropped", "mask_churn",
              "inference_flops", "training_flops_per_example", "training_flops"}
  for layer in LAYERS:
    expected |= {f"{kind}/{layer}" for kind in ("sparsity", "density", "grown", "dropped",
                                                 "mask_churn")}
  for _, scalars in writes:
    assert set(scalars) == expected
  images = {value.tag for path in tmp_path.glob("events.*")
            for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value
            if value.metadata.plugin_data.plugin_name == "images"}
  assert images == {f"mask/{layer}" for layer in LAYERS}


def test_values_equal_a_numpy_computation_from_recorded_masks(tmp_path):
  model = cnn()
  optimizer = compile_rigl(model)
  recorder = Recorder(optimizer)
  initial = recorder.masks[0]
  fit(model, epochs=2, callback_list=[
      recorder, rigl.SparsitySummaries(tmp_path, update_freq=3, batch_size=BATCH)])
  writes = read_events(tmp_path)
  assert len(writes) == 2 * BATCHES_PER_EPOCH // 3
  specs = flops.layer_specs(model)
  dense_flops = flops.count(specs, {}).flops
  training_flops = 0.0
  for batch in range(1, len(recorder.masks)):
    masks = {n: m.astype(np.float32) for n, m in recorder.masks[batch].items()}
    sparse_flops = flops.count(specs, flops.mask_sparsities(masks)).flops
    stepped = recorder.steps[batch] > recorder.steps[batch - 1]
    training_flops += (3 * sparse_flops if stepped else 2 * sparse_flops + dense_flops)
    if batch % 3:
      continue
    step, scalars = writes[batch // 3 - 1]
    now, before = recorder.masks[batch], recorder.masks[batch - 3]
    assert step == recorder.steps[batch]
    total_grown = total_new = total_active = 0
    for layer in LAYERS:
      grown = int(np.sum(now[layer] & ~before[layer]))
      dropped = int(np.sum(before[layer] & ~now[layer]))
      new = int(np.sum(now[layer] & ~initial[layer]))
      active = int(np.sum(now[layer]))
      assert scalars[f"grown/{layer}"] == grown
      assert scalars[f"dropped/{layer}"] == dropped
      assert scalars[f"mask_churn/{layer}"] == pytest.approx(new / active)
      assert scalars[f"density/{layer}"] == pytest.approx(np.mean(now[layer]))
      total_grown, total_new, total_active = (total_grown + grown, total_new + new,
                                              total_active + active)
    assert scalars["grown"] == scalars["dropped"] == total_grown
    assert scalars["mask_churn"] == pytest.approx(total_new / total_active)
    size = sum(mask.size for mask in now.values())
    assert scalars["global_sparsity"] == pytest.approx(1 - total_active / size)
    assert scalars["inference_flops"] == pytest.approx(sparse_flops)
    assert scalars["training_flops_per_example"] == pytest.approx(training_flops)
    assert scalars["training_flops"] == pytest.approx(BATCH * training_flops)
  # RigL really changed masks, and its update batches took no optimizer step.
  assert writes[-1][1]["mask_churn"] > 0
  assert recorder.steps[-1] < len(recorder.masks) - 1


def test_epoch_writes_and_unmasked_layers_count_as_dense(tmp_path):
  model = cnn()
  optimizer = rigl.sparsify(model, tf_keras.optimizers.SGD(0.1), method="set",
                            sparsity=0.5, distribution="random",
                            select=rigl.KernelSelector(name_pattern="^hidden$"),
                            schedule=rigl.MaskUpdateSchedule(0, 100, FREQUENCY, 0.4))
  model.compile(optimizer=optimizer, loss=tf_keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  fit(model, epochs=2, callback_list=[rigl.SparsitySummaries(tmp_path)])
  writes = read_events(tmp_path)
  assert [step for step, _ in writes] == [BATCHES_PER_EPOCH, 2 * BATCHES_PER_EPOCH]
  zeros = int(np.sum(optimizer.masks["hidden"].numpy() == 0))
  weights = sum(int(np.prod(w.shape)) for w in model.weights if "kernel" in w.name)
  assert writes[-1][1]["global_sparsity"] == pytest.approx(zeros / weights)
  assert "density/conv" not in writes[-1][1]


def test_churn_after_backup_and_restore_equals_an_uninterrupted_run(tmp_path):
  """Initial masks are recomputed, so a restarted run reports the same churn."""

  class Interrupt(tf_keras.callbacks.Callback):

    def on_epoch_begin(self, epoch, logs=None):
      if epoch == 1:
        raise RuntimeError("interrupted")

  model = cnn()
  compile_rigl(model)
  fit(model, callback_list=[rigl.SparsitySummaries(tmp_path / "reference")])
  backup = str(tmp_path / "backup")
  model = cnn()
  compile_rigl(model)
  with pytest.raises(RuntimeError, match="interrupted"):
    fit(model, callback_list=[rigl.SparsitySummaries(tmp_path / "first"),
                              tf_keras.callbacks.BackupAndRestore(backup), Interrupt()])
  model = cnn(seed=1)
  compile_rigl(model)
  fit(model, callback_list=[rigl.SparsitySummaries(tmp_path / "resumed"),
                            tf_keras.callbacks.BackupAndRestore(backup)])
  reference = read_events(tmp_path / "reference")[-1]
  resumed = read_events(tmp_path / "resumed")
  assert len(resumed) == 1 and resumed[0][0] == reference[0]
  for tag in ("mask_churn", "mask_churn/hidden", "global_sparsity"):
    assert resumed[0][1][tag] == reference[1][tag]


def test_subclassed_conv_model_gets_every_summary_but_flops(tmp_path):

  class Net(tf_keras.Model):

    def __init__(self):
      super().__init__()
      self.conv = tf_keras.layers.Conv2D(4, 3, name="conv")
      self.flatten = tf_keras.layers.Flatten()
      self.out = tf_keras.layers.Dense(3, name="out")

    def call(self, inputs):
      return self.out(self.flatten(self.conv(inputs)))

  model = Net()
  model(data()[0][:1])
  compile_rigl(model)
  fit(model, epochs=1, callback_list=[rigl.SparsitySummaries(tmp_path)])
  (_, scalars), = read_events(tmp_path)
  assert "mask_churn/conv" in scalars and "inference_flops" not in scalars


def test_needs_a_sparse_optimizer_and_a_valid_frequency(tmp_path):
  with pytest.raises(ValueError, match="update_freq"):
    rigl.SparsitySummaries(tmp_path, update_freq=0)
  model = cnn()
  model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
  with pytest.raises(TypeError, match="sparse optimizer"):
    fit(model, epochs=1, callback_list=[rigl.SparsitySummaries(tmp_path)])


def test_flops_rule_is_the_method_classes(tmp_path):
  class MyRigL(rigl.RigL):
    pass

  model = cnn()
  summaries = rigl.SparsitySummaries(tmp_path)
  summaries.set_model(model)
  model.compile(optimizer=MyRigL(tf_keras.optimizers.SGD(), model), loss="mse")
  summaries.on_train_begin()
  assert summaries._flops.rule == flops.DENSE_GRADIENT_ON_UPDATES
