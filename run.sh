#!/usr/bin/env bash
# Sets up the project and runs the whole test suite.
#   bash run.sh
# Creates a virtual environment in ./env, installs the pinned runtime and test
# requirements (requirements-test.txt) and this project (editable), installs Debian's
# real Fashion-MNIST files where apt-get is usable as root, then runs every *_test.py
# with pytest, and the Keras 3 tests (rigl/keras3) again on the JAX backend, and on
# PyTorch when a CPU-only torch is installed. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist
TORCH_CPU_WHEEL="torch==2.13.0+cpu"

echo "== Python environment (./env)"
if [ ! -x env/bin/python ]; then
  "$PYTHON" -m venv env
fi
env/bin/python -m pip install --quiet --upgrade pip
env/bin/python -m pip install --quiet -r requirements-test.txt
env/bin/python -m pip install --quiet --no-deps -e .

echo "== PyTorch, CPU build (optional: the Keras 3 tests then also run on PyTorch)"
# PyPI's default torch pulls gigabytes of CUDA libraries; only a CPU-only wheel (local
# version +cpu, from a configured find-links directory or index) is installed here.
if env/bin/python -c "import torch" 2>/dev/null; then
  echo "present"
elif env/bin/python -m pip install --quiet --only-binary=:all: "$TORCH_CPU_WHEEL" \
    2>/dev/null; then
  echo "installed $TORCH_CPU_WHEEL"
else
  echo "skipped: no $TORCH_CPU_WHEEL wheel reachable; the PyTorch-backend tests will not run"
fi

echo "== Fashion-MNIST (Debian package dataset-fashion-mnist)"
if [ -d "$FASHION_MNIST_DIR" ]; then
  echo "present in $FASHION_MNIST_DIR"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null \
    && echo "installed in $FASHION_MNIST_DIR" \
    || echo "warning: could not install dataset-fashion-mnist; real-data tests will skip"
else
  echo "skipped (needs root and apt-get); real-data tests will skip"
fi

echo "== Tests (Keras 3 ones on the TensorFlow backend)"
env/bin/python -m pytest -q "$@"

echo "== Keras 3 tests on the JAX backend"
KERAS_BACKEND=jax env/bin/python -m pytest -q rigl/keras3

if env/bin/python -c "import torch" 2>/dev/null; then
  echo "== Keras 3 tests on the PyTorch backend"
  KERAS_BACKEND=torch env/bin/python -m pytest -q rigl/keras3
fi
