#!/usr/bin/env bash
# The benchmarks say where the host put the CPUs the replica threads run on.
# bench/real_job.py: its placement report stays quiet for rounds under one
# placement, warns and names the runs for rounds that saw two (cache-line times
# more than 2x apart), counts runs it could not measure, and says why when it
# measured none; line_time() reads a real core_latency, and gives None (with the
# reason) without one or with one CPU allowed; a real (tiny) run of the binary
# under test prints the time each lockstep run saw. train_bench: each row ends
# with the time (bench/cache_line.h), '-' with one CPU allowed.
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
mixed = rj.placement_report({"lockstep": [41.0, None, 180.0], "lockstep 1 replica": [None, 44.0, None]})
rj.PROBE["why"] = "fewer than 2 CPUs allowed"
none = rj.placement_report({"lockstep": [None, None]})
print("ONE", " | ".join(one))
print("MIXED", " | ".join(mixed))
print("TWO", " | ".join(two))
print("NONE", " | ".join(none))
PYEOF
)
one=$(printf '%s\n' "$out" | grep '^ONE')
two=$(printf '%s\n' "$out" | grep '^TWO')
none=$(printf '%s\n' "$out" | grep '^NONE')
mixed=$(printf '%s\n' "$out" | grep '^MIXED')
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
if printf '%s' "$mixed" | grep -q "41-180 ns (3 of 6 runs not measured" &&
   printf '%s' "$mixed" | grep -q "runs under two caches: lockstep)"; then
  ok "some runs not measured: counted, and only the measured far run named"
else
  bad "mixed measurements: $out"
fi
printf '%s' "$none" | grep -q "not measured (fewer than 2 CPUs allowed)" && ok "no measurement: says why" ||
  bad "no measurement: $out"

# line_time against the built core_latency (2 CPUs or more), without one, and
# with one CPU allowed.
if [ -x "$CORE_LATENCY" ] && [ "$(nproc)" -ge 2 ]; then
  t=$("$PY" - "$BENCH" "$CORE_LATENCY" <<'PYEOF' 2>&1
import os, sys
sys.path.insert(0, sys.argv[1])
import real_job as rj
rj.PROBE["path"] = sys.argv[2]
measured = rj.line_time()
rj.PROBE["path"] = "/nonexistent/core_latency"
missing = (rj.line_time(), rj.PROBE.pop("why"))
rj.PROBE["path"] = sys.argv[2]
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
alone = (rj.line_time(), rj.PROBE.pop("why"))
print(measured, "|", missing, "|", alone)
PYEOF
)
  if "$PY" -c "
import sys
a, b, c = sys.argv[1].split(' | ')
assert 1 < float(a) < 100000, a
assert b.startswith('(None,') and 'is not built' in b, b
assert c.startswith('(None,') and 'fewer than 2 CPUs' in c, c" "$t"; then
    ok "line_time: $t"
  else
    bad "line_time: $t"
  fi
else
  echo "SKIPPED - line_time: core_latency not built at $CORE_LATENCY (LOCKSTEP_BENCH=OFF), or one CPU"
fi

# A real run of the script on a tiny dataset: every lockstep run's line carries
# the time it saw, and the report ends with the placement line.
make_tiny_dataset tiny.h5 1280 9 28 10  # the shipped config's 28x28 rows, 10 classes
"$PY" "$BENCH/real_job.py" --lockstep "$LS" --data "$WORK/tiny.h5" --epochs 2 --rounds 1 --peers "" \
  --json rj.json >rj.log 2>&1
rc=$?
runs=$(grep -c "^  round 1  lockstep" rj.log)
timed=$(grep "^  round 1  lockstep" rj.log | grep -c " line  *[0-9]* ns$")
want=2  # each run's line time, where the probe can run beside the binary
{ [ -x "$CORE_LATENCY" ] && [ "$(nproc)" -ge 2 ]; } || want=0
if [ $rc -eq 0 ] && [ "$runs" -eq 2 ] && [ "$timed" -eq "$want" ] &&
   grep -q "^# cache-line time between the first two CPUs" rj.log &&
   "$PY" -c "import json; d = json.load(open('rj.json')); assert set(d['line_ns']) == {'lockstep', 'lockstep 1 replica'}"; then
  ok "real_job.py --lockstep $LS on tiny data: $runs lockstep runs, $timed with their line time; $(grep '^# cache-line' rj.log)"
else
  bad "real_job.py on tiny data (rc=$rc, runs=$runs, timed=$timed, want $want): $(tail -5 rj.log)"
fi

# train_bench's line column: a time with two CPUs, '-' with one.
if [ -x "$(dirname "$LS")/bench/train_bench" ] && [ "$(nproc)" -ge 2 ]; then
  TB="$(dirname "$LS")/bench/train_bench"
  two=$("$TB" --replicas 2 --batch 64 --scaling strong --reps 1 --steps 20 --warmup 2 --json tb.json 2>&1 | grep -E '^ +64 ' | tail -1)
  cpu=$("$PY" -c "import os; print(min(os.sched_getaffinity(0)))")
  one=$(taskset -c "$cpu" "$TB" --replicas 1 --batch 64 --reps 1 --steps 20 --warmup 2 2>&1 | grep -E '^ +64 ' | tail -1)
  if "$PY" -c "
import json, sys
two, one = sys.argv[1].split(), sys.argv[2].split()
assert len(two) == 16 and 1 < float(two[-1]) < 100000, two
assert len(one) == 16 and one[-1] == '-', one
rows = json.load(open('tb.json'))
assert rows[-1]['line_ns'] is not None and abs(rows[-1]['line_ns'] - float(two[-1])) <= 0.5, rows[-1]
" "$two" "$one"; then
    ok "train_bench line column: '${two##* }' ns at 2 replicas, '${one##* }' with one CPU"
  else
    bad "train_bench line column: two CPUs: $two / one CPU: $one"
  fi
else
  echo "SKIPPED - train_bench line column: benchmarks not built here (LOCKSTEP_BENCH=OFF), or one CPU"
fi

finish
