"""FLOPs and size accounting: hand-computed layers, width rules and the paper's oracles."""

import json
import subprocess
import sys

import pytest

from rigl import flops
from rigl import methods
from rigl import models
from rigl import schedules
from rigl import sparsity as sparsity_lib

CONV = flops.LayerSpec("conv", flops.CONV, (3, 3, 4, 8), output_size=5)
DENSE = flops.LayerSpec("dense", flops.DENSE, (10, 4))
DEPTHWISE = flops.LayerSpec("depthwise", flops.DEPTHWISE, (3, 3, 6, 1), output_size=4)


def test_conv_layer_by_hand():
  stats = flops.count_layer(CONV, 0.5)
  # fan_in 3*3*4*0.5 = 18 over 5*5*8 = 200 outputs: 18*200 + 200 (ReLU) multiplies,
  # 17*200 + 200 (bias) adds.
  assert stats.flops == 3800 + 3600
  # 288 weights: half of them at 32 bits, a 288-bit mask, 8 biases.
  assert stats.size_bits == 144 * 32 + 288 + 8 * 32
  assert stats.zeros == 144


def test_dense_layer_by_hand():
  stats = flops.count_layer(DENSE, 0.0)
  assert stats.flops == (10 * 4 + 4) + (9 * 4 + 4)
  assert stats.size_bits == 40 * 32 + 4 * 32  # No mask bits for a dense layer.


def test_depthwise_layer_by_hand():
  stats = flops.count_layer(DEPTHWISE, 0.0)
  # 9 multiply-adds for each of 4*4*6 = 96 outputs, a ReLU per output, and one bias
  # add per position for the depth multiplier of 1.
  assert stats.flops == (9 * 96 + 96) + (8 * 96 + 16)
  assert stats.size_bits == 54 * 32 + 1 * 32


def test_model_totals_and_sparsity_use_floor_counts():
  stats = flops.count([CONV, DENSE], {"conv": 0.3})
  assert stats.params == 288 + 40
  assert stats.sparsity == int(0.3 * 288) / 328  # floor(86.4) = 86 zeros.
  assert stats.flops == flops.count_layer(CONV, 0.3).flops + flops.count_layer(
      DENSE, 0.0).flops
  assert stats.size_mb == stats.size_bits / 8e6


def test_scale_width_keeps_first_inputs_last_outputs_and_unit_dims():
  specs = [flops.LayerSpec("first", flops.CONV, (3, 3, 3, 16), 8),
           flops.LayerSpec("middle", flops.CONV, (1, 1, 16, 33), 8),
           flops.LayerSpec("dw", flops.DEPTHWISE, (3, 3, 33, 1), 8),
           flops.LayerSpec("last", flops.DENSE, (33, 10))]
  scaled = flops.scale_width(specs, 0.5)
  assert [s.kernel_shape for s in scaled] == [
      (3, 3, 3, 8), (1, 1, 8, 16), (3, 3, 16, 1), (16, 10)]


@pytest.fixture(scope="module")
def resnet50_specs():
  return flops.layer_specs(models.build("resnet50"))


def test_resnet50_dense_oracle(resnet50_specs):
  result = flops.account(resnet50_specs, sparsity_lib.SparsityConfig(0.0), flops.DENSE_STEPS)
  assert round(result.dense.flops / 1e9, 3) == 8.189
  assert round(result.dense.size_mb, 3) == 102.122
  assert result.training_flops_ratio == 1.0


def test_resnet50_erk_oracle(resnet50_specs):
  config = sparsity_lib.SparsityConfig(0.8, "erdos_renyi_kernel", first_layer_sparsity=-1)
  result = flops.account(resnet50_specs, config, flops.DENSE_GRADIENT_ON_UPDATES, mask_update_frequency=100)
  assert round(result.inference_flops_ratio, 3) == 0.415
  assert round(result.sparse.size_mb, 3) == 23.684
  assert round(result.training_flops_ratio, 2) == 0.42
  assert result.sparse.sparsity == pytest.approx(0.8, abs=1e-4)


def test_first_layer_rule_changes_counts(resnet50_specs):
  dense_first = flops.account(resnet50_specs, sparsity_lib.SparsityConfig(
      0.8, "random", first_layer_sparsity=0.0), flops.SPARSE_STEPS)
  first_row = dense_first.sparse.layers[0]
  assert first_row.name == "initial_conv" and first_row.sparsity == 0.0
  assert first_row.size_bits == 9408 * 32 + 64 * 32  # Unmasked: no mask bits.
  custom = flops.account(resnet50_specs, sparsity_lib.SparsityConfig(
      0.8, "random", first_layer_sparsity=0.5, last_layer_sparsity=0.6), flops.SPARSE_STEPS)
  assert custom.sparse.layers[0].sparsity == 0.5
  assert custom.sparse.layers[-1].sparsity == 0.6


