"""Tests for rigl.sparsity: random masks and per-layer sparsity distributions."""

import math

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest

from rigl import sparsity

ER = "erdos_renyi"
ERK = "erdos_renyi_kernel"


def resnet50_shapes():
  """ImageNet ResNet-50 v1.5 kernel shapes under the TF1 scope names (spec 4.2)."""
  shapes = {"resnet_model/initial_conv": (7, 7, 3, 64)}
  in_channels = 64
  for group, (blocks, filters) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)),
                                            start=1):
    for block in range(blocks):
      if block == 0:
        suffix = f"block_group_projection_block_group{group}"
        shapes[f"resnet_model/bottleneck_projection_{suffix}"] = (
            1, 1, in_channels, 4 * filters)
      else:
        suffix = f"block_group{group}_{block}_1"
      shapes[f"resnet_model/bottleneck_1_{suffix}"] = (1, 1, in_channels, filters)
      shapes[f"resnet_model/bottleneck_2_{suffix}"] = (3, 3, filters, filters)
      shapes[f"resnet_model/bottleneck_3_{suffix}"] = (1, 1, filters, 4 * filters)
      in_channels = 4 * filters
  shapes["resnet_model/final_dense"] = (2048, 1000)
  return shapes


def reference_er(shapes, default_sparsity, custom=None, kernel=True, power=1.0):
  """Independent ER/ERK with the dense-layer loop of spec section 2.

  Returns (sparsities, set of layers made dense).
  """
  custom = dict(custom or {})
  free = [name for name in shapes if name not in custom]
  size = {name: int(np.prod(shapes[name])) for name in free}
  zeros = {name: math.floor(default_sparsity * size[name]) for name in free}
  if kernel:
    raw = {name: (sum(shapes[name]) / size[name]) ** power for name in free}
  else:
    raw = {name: (shapes[name][-2] + shapes[name][-1])
                 / (shapes[name][-2] * shapes[name][-1]) for name in free}
  dense = set()
  epsilon = 0.0
  while len(dense) < len(free):
    active = [name for name in free if name not in dense]
    rhs = (sum(size[n] - zeros[n] for n in active)
           - sum(zeros[n] for n in dense))
    divisor = sum(raw[n] * size[n] for n in active)
    epsilon = rhs / divisor
    top = max(raw[n] for n in active)
    if epsilon * top <= 1:
      break
    dense.update(n for n in active if raw[n] == top)
  result = {}
  for name in shapes:
    if name in custom:
      result[name] = custom[name]
    elif name in dense:
      result[name] = 0.0
    else:
      result[name] = 1.0 - epsilon * raw[name]
  return result, dense


def raw_er(shape):
  return (shape[-2] + shape[-1]) / (shape[-2] * shape[-1])


def raw_erk(shape):
  return sum(shape) / np.prod(shape)


# ----------------------------------------------------------------------------------
# get_n_zeros / random_mask


@pytest.mark.parametrize("shape, s, ones", [
    ((30, 4), 0.5, 60), ((1, 2, 1, 4), 0.8, 2), ((30,), 0.1, 27),
    ((7, 3), 0.0, 21), ((3, 3, 16, 32), 0.9, 461)])
def test_random_mask_exact_number_of_ones(shape, s, ones):
  """A random mask has exactly size - floor(s * size) ones, and only 0/1 entries."""
  size = int(np.prod(shape))
  assert sparsity.get_n_zeros(size, s) == size - ones
  mask = sparsity.random_mask(shape, s, rng=np.random.default_rng(0))
  assert mask.shape == shape
  assert int(mask.sum()) == ones
  assert set(np.unique(mask)) <= {0, 1}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_random_mask_keeps_dtype(dtype):
  """The mask has the requested dtype."""
  mask = sparsity.random_mask((5, 6), 0.5, rng=np.random.default_rng(0), dtype=dtype)
  assert mask.dtype == dtype
  assert int(mask.sum()) == 15


def test_random_mask_seed_determinism_and_count():
  """Same seed gives the same mask; repeated unseeded calls keep the count."""
  a = sparsity.random_mask((30, 4), 0.5, rng=np.random.default_rng(7))
  b = sparsity.random_mask((30, 4), 0.5, rng=np.random.default_rng(7))
  c = sparsity.random_mask((30, 4), 0.5, rng=np.random.default_rng(8))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  counts = {int(sparsity.random_mask((30, 4), 0.5).sum()) for _ in range(10)}
  assert counts == {60}


