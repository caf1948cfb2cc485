#!/usr/bin/env bash
# Installs what lockstep needs (Debian packages; idempotent) and builds a Release
# build in build/. Variables: BUILD_DIR (default build), JOBS (default: all cores),
# CMAKE_ARGS (extra configure flags, e.g. -DLOCKSTEP_CUDA=OFF), EXTRA_PACKAGES
# (more Debian packages, e.g. python3-torch for the tests' PyTorch cross-checks).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
CMAKE_ARGS=${CMAKE_ARGS:-}
PACKAGES=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev libeigen3-dev libhdf5-dev
          libyaml-cpp-dev libcli11-dev nlohmann-json3-dev libgtest-dev libopenblas-dev libdnnl-dev
          zlib1g-dev dataset-fashion-mnist python3-h5py python3-numpy
          libcpp-httplib-dev libssl-dev libbrotli-dev python3-venv gnuplot-nox)
# shellcheck disable=SC2206
PACKAGES+=(${EXTRA_PACKAGES:-})

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release $CMAKE_ARGS
cmake --build "$BUILD_DIR" -j "$JOBS"