def test_width_counts_scaled_shapes_with_width_one_sparsities(resnet50_specs):
  config = sparsity_lib.SparsityConfig(0.0)
  half = flops.account(resnet50_specs, config, flops.DENSE_STEPS, width=0.5)
  stem = half.dense.layers[0]
  assert stem.params == 7 * 7 * 3 * 32
  assert half.dense.layers[-1].params == 1024 * 1000
  assert 0.2 < half.dense.flops / flops.account(resnet50_specs, config,
                                                flops.DENSE_STEPS).dense.flops < 0.3


def test_training_flops_multipliers():
  dense, sparse = 100.0, 40.0
  ratio = flops.training_flops_ratio
  assert ratio(flops.DENSE_STEPS, dense, sparse) == 1.0
  assert ratio(flops.SPARSE_STEPS, dense, sparse) == pytest.approx(0.4)
  assert ratio(flops.DENSE_GRADIENT_STEPS, dense, sparse) == pytest.approx((80 + 100) / 300)
  assert ratio(flops.DENSE_GRADIENT_ON_UPDATES, dense, sparse, mask_update_frequency=100) == pytest.approx(
      (3 * 40 * 100 + 80 + 100) / 101 / 300)
  assert ratio(flops.PRUNING_STEPS, dense, sparse, mean_pruning_flops=70.0) == pytest.approx(0.7)
  assert ratio(flops.SPARSE_STEPS, dense, sparse, training_steps_multiplier=5) == pytest.approx(2.0)
  with pytest.raises(ValueError, match="FLOPs rule"):
    ratio("lottery", dense, sparse)


def test_pruning_schedule_is_cubic_between_begin_and_end():
  schedule = flops.PruningSamples(train_steps=100, schedule=schedules.PolynomialSparsity(
      begin_step=20, end_step=60, frequency=10))
  assert schedule.fraction_at(10) == 0.0
  assert schedule.fraction_at(40) == pytest.approx(1 - 0.5**3)
  assert schedule.fraction_at(80) == 1.0
  assert list(schedule.sample_steps()) == list(range(0, 101, 10))


def test_prune_averages_flops_over_schedule(resnet50_specs):
  config = sparsity_lib.SparsityConfig(0.8, "random", first_layer_sparsity=0.0,
                                       last_layer_sparsity=0.8)
  schedule = flops.PruningSamples()
  result = flops.account(resnet50_specs, config, flops.PRUNING_STEPS, pruning=schedule)
  # Independent average: f(s_t) over the 33 samples, the last layer fixed at 0.8.
  shapes = {s.name: s.kernel_shape for s in resnet50_specs}
  samples = []
  for step in schedule.sample_steps():
    step_sparsity = 0.8 * schedule.fraction_at(step)
    per_layer = {name: step_sparsity for name in shapes}
    per_layer["initial_conv"] = 0.0
    per_layer["final_dense"] = 0.8
    samples.append(flops.count(resnet50_specs, per_layer).flops)
  expected = sum(samples) / len(samples) / result.dense.flops
  assert result.training_flops_ratio == pytest.approx(expected)
  assert 0.4 < result.training_flops_ratio < 0.7


def test_mobilenet_v1_sizes_match_published_counts():
  specs = flops.layer_specs(models.build("mobilenet_v1"))
  dense = flops.account(specs, sparsity_lib.SparsityConfig(0.0), flops.DENSE_STEPS)
  assert round(dense.dense.size_mb, 3) == 16.864
  assert round(dense.dense.flops / 1e9, 2) == 1.14
  uniform = flops.account(specs, sparsity_lib.SparsityConfig(
      0.9, "random", first_layer_sparsity=0.0), flops.DENSE_GRADIENT_ON_UPDATES)
  assert round(uniform.sparse.size_mb, 3) == 2.396
  assert round(uniform.sparse.sparsity, 2) == 0.89  # Depthwise kernels stay dense.


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "rigl.flops", *args], capture_output=True,
                        text=True, check=False)


def test_command_line_json():
  result = _cli("--model_architecture=resnet50", "--training_method=rigl",
                "--mask_init_method=erdos_renyi_kernel", "--end_sparsity=0.8",
                "--first_layer_sparsity=-1", "--json")
  assert result.returncode == 0, result.stderr
  values = json.loads(result.stdout.strip().splitlines()[-1])
  assert set(values) == {"inference_flops", "inference_flops_ratio",
                         "training_flops_ratio", "params", "sparsity", "size_mb"}
  assert round(values["size_mb"], 3) == 23.684
  assert round(values["inference_flops_ratio"], 3) == 0.415


