"""The custom training loop of each backend (examples/keras3_custom_loop.py) trains
exactly as `model.fit` does."""

import importlib.util
import pathlib

import keras
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "keras3_custom_loop.py"
STEPS = 12


@pytest.fixture(scope="module")
def example():
  spec = importlib.util.spec_from_file_location("keras3_custom_loop", EXAMPLE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def trained(example, custom_loop: bool):
  model = example.make_model()
  optimizer = example.sparse_optimizer(model, total_steps=STEPS)
  batches = example.make_batches(STEPS)
  if custom_loop:
    example.TRAIN[keras.backend.backend()](model, optimizer, batches)
  else:
    model.compile(optimizer=optimizer, loss=example.LOSS,
                  jit_compile=keras.backend.backend() != "torch")
    x = np.concatenate([x for x, _ in batches])
    y = np.concatenate([y for _, y in batches])
    model.fit(x, y, batch_size=example.BATCH, epochs=1, shuffle=False, verbose=0)
  return ({n: keras.ops.convert_to_numpy(m) for n, m in optimizer.masks.items()},
          {n: keras.ops.convert_to_numpy(k) for n, k in optimizer.kernels.items()},
          int(keras.ops.convert_to_numpy(optimizer.iterations)))


def test_custom_loop_trains_like_fit(example):
  loop_masks, loop_kernels, loop_steps = trained(example, custom_loop=True)
  fit_masks, fit_kernels, fit_steps = trained(example, custom_loop=False)
  # RigL's update at step 0 replaced that call's optimizer step.
  assert loop_steps == fit_steps == STEPS - 1
  for name, mask in fit_masks.items():
    np.testing.assert_array_equal(loop_masks[name], mask, err_msg=name)
    np.testing.assert_allclose(loop_kernels[name], fit_kernels[name], rtol=1e-5,
                               atol=1e-6, err_msg=name)
    assert np.all(loop_kernels[name][mask == 0] == 0)
  active = sum(mask.sum() for mask in fit_masks.values())
  total = sum(mask.size for mask in fit_masks.values())
  assert active / total == pytest.approx(0.1, abs=0.01)  # ERK at 90% overall.


def test_the_example_runs_as_a_script(example, capsys, monkeypatch):
  monkeypatch.setattr("sys.argv", ["keras3_custom_loop.py", "--steps=6"])
  example.main()
  assert f"backend {keras.backend.backend()}" in capsys.readouterr().out
