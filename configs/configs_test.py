"""Every flagfile under configs/ parses against its script's flags."""

import pathlib

import pytest

from cifar10 import cifar10_train_eval
from rigl import script_flags

CONFIGS = pathlib.Path(__file__).resolve().parent
REPO = CONFIGS.parent
SCRIPTS = {"cifar10": cifar10_train_eval}
# Config name component -> --training_method.
METHODS = {"dense": "baseline", "static": "scratch", "set": "set", "snfs": "momentum",
           "rigl": "rigl", "snip": "snip", "prune": "prune"}


def flagfiles():
  return sorted(path.relative_to(REPO) for directory in SCRIPTS
                for path in (CONFIGS / directory).glob("*.cfg"))


@pytest.mark.parametrize("path", flagfiles(), ids=str)
def test_flagfile_parses(path, monkeypatch):
  monkeypatch.chdir(REPO)  # Flagfiles name each other relative to the repository.
  module = SCRIPTS[path.parts[1]]
  with script_flags.values_restored(module.FLAGS):
    module.FLAGS.unparse_flags()
    module.FLAGS(["script", f"--flagfile={path}"])
    check_settings(path.stem, module.FLAGS)


def check_settings(name, values):
  """What a config's name promises: WRN-22-2, its distribution, sparsity, length."""
  assert values.resnet_depth == 22 and values.resnet_width == 2
  assert values.drop_fraction_anneal == "cosine"
  if name.endswith("_common"):
    return
  assert values.training_method == METHODS[name.split("_")[2]]
  if "_erk_" in name:
    assert values.mask_init_method == "erdos_renyi_kernel"
  if name != "wrn22_2_dense":
    assert f"_s{round(values.end_sparsity * 100)}" in name
  assert (values.training_steps_multiplier == 2) == name.endswith("_2x")


def test_every_paper_row_has_a_config():
  names = {path.stem for path in flagfiles()}
  for sparsity in (50, 80, 90, 95):
    for method in ("static", "set", "snfs", "rigl", "snip"):
      assert f"wrn22_2_{method}_erk_s{sparsity}" in names
    assert f"wrn22_2_rigl_erk_s{sparsity}_2x" in names
    assert f"wrn22_2_static_erk_s{sparsity}_2x" in names
    assert f"wrn22_2_prune_s{sparsity}" in names
  assert "wrn22_2_dense" in names