# ----------------------------------------------------------------------------------
# get_sparsities: uniform, ER, ERK


def test_random_distribution_default_and_custom():
  """'random' gives the default everywhere except custom layers."""
  shapes = {"a": (3, 4), "b": (3, 3, 2, 8), "c": (10, 1)}
  assert sparsity.get_sparsities(shapes, "random", 0.7) == {"a": 0.7, "b": 0.7, "c": 0.7}
  result = sparsity.get_sparsities(shapes, "random", 0.7, {"b": 0.2})
  assert result == {"a": 0.7, "b": 0.2, "c": 0.7}


@pytest.mark.parametrize("method", [ER, ERK])
def test_er_custom_value_survives(method):
  """A custom sparsity is returned unchanged by ER and ERK."""
  shapes = {"a": (20, 30), "b": (30, 40), "c": (40, 10)}
  result = sparsity.get_sparsities(shapes, method, 0.8, {"b": 0.123})
  assert result["b"] == 0.123
  assert 0 < result["a"] < 1 and 0 < result["c"] < 1


SHAPE_SETS = [
    [(2, 3), (2, 3)],
    [(2, 3), (2, 4)],
    [(30, 40), (40, 50)],
    [(100, 300), (300, 10)],
    [(1000, 10), (100, 5)],
    [(3, 3, 16, 32), (3, 3, 32, 64), (512, 10)],
    [(5, 5, 8, 16), (1, 1, 16, 64), (3, 3, 64, 64), (1024, 100)],
]


@pytest.mark.parametrize("method, raw_fn", [(ER, raw_er), (ERK, raw_erk)])
@pytest.mark.parametrize("shape_list", SHAPE_SETS)
@pytest.mark.parametrize("s", [0.5, 0.8])
def test_er_budget_and_proportionality(method, raw_fn, shape_list, s):
  """Total zeros match the uniform budget; (1 - s_l) / raw_l is constant."""
  shapes = {f"layer{i}": shape for i, shape in enumerate(shape_list)}
  result = sparsity.get_sparsities(shapes, method, s)
  sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
  budget = sum(math.floor(s * n) for n in sizes.values())
  total_zeros = sum(result[name] * sizes[name] for name in shapes)
  assert abs(total_zeros - budget) <= 2
  free = [name for name in shapes if result[name] != 0.0]
  assert free
  ratios = [(1 - result[name]) / raw_fn(shapes[name]) for name in free]
  np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)
  for value in result.values():
    assert 0.0 <= value < 1.0


def test_er_uses_last_two_dims_and_ignores_power():
  """ER looks only at n_in, n_out; conv kernels with the same last dims tie."""
  shapes = {"conv": (7, 7, 20, 30), "fc": (20, 30), "other": (50, 60)}
  result = sparsity.get_sparsities(shapes, ER, 0.8)
  assert result["conv"] == pytest.approx(result["fc"], abs=1e-12)
  again = sparsity.get_sparsities(shapes, ER, 0.8, erk_power_scale=0.3)
  assert again == result
  expected, _ = reference_er(shapes, 0.8, kernel=False)
  assert result == pytest.approx(expected, abs=1e-12)


def test_erk_power_scale_zero_is_uniform():
  """erk_power_scale=0 makes every raw density 1, i.e. uniform sparsities."""
  shapes = {"a": (3, 3, 16, 32), "b": (100, 200), "c": (4, 4)}
  result = sparsity.get_sparsities(shapes, ERK, 0.75, erk_power_scale=0.0)
  values = list(result.values())
  np.testing.assert_allclose(values, values[0], rtol=0, atol=1e-12)
  # The shared value spreads the floored budget over all weights.
  sizes = [int(np.prod(s)) for s in shapes.values()]
  expected = sum(math.floor(0.75 * n) for n in sizes) / sum(sizes)
  assert values[0] == pytest.approx(expected, abs=1e-12)


