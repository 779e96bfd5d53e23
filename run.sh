#!/usr/bin/env bash
# Sets up the project and runs the whole test suite.
#   bash run.sh
# Creates a virtual environment in ./env, installs the pinned runtime and test
# requirements (requirements-test.txt) and this project (editable), installs Debian's
# real Fashion-MNIST files where apt-get is usable as root, then runs every *_test.py
# with pytest. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist

echo "== Python environment (./env)"
if [ ! -x env/bin/python ]; then
  "$PYTHON" -m venv env
fi
env/bin/python -m pip install --quiet --upgrade pip
env/bin/python -m pip install --quiet -r requirements-test.txt
env/bin/python -m pip install --quiet --no-deps -e .

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

echo "== Tests"
env/bin/python -m pytest -q "$@"
