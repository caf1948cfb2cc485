# Shared helpers for the CLI test scripts (*_test.sh source this file).
# expect_fail CODE PATTERN -- CMD...: CMD must exit with CODE, print exactly one
# stderr line matching "lockstep: error" and PATTERN, and must not crash.
set -uo pipefail

: "${LOCKSTEP_BINARY:?set by CTest}"
: "${LOCKSTEP_SOURCE_DIR:?set by CTest}"
LS=$LOCKSTEP_BINARY
PY=/usr/bin/python3
FAILS=0
PASSES=0
WORK=$(mktemp -d /tmp/lockstep-cli.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

ok() { PASSES=$((PASSES + 1)); echo "ok   - $1"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }

expect_fail() {
  local code=$1 pattern=$2
  shift 3  # CODE PATTERN --
  local err out rc
  err=$("$@" 2>&1 >/dev/null)
  rc=$?
  local lines
  lines=$(printf '%s\n' "$err" | grep -c "lockstep: error" || true)
  if [ "$rc" -ne "$code" ]; then
    bad "exit $rc (want $code): $* :: $err"
  elif [ "$lines" -ne 1 ]; then
    bad "want one 'lockstep: error' line, got $lines: $* :: $err"
  elif ! printf '%s' "$err" | grep -q -- "$pattern"; then
    bad "message lacks '$pattern': $* :: $err"
  else
    ok "$(printf '%s' "$err" | grep "lockstep: error" | cut -c1-150)"
  fi
}

# same_state A.h5 B.h5: every dataset of two model files (weights, moving
# statistics, optimizer slots; not the progress record of timings) bitwise equal,
# and the same update count. Read with h5py, independently of lockstep's reader.
same_state() {
  "$PY" - "$1" "$2" <<'PYEOF'
import sys, h5py
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) and n != "progress" else None)
assert len(names) >= 2, names
for n in names:
    x, y = a[n][()], b[n][()]
    assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), n
assert a.attrs["updates"] == b.attrs["updates"]
PYEOF
}

finish() {
  echo "$PASSES passed, $FAILS failed"
  [ "$FAILS" -eq 0 ]
}

# A tiny dataset in the lockstep HDF5 layout, written with h5py (independent of
# lockstep's writer): N examples of SIDExSIDE uint8 "pixels" (4x4 unless given),
# labels in [0, LABEL_MAX], num_classes CLASSES (3 unless given).
make_tiny_dataset() {  # PATH [N] [LABEL_MAX] [SIDE] [CLASSES]
  "$PY" - "$1" "${2:-96}" "${3:-2}" "${4:-4}" "${5:-3}" <<'PYEOF'
import sys, h5py, numpy as np
path, n, lmax, side, classes = sys.argv[1], *map(int, sys.argv[2:6])
rng = np.random.default_rng(0)
with h5py.File(path, "w") as f:
    f.attrs["num_classes"] = classes
    for split, rows in (("train", n), ("test", max(1, n // 3))):
        g = f.create_group(split)
        g.create_dataset("x", data=rng.integers(0, 256, size=(rows, side, side), dtype=np.uint8), chunks=True)
        g.create_dataset("y", data=rng.integers(0, lmax + 1, size=(rows,)).astype(np.int32))
PYEOF
}
