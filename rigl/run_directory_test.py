"""The run directory: finding checkpoints, masks, the run's identity and its model."""

from __future__ import annotations

import json
import pathlib

import pytest
import tensorflow as tf

from rigl import models
from rigl import run_directory

STEPS = (3, 7)


def write_checkpoints(directory: pathlib.Path, steps=STEPS, listed=True) -> None:
  """`model.ckpt-<step>` for each step; the state file lists them unless `listed`."""
  checkpoint = tf.train.Checkpoint(value=tf.Variable(1.0))
  prefixes = [checkpoint.write(str(directory / f"{run_directory.CHECKPOINT_NAME}-{step}"))
              for step in steps]
  if listed:
    tf.compat.v1.train.update_checkpoint_state(str(directory), prefixes[-1],
                                               all_model_checkpoint_paths=prefixes)


def prefix(directory: pathlib.Path, step: int) -> str:
  return str(directory / f"{run_directory.CHECKPOINT_NAME}-{step}")


# ----- checkpoints --------------------------------------------------------------------


@pytest.mark.parametrize("name, number", [("model.ckpt-12", 12), ("model.ckpt", None),
                                          ("model.ckpt-12.index", None),
                                          ("other.ckpt-12", None)])
def test_checkpoint_number(name, number):
  assert run_directory.checkpoint_number(f"/runs/a/{name}") == number


def test_candidates_list_the_state_file_and_the_index_files(tmp_path):
  write_checkpoints(tmp_path, steps=(3,))
  write_checkpoints(tmp_path, steps=(7,), listed=False)  # Written, never listed.
  listed, on_disk = run_directory.checkpoint_candidates(str(tmp_path))
  assert listed == {3: prefix(tmp_path, 3)}
  assert on_disk == {3: prefix(tmp_path, 3), 7: prefix(tmp_path, 7)}


def test_resolve_a_directory_to_its_latest_listed_checkpoint(tmp_path):
  write_checkpoints(tmp_path, steps=(7, 3))  # Lists 3 as the latest.
  assert run_directory.resolve_checkpoint(str(tmp_path), "flag") == prefix(tmp_path, 3)


def test_resolve_a_directory_without_state_file_to_the_highest_step(tmp_path):
  write_checkpoints(tmp_path, listed=False)
  assert run_directory.resolve_checkpoint(str(tmp_path), "flag") == prefix(tmp_path, 7)
  assert run_directory.latest_checkpoint(str(tmp_path)) == prefix(tmp_path, 7)


def test_resolve_a_prefix_or_a_v1_file_to_itself(tmp_path):
  write_checkpoints(tmp_path)
  assert run_directory.resolve_checkpoint(prefix(tmp_path, 3), "flag") == prefix(
      tmp_path, 3)
  v1_checkpoint = tmp_path / "model.ckpt-100"  # TF1's V1 format: one file, no index.
  v1_checkpoint.write_bytes(b"")
  assert run_directory.resolve_checkpoint(str(v1_checkpoint), "flag") == str(
      v1_checkpoint)


def test_resolve_errors_name_the_flag(tmp_path):
  with pytest.raises(ValueError, match=r"^--load_mask_dir=.*holds no checkpoint"):
    run_directory.resolve_checkpoint(str(tmp_path), "load_mask_dir")
  missing = tmp_path / "model.ckpt-5"
  with pytest.raises(ValueError, match=r"^--checkpoint=.*no .*model.ckpt-5.index"):
    run_directory.resolve_checkpoint(str(missing), "checkpoint")


def test_latest_checkpoint_of_an_empty_or_missing_directory(tmp_path):
  assert run_directory.latest_checkpoint(str(tmp_path)) is None
  assert run_directory.latest_checkpoint(str(tmp_path / "missing")) is None


class FakeReader:
  """A checkpoint reader holding only variable names."""

  def __init__(self, keys):
    self.keys = keys

  def get_variable_to_shape_map(self):
    return {key: [1] for key in self.keys}


