"""Starting from another run's masks or weights, from our own (TF2) checkpoints."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import rigl
from rigl import warm_start


def _model_and_optimizer(seed):
  tf_keras.utils.set_random_seed(seed)
  model = tf_keras.Sequential([tf_keras.Input((5,)), tf_keras.layers.Dense(8, name="a"),
                               tf_keras.layers.Dense(3, name="b")])
  optimizer = rigl.create_sparse_optimizer(
      "rigl", tf_keras.optimizers.SGD(0.1), model, rigl.SparsityConfig(0.6, "random"),
      seed=seed)
  return model, optimizer


def _save(tmp_path, seed):
  model, optimizer = _model_and_optimizer(seed)
  directory = tmp_path / f"run{seed}"
  tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=optimizer),
                             str(directory), 1).save()
  return model, optimizer, directory


def test_load_masks_from_a_run_directory(tmp_path):
  _, source, directory = _save(tmp_path, seed=1)
  model, optimizer = _model_and_optimizer(seed=2)
  warm_start.load_masks(str(directory), model, optimizer)
  for name, mask in optimizer.masks.items():
    np.testing.assert_array_equal(mask.numpy(), source.masks[name].numpy())
    assert np.all(optimizer.kernels[name].numpy()[mask.numpy() == 0] == 0)


def test_load_initial_values_keeps_own_masks(tmp_path):
  source_model, _, directory = _save(tmp_path, seed=1)
  model, optimizer = _model_and_optimizer(seed=2)
  warm_start.load_initial_values(str(directory), model, optimizer)
  for name, mask in optimizer.masks.items():
    expected = source_model.get_layer(name).kernel.numpy() * mask.numpy()
    np.testing.assert_array_equal(optimizer.kernels[name].numpy(), expected)
  np.testing.assert_array_equal(model.get_layer("b").bias.numpy(),
                                source_model.get_layer("b").bias.numpy())


def test_missing_checkpoint_names_the_flag(tmp_path):
  model, optimizer = _model_and_optimizer(seed=1)
  with pytest.raises(ValueError, match="--load_mask_dir"):
    warm_start.load_masks(str(tmp_path), model, optimizer)
  with pytest.raises(ValueError, match="--initial_value_checkpoint"):
    warm_start.load_initial_values(str(tmp_path / "nothing"), model, optimizer)


def test_start_new_run_acts_only_before_the_first_checkpoint(tmp_path):
  _, source, mask_dir = _save(tmp_path, seed=1)
  model, optimizer = _model_and_optimizer(seed=2)
  own = {name: mask.numpy() for name, mask in optimizer.masks.items()}
  _, _, run_dir = _save(tmp_path, seed=3)  # A run that has already started.
  warm_start.start_new_run(str(run_dir), model, optimizer, load_mask_dir=str(mask_dir))
  for name, mask in optimizer.masks.items():
    np.testing.assert_array_equal(mask.numpy(), own[name])
  warm_start.start_new_run(str(tmp_path / "new"), model, optimizer,
                           load_mask_dir=str(mask_dir), uses_mask_dir=False)
  for name, mask in optimizer.masks.items():
    np.testing.assert_array_equal(mask.numpy(), own[name])
  warm_start.start_new_run(str(tmp_path / "new"), model, optimizer,
                           load_mask_dir=str(mask_dir))
  for name, mask in optimizer.masks.items():
    np.testing.assert_array_equal(mask.numpy(), source.masks[name].numpy())