def test_erk_power_scale_changes_distribution():
  """A power between 0 and 1 flattens ERK towards uniform."""
  shapes = {"small": (3, 3, 8, 16), "big": (512, 512)}
  full = sparsity.get_sparsities(shapes, ERK, 0.9)
  half = sparsity.get_sparsities(shapes, ERK, 0.9, erk_power_scale=0.5)
  expected, _ = reference_er(shapes, 0.9, power=0.5)
  assert half == pytest.approx(expected, abs=1e-12)
  assert full["big"] - full["small"] > half["big"] - half["small"] > 0


# ----------------------------------------------------------------------------------
# The dense-layer loop


DENSE_CASES = [
    # (shapes, S, method, custom, expected dense layers)
    ({"tiny": (2, 2), "big1": (100, 100), "big2": (200, 50)}, 0.9, ERK, None,
     {"tiny"}),
    ({"t1": (3, 3), "t2": (3, 3), "big": (128, 256)}, 0.9, ERK, None, {"t1", "t2"}),
    ({"a": (2, 2), "b": (4, 4), "c": (8, 8), "d": (16, 16), "big": (512, 512)}, 0.95,
     ERK, None, {"a", "b", "c", "d"}),
    ({"conv": (3, 3, 2, 2), "fc": (300, 400), "fc2": (400, 10)}, 0.9, ER, None,
     {"conv", "fc2"}),
    ({"stem": (3, 3, 3, 4), "mid": (3, 3, 64, 64), "tiny": (2, 2), "fc": (256, 10)},
     0.9, ERK, {"tiny": 0.5}, {"stem"}),
]


@pytest.mark.parametrize("shapes, s, method, custom, dense", DENSE_CASES)
def test_dense_layer_loop_matches_reference(shapes, s, method, custom, dense):
  """Layers whose density would exceed 1 are dense (0.0); the rest match the spec."""
  expected, expected_dense = reference_er(shapes, s, custom, kernel=(method == ERK))
  assert expected_dense == dense  # The case really exercises the loop.
  result = sparsity.get_sparsities(shapes, method, s, custom)
  assert set(result) == set(shapes)
  for name in dense:
    assert result[name] == 0.0
  for name in shapes:
    if name not in dense:
      assert result[name] > 0.0
  assert result == pytest.approx(expected, abs=1e-12)
  for name, value in (custom or {}).items():
    assert result[name] == value


def test_dense_loop_hand_computed_value():
  """The cascade case, computed by hand: 4 dense rounds, then eps = 12787 / 1024."""
  shapes = {"a": (2, 2), "b": (4, 4), "c": (8, 8), "d": (16, 16), "big": (512, 512)}
  result = sparsity.get_sparsities(shapes, ERK, 0.95)
  # Sparse layer keeps 262144 - 249036 = 13108 ones minus the dense layers' zero
  # quota 3 + 15 + 60 + 243 = 321; raw = 1024 / 262144.
  assert result["big"] == pytest.approx(1 - 12787 / 262144, abs=1e-12)
  assert [result[n] for n in "abcd"] == [0.0] * 4


# ----------------------------------------------------------------------------------
# ResNet-50 oracle


def test_resnet50_shapes_helper():
  """53 convs + FC, 25,502,912 weights."""
  shapes = resnet50_shapes()
  assert len(shapes) == 54
  assert sum(int(np.prod(s)) for s in shapes.values()) == 25_502_912


def test_resnet50_erk_oracle():
  """ERK at S=0.8 with the first layer masked: spec section 2 oracle."""
  shapes = resnet50_shapes()
  result = sparsity.get_sparsities(shapes, ERK, 0.8)
  dense = {name for name, value in result.items() if value == 0.0}
  assert dense == {
      "resnet_model/bottleneck_projection_block_group_projection_block_group1",
      "resnet_model/bottleneck_1_block_group_projection_block_group1",
      "resnet_model/bottleneck_3_block_group_projection_block_group1",
      "resnet_model/bottleneck_1_block_group1_1_1",
      "resnet_model/bottleneck_3_block_group1_1_1",
      "resnet_model/bottleneck_1_block_group1_2_1",
      "resnet_model/bottleneck_3_block_group1_2_1",
      "resnet_model/bottleneck_1_block_group_projection_block_group2",
  }
  assert round(result["resnet_model/initial_conv"], 3) == 0.143
  assert round(result["resnet_model/final_dense"], 3) == 0.852
  expected, _ = reference_er(shapes, 0.8)
  assert result == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------------
# STR


