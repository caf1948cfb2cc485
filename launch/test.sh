#!/usr/bin/env bash
# The whole test suite: set up and build (launch/setup.sh), run every test through
# CTest, then check that the CUDA configuration compiles and links when the CUDA
# toolkit is present (nothing CUDA runs on a machine without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-$(nproc)}
launch/setup.sh
ctest --test-dir build --output-on-failure --no-tests=error -j "$JOBS" --timeout 900

if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1; then
  echo "test: CUDA toolkit found: building the CUDA configuration (compile and link check)"
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DLOCKSTEP_CUDA=ON \
        -DLOCKSTEP_TESTS=ON -DLOCKSTEP_BENCH=ON >/dev/null
  cmake --build build-cuda -j "$JOBS"
  echo "test: CUDA configuration builds"
else
  echo "test: no CUDA toolkit on this machine: CUDA build check SKIPPED"
fi
