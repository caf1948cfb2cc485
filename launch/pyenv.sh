#!/usr/bin/env bash
# The Python environment for cross-checks and peer benchmarks (never for the
# engine): a venv under the build folder, made once and reused, holding the PyPI
# packages named as arguments (e.g. tensorboard onnxruntime onnx). Prints the
# venv's python on the last line of stdout; exits non-zero, saying why on stderr,
# when the venv cannot be made or a package cannot be installed (no network).
#   PY=$(launch/pyenv.sh tensorboard | tail -n 1) || skip ...
# Variables: PYENV_DIR (default BUILD_DIR/pyenv, BUILD_DIR default build).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
PYENV_DIR=${PYENV_DIR:-$BUILD_DIR/pyenv}
BASE_PY=${BASE_PY:-/usr/bin/python3}
[ -x "$BASE_PY" ] || BASE_PY=$(command -v python3)

# One installer at a time: CTest runs tests in parallel, and two pip processes
# writing one venv break it.
mkdir -p "$(dirname "$PYENV_DIR")"
exec 9>"$PYENV_DIR.lock"
flock 9

if [ ! -x "$PYENV_DIR/bin/python" ]; then
  if ! "$BASE_PY" -m venv "$PYENV_DIR" >&2; then
    echo "pyenv: cannot create a venv with $BASE_PY (install python3-venv)" >&2
    rm -rf "$PYENV_DIR"
    exit 1
  fi
  "$PYENV_DIR/bin/python" -m pip install -q --upgrade pip >&2 || true
fi
PY="$PYENV_DIR/bin/python"

missing=()
for pkg in "$@"; do
  # Import names differ from package names for a few packages.
  case "$pkg" in
    tensorflow-cpu|tensorflow) mod=tensorflow ;;
    jax\[cpu\]|jax) mod=jax ;;
    *) mod=${pkg//-/_} ;;
  esac
  "$PY" -c "import $mod" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "pyenv: installing ${missing[*]} into $PYENV_DIR" >&2
  if ! "$PY" -m pip install -q "${missing[@]}" >&2; then
    echo "pyenv: pip could not install ${missing[*]} (no network or no wheel for this Python)" >&2
    exit 1
  fi
fi
echo "$PY"
