#!/usr/bin/env bash
# bench/real_job.py reports where the host put the CPUs the replica threads run
# on: its placement report stays quiet for rounds under one placement, warns and
# names the runs for rounds that saw two (cache-line times more than 2x apart),
# says "not measured" when it could not measure; line_time() reads a real
# core_latency; and a real (tiny) run prints the time each lockstep run saw.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
BENCH="$LOCKSTEP_SOURCE_DIR/bench"
CORE_LATENCY="$(dirname "$LS")/bench/core_latency"

out=$("$PY" - "$BENCH" <<'PYEOF' 2>&1
import sys
sys.path.insert(0, sys.argv[1])
import real_job as rj
one = rj.placement_report({"lockstep": [41.0, 45.0, 39.0], "lockstep 1 replica": [43.0, 40.0, 44.0]})
two = rj.placement_report({"lockstep": [41.0, 172.0, 44.0], "lockstep 1 replica": [40.0, 43.0, 45.0],
                           "lockstep 2 ranks": [168.0, 42.0, 39.0]})
none = rj.placement_report({"lockstep": [None, None]})
print("ONE", " | ".join(one))
print("TWO", " | ".join(two))
print("NONE", " | ".join(none))
PYEOF
)
one=$(printf '%s\n' "$out" | grep '^ONE')
two=$(printf '%s\n' "$out" | grep '^TWO')
none=$(printf '%s\n' "$out" | grep '^NONE')
if printf '%s' "$one" | grep -q "39-45 ns" && ! printf '%s' "$one" | grep -q WARNING; then
  ok "one placement: range 39-45 ns, no warning"
else
  bad "one placement: $out"
fi
if printf '%s' "$two" | grep -q "WARNING: the host moved the first two CPUs" &&
   printf '%s' "$two" | grep -q "runs under two caches: lockstep, lockstep 2 ranks)" &&
   printf '%s' "$two" | grep -q "39-172 ns"; then
  ok "two placements: warns and names exactly the runs that saw two caches"
else
  bad "two placements: $out"
fi
printf '%s' "$none" | grep -q "not measured" && ok "no measurement: says so" || bad "no measurement: $out"

# line_time against the built core_latency (2 CPUs or more), and without one.
if [ -x "$CORE_LATENCY" ] && [ "$(nproc)" -ge 2 ]; then
  t=$("$PY" - "$BENCH" "$CORE_LATENCY" <<'PYEOF' 2>&1
import sys
sys.path.insert(0, sys.argv[1])
import real_job as rj
rj.CORE_LATENCY = sys.argv[2]
t = rj.line_time()
rj.CORE_LATENCY = "/nonexistent/core_latency"
print(t, rj.line_time())
PYEOF
)
  if "$PY" -c "import sys; a, b = sys.argv[1].split(); sys.exit(0 if 1 < float(a) < 100000 and b == 'None' else 1)" "$t"; then
    ok "line_time: $t (measured ns, then None without core_latency)"
  else
    bad "line_time: $t"
  fi
else
  ok "line_time: SKIPPED (core_latency not built at $CORE_LATENCY, or one CPU)"
fi

# A real run of the script on a tiny dataset: every lockstep run's line carries
# the time it saw, and the report ends with the placement line.
"$PY" - tiny.h5 <<'PYEOF'
import sys, h5py, numpy as np
rng = np.random.default_rng(3)
with h5py.File(sys.argv[1], "w") as f:
    f.attrs["num_classes"] = 10
    for split, rows in (("train", 1280), ("test", 256)):
        g = f.create_group(split)
        g.create_dataset("x", data=rng.integers(0, 256, size=(rows, 28, 28), dtype=np.uint8), chunks=True)
        g.create_dataset("y", data=rng.integers(0, 10, size=(rows,)).astype(np.int32))
PYEOF
if [ -x "$LOCKSTEP_SOURCE_DIR/build/lockstep" ]; then
  "$PY" "$BENCH/real_job.py" --data "$WORK/tiny.h5" --epochs 2 --rounds 1 --peers "" --json rj.json >rj.log 2>&1
  rc=$?
  runs=$(grep -c "^  round 1  lockstep" rj.log)
  timed=$(grep "^  round 1  lockstep" rj.log | grep -c " line  *[0-9]* ns$")
  if [ $rc -eq 0 ] && [ "$runs" -eq 2 ] && grep -q "^# cache-line time between the first two CPUs" rj.log &&
     { [ "$timed" -eq 2 ] || grep -q "^# cache-line time between the first two CPUs: not measured" rj.log; } &&
     "$PY" -c "import json; d = json.load(open('rj.json')); assert set(d['line_ns']) == {'lockstep', 'lockstep 1 replica'}"; then
    ok "real_job.py on tiny data: $runs lockstep runs, $timed with their line time; $(grep '^# cache-line' rj.log)"
  else
    bad "real_job.py on tiny data (rc=$rc, runs=$runs, timed=$timed): $(tail -5 rj.log)"
  fi
else
  ok "real_job.py run: SKIPPED (no build/lockstep in the source tree)"
fi

echo "real_job: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
