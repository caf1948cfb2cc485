#!/usr/bin/env bash
# Quick start: set up, build, convert Fashion-MNIST to HDF5 (datasets/, ignored
# by git) and train configs/fashion_mnist_mlp.yaml. Extra arguments go to
# `lockstep train`, e.g. launch/run.sh --set train.epochs=2
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-configs/fashion_mnist_mlp.yaml}
DATASET=${DATASET:-datasets/fashion_mnist.h5}
IDX_DIR=${IDX_DIR:-/usr/share/datasets/fashion-mnist}

launch/setup.sh
if [ ! -f "$DATASET" ]; then
  mkdir -p "$(dirname "$DATASET")"
  build/lockstep convert idx --dir "$IDX_DIR" --out "$DATASET"
fi
exec build/lockstep train "$CONFIG" --set "data.path=$DATASET" "$@"