def test_mask_keys_find_the_masks_not_their_neighbours():
  mask = "optimizer/_masks/{}/.ATTRIBUTES/VARIABLE_VALUE"
  reader = FakeReader([
      mask.format("layer1"), "loss_scale/" + mask.format("conv"),
      "optimizer/_masks/layer1/.OPTIMIZER_SLOT/optimizer/momentum/.ATTRIBUTES/"
      "VARIABLE_VALUE",
      "model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE",
      "optimizer/_masks/layer2/.ATTRIBUTES/OTHER"])
  assert run_directory.mask_keys(reader) == {
      "layer1": mask.format("layer1"), "conv": "loss_scale/" + mask.format("conv")}


# ----- run identity -------------------------------------------------------------------

SETTINGS = {"training_method": "rigl", "momentum": 0.9, "seed": 0}
IDENTITY = run_directory.RunIdentity(SETTINGS, defaults={"momentum": 0.9, "seed": 0},
                                     model=models.describe("mnist_fc"))


def recorded(directory: pathlib.Path) -> dict:
  return json.loads((directory / run_directory.RUN_CONFIG_FILE).read_text())


def test_a_new_directory_records_the_identity_and_the_model(tmp_path):
  run_directory.check_run_directory(str(tmp_path / "run"), IDENTITY)
  assert recorded(tmp_path / "run") == dict(SETTINGS, **{
      run_directory.MODEL_KEY: models.describe("mnist_fc")})
  run_directory.check_run_directory(str(tmp_path / "run"), IDENTITY)  # The same run.


def test_a_different_setting_is_refused_in_one_line_naming_it(tmp_path):
  run_directory.check_run_directory(str(tmp_path), IDENTITY)
  changed = run_directory.RunIdentity(dict(SETTINGS, momentum=0.5, training_method="set"),
                                      IDENTITY.defaults)
  with pytest.raises(ValueError) as error:
    run_directory.check_run_directory(str(tmp_path), changed)
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith("--momentum: 0.9 in the run directory, 0.5 now; "
                            "--training_method: 'rigl' in the run directory, 'set' now "
                            f"({tmp_path} holds a different run")


def test_the_model_description_is_recorded_not_compared(tmp_path):
  run_directory.check_run_directory(str(tmp_path), IDENTITY)
  run_directory.check_run_directory(
      str(tmp_path), run_directory.RunIdentity(SETTINGS, model={"anything": 1}))
  run_directory.check_run_directory(str(tmp_path), SETTINGS)


def test_an_older_record_without_a_setting_accepts_its_default(tmp_path):
  (tmp_path / run_directory.RUN_CONFIG_FILE).write_text(
      json.dumps({"training_method": "rigl", "seed": 0}))
  run_directory.check_run_directory(str(tmp_path), IDENTITY)
  changed = run_directory.RunIdentity(dict(SETTINGS, momentum=0.5), IDENTITY.defaults)
  with pytest.raises(ValueError, match=r"^--momentum: not recorded in the run directory "
                     r"\(an older run: the default 0.9\), 0.5 now \("):
    run_directory.check_run_directory(str(tmp_path), changed)
  assert recorded(tmp_path) == {"training_method": "rigl", "seed": 0}  # Left as it was.


def test_settings_without_defaults_and_recorded_only_settings_are_refused(tmp_path):
  run_directory.check_run_directory(str(tmp_path), {"a": 1, "b": 2})
  with pytest.raises(ValueError,
                     match=r"^--b: 2 in the run directory, not a setting now"):
    run_directory.check_run_directory(str(tmp_path), {"a": 1})
  with pytest.raises(ValueError, match=r"^--c: not recorded in the run directory, 3 now"):
    run_directory.check_run_directory(str(tmp_path), {"a": 1, "b": 2, "c": 3})


