"""Every flagfile under configs/ parses against its script's flags and keeps the promises
of its name; every row of the papers' tables has a flagfile."""

from __future__ import annotations

import pathlib
import re

import pytest

from cifar10 import cifar10_train_eval
from imagenet_resnet import imagenet_train_eval
from mnist import mnist_train_eval
from rigl import script_flags

CONFIGS = pathlib.Path(__file__).resolve().parent
REPO = CONFIGS.parent
SCRIPTS = {"cifar10": cifar10_train_eval, "imagenet": imagenet_train_eval,
           "mnist": mnist_train_eval}
# <model>_<method>[_<distribution>][_s<sparsity %>][_<k>x][_nols], or <model>_common.
NAME = re.compile(r"(?P<model>wrn22_2|resnet50|mobilenet_v1|fc)_(?P<method>[a-z]+)"
                  r"(?:_(?P<distribution>erk|uniform))?(?:_s(?P<sparsity>\d+))?"
                  r"(?:_(?P<multiplier>\d+)x)?(?P<no_label_smoothing>_nols)?")
# Config name component -> --training_method.
METHODS = {"dense": "baseline", "static": "scratch", "set": "set", "snfs": "momentum",
           "rigl": "rigl", "snip": "snip", "prune": "prune"}
DISTRIBUTIONS = {"erk": "erdos_renyi_kernel", "uniform": "random"}
# ResNet-50: ERK masks the first layer, uniform keeps it dense (as the released runs).
RESNET_FIRST_LAYER_SPARSITY = {"erk": -1.0, "uniform": 0.0}
MODELS = {"wrn22_2": {"resnet_depth": 22, "resnet_width": 2},
          "resnet50": {"model_architecture": "resnet", "resnet_depth": 50},
          "mobilenet_v1": {"model_architecture": "mobilenet_v1"},
          "fc": {"network_type": "fc"}}
# The paper's setting of each directory, which every flagfile there inherits.
SETTINGS = {
    "cifar10": {"drop_fraction_anneal": "cosine", "mode": "train_and_eval"},
    "imagenet": {"drop_fraction_anneal": "cosine", "mode": "train_and_eval",
                 "train_batch_size": 4096, "train_steps": 32000,
                 "maskupdate_end_step": 25000, "data_directory": None},
    "mnist": {"drop_fraction_anneal": "cosine", "maskupdate_end_step": 50000,
              "num_epochs": 200, "batch_size": 100, "sparsity_scale": 0.9},
}
SPARSITIES = (50, 80, 90, 95)
# Published top-1 (%) of every ImageNet table row (spec 7.1), by flagfile name; "~"
# marks the approximate SNFS values.
IMAGENET_TOP1 = {
    "resnet50_dense": "76.8",
    "resnet50_static_uniform_s80": "70.6", "resnet50_static_uniform_s90": "65.8",
    "resnet50_snip_uniform_s80": "72.0", "resnet50_snip_uniform_s90": "67.2",
    "resnet50_set_uniform_s80": "72.9", "resnet50_set_uniform_s90": "69.6",
    "resnet50_rigl_uniform_s80": "74.6", "resnet50_rigl_uniform_s90": "72.0",
    "resnet50_rigl_uniform_s80_5x": "76.6", "resnet50_rigl_uniform_s90_5x": "75.7",
    "resnet50_static_erk_s80": "72.1", "resnet50_static_erk_s90": "67.7",
    "resnet50_rigl_erk_s80": "75.1", "resnet50_rigl_erk_s90": "73.0",
    "resnet50_rigl_erk_s80_5x": "77.1", "resnet50_rigl_erk_s90_5x": "76.4",
    "resnet50_snfs_erk_s80": "~75.2", "resnet50_snfs_erk_s90": "~72.9",
    "resnet50_prune_s80": "75.6", "resnet50_prune_s90": "73.9",
    "resnet50_rigl_erk_s80_nols": "75.02", "resnet50_rigl_erk_s80_5x_nols": "76.17",
    "resnet50_rigl_erk_s90_nols": "73.4", "resnet50_rigl_erk_s90_5x_nols": "75.9",
    "resnet50_rigl_erk_s95_nols": "70.39", "resnet50_rigl_erk_s95_5x_nols": "74.36",
    "mobilenet_v1_dense": "72.1",
    "mobilenet_v1_rigl_erk_s90_10x": "69.31", "mobilenet_v1_rigl_erk_s90_50x": "70.63",
    "mobilenet_v1_rigl_uniform_s90_10x": "69.28",
    "mobilenet_v1_rigl_uniform_s90_50x": "70.25",
    "mobilenet_v1_rigl_uniform_s90_100x": "70.59",
}


