"""Each private tf_keras API of `keras_compat` against the installed tf_keras, and no
other module of the library reaching into tf_keras internals itself."""

import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from rigl import keras_compat

RIGL_DIR = pathlib.Path(__file__).resolve().parent
# Private tf_keras names that only keras_compat may use.
PRIVATE_APIS = ("tf_keras.src", "_create_all_weights", "_var_key", "_index_dict",
                "_flatten_layers", "_train_counter", "_no_dependency",
                "_create_iteration_variable", "_random_generator",
                "_distributed_container", "CallableList")
BATCHES = 3


def _private_api_pattern() -> re.Pattern:
  names = "|".join(re.escape(name) for name in PRIVATE_APIS)
  return re.compile(rf"\b(?:{names})\b")


def test_only_keras_compat_uses_private_tf_keras_apis():
  pattern = _private_api_pattern()
  offenders = []
  for path in sorted(RIGL_DIR.rglob("*.py")):
    if path.name.endswith("_test.py") or path.name == "keras_compat.py":
      continue
    for number, line in enumerate(path.read_text().splitlines(), 1):
      if pattern.search(line):
        offenders.append(f"{path.relative_to(RIGL_DIR)}:{number}: {line.strip()}")
  assert not offenders, "use rigl.keras_compat instead:\n" + "\n".join(offenders)


def test_filter_empty_gradients_drops_missing_gradients():
  used, unused = tf.Variable(1.0), tf.Variable(2.0)
  pairs = keras_compat.filter_empty_gradients([(tf.constant(3.0), used), (None, unused)])
  assert [variable for _, variable in pairs] == [used]


def test_all_reduce_sum_gradients_sums_over_replicas():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    variable = tf.Variable(0.0)

  def replica_fn():
    return keras_compat.all_reduce_sum_gradients([(tf.constant(1.0), variable)])[0][0]

  summed = strategy.experimental_local_results(strategy.run(replica_fn))
  assert [float(value) for value in summed] == [2.0, 2.0]


def test_callable_list_is_a_list_that_returns_itself():
  items = keras_compat.callable_list([1, 2])
  assert isinstance(items, list) and items() is items and items == [1, 2]


def test_create_legacy_optimizer_weights_creates_slots_once():
  variable = tf.Variable(tf.ones([2]))
  optimizer = tf_keras.optimizers.legacy.SGD(momentum=0.9)
  keras_compat.create_legacy_optimizer_weights(optimizer, [variable])
  slot = optimizer.get_slot(variable, "momentum")
  keras_compat.create_legacy_optimizer_weights(optimizer, [variable])
  assert optimizer.get_slot(variable, "momentum") is slot


def test_variable_key_maps_replica_components_to_their_container():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    mirrored, other = tf.Variable(1.0), tf.Variable(2.0)
  optimizer = tf_keras.optimizers.SGD()
  key = keras_compat.variable_key(optimizer, mirrored)
  assert keras_compat.variable_key(optimizer, mirrored.values[1]) == key
  assert keras_compat.variable_key(optimizer, other) != key


def test_per_variable_state_finds_adams_moments():
  first, second = tf.Variable(tf.ones([2])), tf.Variable(tf.ones([3, 4]))
  optimizer = tf_keras.optimizers.Adam()
  assert keras_compat.per_variable_state(optimizer, second) == []
  optimizer.build([first, second])
  state = keras_compat.per_variable_state(optimizer, second)
  assert len(state) == 2 and all(v.shape == second.shape for v in state)
  assert not any(v is second for v in state)


def test_untracked_values_are_not_checkpointed(tmp_path):
  optimizer = tf_keras.optimizers.SGD()
  optimizer.tracked_values = [tf.Variable(1.0)]
  optimizer.hidden_values = keras_compat.untracked(optimizer, [tf.Variable(2.0)])
  path = tf.train.Checkpoint(optimizer=optimizer).write(str(tmp_path / "ckpt"))
  names = [name for name, _ in tf.train.list_variables(path)]
  assert any("tracked_values" in name for name in names)
  assert not any("hidden_values" in name for name in names)


class _Forwarding(keras_compat.ForwardingIterationsOptimizer):

  def __init__(self, inner):
    super().__init__(name="forwarding")
    self.inner = inner

  @property
  def iterations(self):
    return self.inner.iterations

  @iterations.setter
  def iterations(self, variable):
    self.inner.iterations = variable


def test_forwarding_iterations_optimizer_creates_no_counter(tmp_path):
  inner = tf_keras.optimizers.SGD()
  optimizer = _Forwarding(inner)
  assert optimizer.iterations is inner.iterations
  path = tf.train.Checkpoint(optimizer=optimizer).write(str(tmp_path / "ckpt"))
  counters = [name for name, _ in tf.train.list_variables(path) if "iter" in name]
  assert len(counters) == 1 and counters[0].startswith("optimizer/inner/")


def test_all_layers_includes_nested_models_but_not_the_model():
  inner = tf_keras.Sequential([tf_keras.layers.Dense(2, name="inner_dense")], name="inner")
  model = tf_keras.Sequential([tf_keras.Input([3]), inner,
                               tf_keras.layers.Dense(1, name="outer_dense")])
  names = [layer.name for layer in keras_compat.all_layers(model)]
  assert {"inner", "inner_dense", "outer_dense"} <= set(names)
  assert model.name not in names
  assert "inner_dense" not in [layer.name for layer in model.layers]


def test_train_counter_counts_the_batches_of_fit():
  model = tf_keras.Sequential([tf_keras.Input([1]), tf_keras.layers.Dense(1)])
  model.compile(optimizer="sgd", loss="mse")
  data = np.zeros([BATCHES, 1], np.float32)
  model.fit(data, data, batch_size=1, epochs=1, verbose=0)
  assert int(keras_compat.train_counter(model).numpy()) == BATCHES


@pytest.fixture
def tf_random_generator():
  """Keras random layers draw from tf.random.Generators within this fixture."""
  was_enabled = tf_keras.backend.experimental.is_tf_random_generator_enabled()
  tf_keras.backend.experimental.enable_tf_random_generator()
  yield
  if not was_enabled:
    tf_keras.backend.experimental.disable_tf_random_generator()


def test_layer_random_generator_of_dropout(tf_random_generator):
  del tf_random_generator
  dropout = tf_keras.layers.Dropout(0.5, seed=1)
  dropout(tf.ones([2, 2]), training=True)
  assert isinstance(keras_compat.layer_random_generator(dropout), tf.random.Generator)
  assert keras_compat.layer_random_generator(tf_keras.layers.Dense(1)) is None