def test_command_line_paper_stem_count_gives_the_published_extended_row():
  # README: uniform 95% (first layer dense) at 5x costs 0.42x the dense training FLOPs.
  arguments = ("--model_architecture=resnet50", "--training_method=rigl",
               "--mask_init_method=random", "--end_sparsity=0.95",
               "--first_layer_sparsity=0", "--training_steps_multiplier=5", "--json")
  real = json.loads(_cli(*arguments).stdout.strip().splitlines()[-1])
  paper = json.loads(_cli(*arguments, "--paper_stem_count").stdout.strip().splitlines()[-1])
  assert round(real["training_flops_ratio"], 2) == 0.41
  assert round(paper["training_flops_ratio"], 2) == 0.42
  assert paper["size_mb"] == real["size_mb"]


def test_paper_stem_count_counts_the_stem_on_its_padded_input(resnet50_specs):
  stem = resnet50_specs[0]
  assert (stem.input_size, stem.stride, stem.output_size) == (230, 2, 112)
  paper = flops.with_paper_stem_count(resnet50_specs)
  assert paper[0].output_size == 115 and paper[1:] == resnet50_specs[1:]
  # Each of the 115^2 - 112^2 extra positions x 64 channels: 147 multiplies, 146 adds,
  # the ReLU multiply and the bias add.
  extra = (115**2 - 112**2) * 64 * (2 * 7 * 7 * 3 + 1)
  assert (flops.count(paper, {}).flops - flops.count(resnet50_specs, {}).flops) == extra
  assert round(flops.count(paper, {}).flops / 1e9, 3) == 8.202


def test_paper_stem_count_needs_a_first_convolution_of_known_input():
  with pytest.raises(ValueError, match="is a dense layer"):
    flops.with_paper_stem_count([DENSE, CONV])
  with pytest.raises(ValueError, match="has none recorded"):
    flops.with_paper_stem_count([CONV])
  with pytest.raises(ValueError, match="got none"):
    flops.with_paper_stem_count([])


def test_command_line_refuses_paper_stem_count_beyond_resnet50():
  result = _cli("--model_architecture=mobilenet_v1", "--paper_stem_count")
  assert result.returncode != 0
  assert "--model_architecture=resnet50" in result.stderr and "Traceback" not in result.stderr


def test_command_line_refuses_masking_mobilenet_first_layer():
  result = _cli("--model_architecture=mobilenet_v1", "--first_layer_sparsity=-1")
  assert result.returncode != 0
  assert "first_layer_sparsity" in result.stderr


def test_step_costs_average_to_the_rigl_multiplier():
  dense, sparse, delta = 100.0, 40.0, 7
  steps = [flops.step_flops_per_example(flops.DENSE_GRADIENT_ON_UPDATES, dense, sparse, is_mask_update=False)
           ] * delta + [flops.step_flops_per_example(flops.DENSE_GRADIENT_ON_UPDATES, dense, sparse, True)]
  assert sum(steps) / len(steps) / (3 * dense) == pytest.approx(
      flops.training_flops_ratio(flops.DENSE_GRADIENT_ON_UPDATES, dense, sparse, mask_update_frequency=delta))
  assert flops.step_flops_per_example(flops.DENSE_GRADIENT_STEPS, dense, sparse) == 2 * sparse + dense


def test_mask_sparsities_from_arrays():
  import numpy as np  # pylint: disable=import-outside-toplevel
  masks = {"a": np.array([[1.0, 0.0], [0.0, 0.0]]), "b": np.ones(3)}
  assert flops.mask_sparsities(masks) == {"a": 0.75, "b": 0.0}


def test_every_method_counts_as_the_paper_table_says():
  expected = {"baseline": flops.DENSE_STEPS, "scratch": flops.SPARSE_STEPS,
              "set": flops.SPARSE_STEPS, "static": flops.SPARSE_STEPS,
              "snip": flops.SPARSE_STEPS, "momentum": flops.DENSE_GRADIENT_STEPS,
              "dnw": flops.DENSE_GRADIENT_STEPS,
              "rigl": flops.DENSE_GRADIENT_ON_UPDATES, "prune": flops.PRUNING_STEPS}
  assert {name: cls.flops_rule for name, cls in methods.TRAINING_METHODS.items()
          if name in expected} == expected