def flagfiles() -> list[pathlib.Path]:
  return sorted(path.relative_to(REPO) for directory in SCRIPTS
                for path in (CONFIGS / directory).glob("*.cfg"))


def names(directory: str) -> set[str]:
  return {path.stem for path in flagfiles() if path.parts[1] == directory}


@pytest.mark.parametrize("path", flagfiles(), ids=str)
def test_flagfile_parses(path, monkeypatch):
  monkeypatch.chdir(REPO)  # Flagfiles name each other relative to the repository.
  assert path.read_text().startswith("#"), "a flagfile starts with a comment"
  module = SCRIPTS[path.parts[1]]
  with script_flags.values_restored(module.FLAGS):
    module.FLAGS.unparse_flags()
    module.FLAGS(["script", f"--flagfile={path}"])
    check_settings(path.parts[1], path.stem, module.FLAGS)


def check_settings(directory, name, values):
  """The directory's setting and what the name promises: model, method, distribution,
  sparsity, length and label smoothing."""
  match = NAME.fullmatch(name)
  assert match, f"{name} does not follow <model>_<method>[_<distribution>][_s<S>][_<k>x]"
  for settings in (SETTINGS[directory], MODELS[match["model"]]):
    assert {flag: values[flag].value for flag in settings} == settings
  if match["method"] == "common":
    assert name == f"{match['model']}_common"
    return
  assert values.training_method == METHODS[match["method"]]
  distribution = match["distribution"]
  if distribution:
    assert values.mask_init_method == DISTRIBUTIONS[distribution]
    if match["model"] == "resnet50":
      assert values.first_layer_sparsity == RESNET_FIRST_LAYER_SPARSITY[distribution]
  if match["method"] == "dense":
    assert match["sparsity"] is None
  else:
    assert round(values.end_sparsity * 100) == int(match["sparsity"])
  multiplier = int(match["multiplier"] or 1)
  if "training_steps_multiplier" in values:
    assert values.training_steps_multiplier == multiplier
  else:
    assert multiplier == 1
  if "label_smoothing" in values:
    assert (values.label_smoothing == 0) == bool(match["no_label_smoothing"])
  else:
    assert not match["no_label_smoothing"]


def test_every_paper_row_has_a_config():
  cifar10 = names("cifar10")
  for sparsity in SPARSITIES:
    for method in ("static", "set", "snfs", "rigl", "snip"):
      assert f"wrn22_2_{method}_erk_s{sparsity}" in cifar10
    assert f"wrn22_2_rigl_erk_s{sparsity}_2x" in cifar10
    assert f"wrn22_2_static_erk_s{sparsity}_2x" in cifar10
    assert f"wrn22_2_prune_s{sparsity}" in cifar10
  assert "wrn22_2_dense" in cifar10
  assert names("mnist") == {"fc_common", "fc_dense"} | {
      f"fc_{method}_s98" for method in ("static", "set", "snfs", "rigl", "snip", "prune")}
  assert names("imagenet") == set(IMAGENET_TOP1) | {"resnet50_common",
                                                     "mobilenet_v1_common"}


@pytest.mark.parametrize("name", sorted(IMAGENET_TOP1))
def test_imagenet_config_names_its_published_top1(name):
  first_line = (CONFIGS / "imagenet" / f"{name}.cfg").read_text().splitlines()[0]
  assert f"top-1 {IMAGENET_TOP1[name]}%" in first_line