def test_a_setting_named_as_the_model_key_is_rejected():
  with pytest.raises(ValueError, match=run_directory.MODEL_KEY):
    run_directory.RunIdentity({run_directory.MODEL_KEY: 1})


def test_a_run_directory_that_is_a_file_is_refused(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(ValueError, match="is a file"):
    run_directory.check_run_directory(str(tmp_path / "file"), SETTINGS)


def test_read_run_config(tmp_path):
  assert run_directory.read_run_config(str(tmp_path)) is None
  path = tmp_path / run_directory.RUN_CONFIG_FILE
  path.write_text("{network_type: fc")
  with pytest.raises(ValueError, match="run_config.json is not JSON"):
    run_directory.read_run_config(str(tmp_path))
  path.write_text("[1, 2]")
  with pytest.raises(ValueError, match="run_config.json is not a JSON object"):
    run_directory.read_run_config(str(tmp_path))


# ----- the run's model ----------------------------------------------------------------


def test_build_model_from_a_recorded_description():
  description = models.describe("resnet", depth=18, width=0.25, num_classes=3,
                                input_shape=(32, 32, 3))
  settings = json.loads(json.dumps({run_directory.MODEL_KEY: description, "seed": 0}))
  model = run_directory.build_model_from_run_config(settings)
  expected = models.resnet(18, 0.25, 3, (32, 32, 3))
  assert [(w.name, w.shape) for w in model.weights] == [
      (w.name, w.shape) for w in expected.weights]


@pytest.mark.parametrize("settings, name, output_shape", [
    ({"model_architecture": "resnet", "resnet_depth": 18, "width": -1.0,
      "expansion_factor": 6.0, "num_label_classes": 3, "image_size": 32},
     "resnet18", (None, 3)),
    ({"model_architecture": "mobilenet_v2", "resnet_depth": 50, "width": 0.5,
      "expansion_factor": 3.0, "num_label_classes": 3, "image_size": 32},
     "mobilenet_v2", (None, 3)),
    ({"resnet_depth": 10, "resnet_width": 1, "num_classes": 100}, "wrn_10_1",
     (None, 100)),
    ({"network_type": "lenet5"}, "lenet5", (None, 10)),
    ({"network_type": "fc"}, "mnist_fc", (None, 10)),
])
def test_build_model_from_each_scripts_legacy_run_config(settings, name, output_shape):
  model = run_directory.build_model_from_run_config(settings)
  assert model.name.startswith(name) and model.output_shape == output_shape


def test_legacy_descriptions_are_what_the_scripts_built():
  assert run_directory.legacy_model_description(
      {"model_architecture": "mobilenet_v1", "width": -1.0, "num_label_classes": 5,
       "image_size": 64, "resnet_depth": 50, "expansion_factor": 6.0}
  ) == models.describe("mobilenet_v1", width=1.0, num_classes=5, input_shape=(64, 64, 3))
  assert run_directory.legacy_model_description(
      {"resnet_depth": 22, "resnet_width": 2, "num_classes": 10}
  ) == models.describe("wide_resnet", depth=22, width=2, num_classes=10)


@pytest.mark.parametrize("settings, message", [
    ({"model_architecture": "mobilenet_v1", "width": 1.0, "image_size": 32},
     "run_config.json has no `num_label_classes`"),
    ({"model_architecture": "vgg"}, "unknown `model_architecture`"),
    ({"network_type": "rnn"}, "unknown `network_type`"),
    ({"seed": 0}, "names no model"),
    ({run_directory.MODEL_KEY: "resnet"}, "`model` is not a model description"),
    ({run_directory.MODEL_KEY: {"architecture": "vgg"}},
     "run_config.json: Unknown model `architecture` 'vgg'"),
    ({run_directory.MODEL_KEY: {"architecture": "lenet5", "depth": 5}},
     "run_config.json: The model `lenet5` takes no depth"),
])
def test_build_model_errors(settings, message):
  with pytest.raises(ValueError, match=message):
    run_directory.build_model_from_run_config(settings)
