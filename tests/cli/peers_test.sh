#!/usr/bin/env bash
# Dead and stuck peers never hang a job: real `lockstep train` runs under mpirun
# (2 and 4 ranks) where one rank SIGKILLs or SIGSTOPs itself (LOCKSTEP_FAULT) at
# start-up, mid-training, during evaluation, during a checkpoint write and while
# the ranks make their shared gradient buffer. Every
# run must end by itself well inside the bound (`timeout` is only a guard), the
# launcher must exit non-zero, and the output must name the failed rank (our
# "rank(s) R did not arrive" message, or mpirun's report of the killed rank), and
# no shared-memory object may be left in /dev/shm.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$PY" - tiny.h5 <<'PYEOF'
import sys, h5py, numpy as np
rng = np.random.default_rng(1)
with h5py.File(sys.argv[1], "w") as f:
    f.attrs["num_classes"] = 3
    for split, rows in (("train", 2000), ("test", 600)):
        g = f.create_group(split)
        g.create_dataset("x", data=rng.integers(0, 256, size=(rows, 8, 8), dtype=np.uint8), chunks=True)
        g.create_dataset("y", data=rng.integers(0, 3, size=(rows,)).astype(np.int32))
PYEOF
cat > cfg.yaml <<YAML
data: {path: tiny.h5, scale: 0.0039}
model: {layers: [{units: 16, activation: tanh}]}
optimizer: {name: sgd, learning_rate: 0.05}
train: {epochs: 3, batch_size: 40, eval_batch_size: 100, progress: false}
checkpoint: {every_epoch: true, dir: ckpt}
comm: {timeout_s: 2, long_phase_s: 3}
output: {save_model: false}
YAML
BOUND=12   # seconds from mpirun's start; the fault comes within the first second or two
WORST=0
TRIED_KILL=0
TRIED_STOP=0

fault_case() {  # NP RANK POINT SIGNAL [lockstep train options...]
  local np=$1 rank=$2 point=$3 sig=$4 log="f$1-$2-${3//[ =@]/_}-$4.log"
  shift 4
  [ $# -gt 0 ] && log="${log%.log}-${*//[ =.\/]/_}.log"
  rm -rf ckpt runs  # a fresh run folder each time (an earlier run's is refused)
  local t0 t1 rc took
  t0=$(date +%s.%N)
  LOCKSTEP_FAULT="$rank:$point:$sig" timeout 60 mpirun --oversubscribe -np "$np" -x LOCKSTEP_FAULT \
    "$LS" train cfg.yaml "$@" >"$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  took=$("$PY" -c "print(f'{$t1 - $t0:.1f}')")
  [ "$sig" = KILL ] && TRIED_KILL=$((TRIED_KILL + 1)) || TRIED_STOP=$((TRIED_STOP + 1))
  WORST=$("$PY" -c "print(max($WORST, $took))")
  local what="np $np, rank $rank $sig at $point${*:+ ($*)}"
  if ! grep -q "LOCKSTEP_FAULT: rank $rank raises SIG$sig" "$log"; then
    bad "$what: the fault never fired (rc=$rc): $(tail -3 "$log")"
  elif [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    bad "$what: launcher exit $rc after ${took}s (want non-zero, no timeout)"
  elif ! "$PY" -c "import sys; sys.exit(0 if $took < $BOUND else 1)"; then
    bad "$what: took ${took}s (bound ${BOUND}s)"
  elif grep -q "rank(s) $rank did not arrive" "$log"; then
    grep -q "lockstep: fatal on rank .*mpi \(allreduce\|broadcast\|allgather\|barrier\) (rank .*collective #[0-9]" "$log" \
      && ok "$what: exit $rc after ${took}s, named rank $rank and the collective" \
      || bad "$what: message lacks the operation: $(grep 'did not arrive' "$log" | head -1)"
  elif [ "$sig" = KILL ] && grep -q "process rank $rank with PID .* exited on signal 9" "$log"; then
    ok "$what: exit $rc after ${took}s, mpirun named rank $rank"
  else
    bad "$what: rank $rank not named (rc=$rc, ${took}s): $(grep -i 'fatal\|rank' "$log" | head -3)"
  fi
}

fault_case 2 1 "phase=start-up" KILL
fault_case 2 1 "phase=start-up" STOP
fault_case 2 1 "collective=150" KILL
fault_case 2 1 "collective=150" STOP
fault_case 2 1 "phase=evaluation" KILL
fault_case 2 1 "phase=evaluation" STOP
fault_case 2 0 "phase=checkpoint write" KILL
fault_case 2 0 "phase=checkpoint write" STOP
fault_case 4 2 "phase=start-up" STOP
fault_case 4 3 "collective=150" STOP
fault_case 4 1 "phase=evaluation" KILL
fault_case 4 0 "phase=checkpoint write" STOP
# The 2nd evaluation costs what the 1st did: even with the default long-phase
# budget (600 s) peers give up after the collectives' own deadline.
fault_case 2 1 "phase=evaluation@2" STOP --set comm.long_phase_s=600
# A rank that dies while the ranks make their shared gradient buffer.
fault_case 2 1 "phase=shared buffer" KILL
# Weights of their own (strategy.share_weights false): ranks on one node sum the
# gradient inside the update and meet at barriers instead of an all-reduce.
fault_case 2 1 "collective=150" KILL --set strategy.share_weights=false
fault_case 2 1 "collective=150" STOP --set strategy.share_weights=false
echo "# tried $TRIED_KILL kill points and $TRIED_STOP freeze points; worst time to exit ${WORST}s (bound ${BOUND}s)"
# Nothing left in /dev/shm by the failed jobs: a lockstep-PID-* object whose
# process no longer runs is a leak (those of tests running beside this one live).
leaks=""
for f in /dev/shm/lockstep-*; do
  [ -e "$f" ] || continue
  pid=${f#/dev/shm/lockstep-}
  kill -0 "${pid%%-*}" 2>/dev/null || leaks="$leaks $f"
done
[ -z "$leaks" ] && ok "the failed jobs left no shared-memory object in /dev/shm" || bad "left in /dev/shm:$leaks"
finish