def test_str_unpublished_level_raises():
  with pytest.raises(ValueError, match="0.9"):
    sparsity.get_sparsities(resnet50_shapes(), "str", 0.9)


@pytest.mark.parametrize("level", [0.8127, 0.9805, 0.9879])
def test_str_levels_cover_every_resnet50_layer(level):
  """Every ResNet-50 layer gets an STR value in (0, 1), including at 0.9805/0.9879."""
  shapes = resnet50_shapes()
  result = sparsity.get_sparsities(shapes, "str", level)
  assert set(result) == set(shapes)
  for value in result.values():
    assert 0.0 < value < 1.0


def test_str_values_from_table():
  """Values come from rigl/data/str_resnet50_sparsities.csv under the TF1 names."""
  shapes = resnet50_shapes()
  low = sparsity.get_sparsities(shapes, "str", 0.7955)
  assert low["resnet_model/initial_conv"] == pytest.approx(0.5146)
  mid = sparsity.get_sparsities(shapes, "str", 0.8127)
  assert mid["resnet_model/initial_conv"] == pytest.approx(0.5140)
  assert mid["resnet_model/final_dense"] == pytest.approx(0.5246)
  # layer4.0.downsample.0, layer3.2.conv2 and layer1.0.conv1 rows.
  assert mid["resnet_model/bottleneck_projection_block_group_projection_block_group4"] == (
      pytest.approx(0.8998))
  assert mid["resnet_model/bottleneck_2_block_group3_2_1"] == pytest.approx(0.8867)
  assert mid["resnet_model/bottleneck_1_block_group_projection_block_group1"] == (
      pytest.approx(0.7324))


def test_str_unknown_layer_raises():
  shapes = {"resnet_model/initial_conv": (7, 7, 3, 64), "resnet_model/extra": (3, 3)}
  with pytest.raises(ValueError, match="extra"):
    sparsity.get_sparsities(shapes, "str", 0.8127)


# ----------------------------------------------------------------------------------
# Errors


def test_unknown_method_raises_with_allowed_values():
  with pytest.raises(ValueError) as info:
    sparsity.get_sparsities({"a": (3, 4)}, "uniform", 0.5)
  message = str(info.value)
  assert "uniform" in message
  for method in ("random", ER, ERK, "str"):
    assert method in message


@pytest.mark.parametrize("method", ["random", ER, ERK, "str"])
@pytest.mark.parametrize("bad", [1.0, -0.1])
def test_bad_default_sparsity_raises(method, bad):
  with pytest.raises(ValueError, match=str(bad)):
    sparsity.get_sparsities({"a": (3, 4)}, method, bad)


@pytest.mark.parametrize("method", ["random", ER, ERK, "str"])
def test_unknown_custom_key_raises_with_known_layers(method):
  shapes = {"resnet_model/initial_conv": (7, 7, 3, 64),
            "resnet_model/final_dense": (2048, 1000)}
  with pytest.raises(ValueError) as info:
    sparsity.get_sparsities(shapes, method, 0.8127, {"resnet_model/nope": 0.5})
  message = str(info.value)
  assert "resnet_model/nope" in message
  assert "resnet_model/initial_conv" in message
  assert "resnet_model/final_dense" in message


@pytest.mark.parametrize("bad", [1.0, -0.2, 1.5])
def test_bad_custom_value_raises(bad):
  with pytest.raises(ValueError, match=str(bad)):
    sparsity.get_sparsities({"a": (3, 4), "b": (4, 5)}, ERK, 0.5, {"a": bad})


# ----------------------------------------------------------------------------------
# SparsityConfig


CONFIG_SHAPES = {"first": (3, 3, 3, 16), "mid": (3, 3, 16, 32), "last": (32, 10)}


def test_config_first_layer_flags_uniform():
  """0 leaves the first layer out, -1 gives it S, 0.3 sets it exactly."""
  base = dict(sparsity=0.8, distribution="random")
  out = sparsity.SparsityConfig(first_layer_sparsity=0, **base).layer_sparsities(
      CONFIG_SHAPES)
  assert out == {"mid": 0.8, "last": 0.8}
  share = sparsity.SparsityConfig(first_layer_sparsity=-1, **base).layer_sparsities(
      CONFIG_SHAPES)
  assert share == {"first": 0.8, "mid": 0.8, "last": 0.8}
  exact = sparsity.SparsityConfig(first_layer_sparsity=0.3, **base).layer_sparsities(
      CONFIG_SHAPES)
  assert exact == {"first": 0.3, "mid": 0.8, "last": 0.8}


def test_config_last_layer_flags_uniform():
  base = dict(sparsity=0.8, distribution="random")
  out = sparsity.SparsityConfig(last_layer_sparsity=0, **base).layer_sparsities(
      CONFIG_SHAPES)
  assert out == {"first": 0.8, "mid": 0.8}
  share = sparsity.SparsityConfig(last_layer_sparsity=-1, **base).layer_sparsities(
      CONFIG_SHAPES)
  assert share == {"first": 0.8, "mid": 0.8, "last": 0.8}
  exact = sparsity.SparsityConfig(last_layer_sparsity=0.3, **base).layer_sparsities(
      CONFIG_SHAPES)
  assert exact == {"first": 0.8, "mid": 0.8, "last": 0.3}


def test_config_first_last_flags_erk():
  """With ERK, the flags change which layers share the budget."""
  base = dict(sparsity=0.8, distribution=ERK)
  share = sparsity.SparsityConfig(**base).layer_sparsities(CONFIG_SHAPES)
  expected, _ = reference_er(CONFIG_SHAPES, 0.8)
  assert share == pytest.approx(expected, abs=1e-12)

  out = sparsity.SparsityConfig(first_layer_sparsity=0, **base).layer_sparsities(
      CONFIG_SHAPES)
  rest = {k: v for k, v in CONFIG_SHAPES.items() if k != "first"}
  expected, _ = reference_er(rest, 0.8)
  assert set(out) == {"mid", "last"}
  assert out == pytest.approx(expected, abs=1e-12)

  exact = sparsity.SparsityConfig(first_layer_sparsity=0.3, last_layer_sparsity=0.6,
                                  **base).layer_sparsities(CONFIG_SHAPES)
  expected, _ = reference_er(CONFIG_SHAPES, 0.8, {"first": 0.3, "last": 0.6})
  assert exact["first"] == 0.3 and exact["last"] == 0.6
  assert exact == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("kwargs", [
    dict(distribution="uniform"), dict(distribution="erk"), dict(sparsity=1.0),
    dict(first_layer_sparsity=1.0), dict(last_layer_sparsity=1.2)])
def test_config_invalid_raises(kwargs):
  with pytest.raises(ValueError):
    sparsity.SparsityConfig(**kwargs)


# ----------------------------------------------------------------------------------
# Property test


dense_shape = st.tuples(st.integers(2, 64), st.integers(2, 64))


@settings(max_examples=50, deadline=None)
@given(shape_list=st.lists(dense_shape, min_size=2, max_size=6),
       s=st.floats(0.5, 0.95))
def test_erk_property(shape_list, s):
  """ERK sparsities lie in [0, 1) and keep the uniform zero budget up to flooring."""
  shapes = {f"l{i}": shape for i, shape in enumerate(shape_list)}
  result = sparsity.get_sparsities(shapes, ERK, s)
  for value in result.values():
    assert 0.0 <= value < 1.0
  sizes = {name: shape[0] * shape[1] for name, shape in shapes.items()}
  zeros = sum(math.floor(result[name] * sizes[name]) for name in shapes)
  budget = sum(math.floor(s * n) for n in sizes.values())
  assert abs(zeros - budget) <= len(shapes) + 2


def test_random_mask_rejects_bad_sparsity():
  with pytest.raises(ValueError, match="sparsity"):
    sparsity.random_mask((10,), -0.05)


def test_str_refuses_custom_sparsities():
  shapes = {"resnet_model/initial_conv": (7, 7, 3, 64),
            "resnet_model/final_dense": (2048, 1000)}
  with pytest.raises(ValueError, match="str"):
    sparsity.get_sparsities(shapes, "str", 0.8127,
                            {"resnet_model/initial_conv": 0.3})


def test_config_refuses_custom_value_for_unmasked_layer():
  config = sparsity.SparsityConfig(0.5, custom_sparsity_map={"first": 0.5},
                                   first_layer_sparsity=0.0)
  with pytest.raises(ValueError, match="unmasked"):
    config.layer_sparsities({"first": (3, 3, 3, 8), "mid": (3, 3, 8, 8), "last": (8, 2)})
