#!/usr/bin/env bash
# Signals under mpirun. (1) SIGTERM to mpirun: OpenMPI 4.1 waits
# odls_base_sigkill_timeout seconds, forwards SIGTERM, waits as long again, then
# SIGKILLs; with its default of 1 s a checkpoint write longer than that is cut
# off. The launch scripts raise it (CHECKPOINT_GRACE); here a 2 s on-signal write
# (LOCKSTEP_FAULT SLEEP2 on rank 0) survives with 6 s (room for a loaded machine)
# and is lost with 1 s.
# (2) A rank frozen with SIGSTOP is named by its peer; when mpirun resumes it
# (SIGCONT) it must say it was stopped, not blame the peer that waited.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for s in single_node.sh multi_node.sh; do
  grep -q -- '--mca odls_base_sigkill_timeout "$CHECKPOINT_GRACE"' "$LOCKSTEP_SOURCE_DIR/launch/$s" &&
    ok "launch/$s gives the ranks CHECKPOINT_GRACE seconds after SIGTERM" || bad "launch/$s lacks odls_base_sigkill_timeout"
done
"$PY" - <<'PYEOF'
import h5py, numpy as np
rng = np.random.default_rng(1)
with h5py.File("big.h5", "w") as f:
    f.attrs["num_classes"] = 3
    for s, n in (("train", 20000), ("test", 200)):
        g = f.create_group(s)
        g.create_dataset("x", data=rng.integers(0, 256, size=(n, 4, 4), dtype=np.uint8))
        g.create_dataset("y", data=rng.integers(0, 3, size=(n,)).astype(np.int32))
PYEOF
cat > sig.yaml <<YAML
data: {path: big.h5, scale: 0.0039}
model: {layers: [{units: 256}, {units: 256}]}
train: {epochs: 1000, batch_size: 40, eval_batch_size: 100, progress: false}
checkpoint: {every_epoch: false}
YAML

# The job is far longer than the test (1000 epochs): SIGTERM always finds it
# training. timeout (--foreground: it signals mpirun alone, not the ranks) passes
# SIGTERM on to mpirun and ends a run that ignores it.
# Each rank writes its own log file: what mpirun forwards is lost when it kills.
term_case() {  # GRACE_S OUT_DIR: SIGTERM to mpirun once epoch 2 trains; prints the checkpoints left
  LOCKSTEP_FAULT="0:phase=checkpoint write:SLEEP2" OMPI_MCA_odls_base_sigkill_timeout=$1 \
    timeout --foreground -k 10 120 mpirun --oversubscribe -np 2 -x LOCKSTEP_FAULT \
    sh -c 'exec "$0" train sig.yaml --set output.dir="$1" >"$1.rank$OMPI_COMM_WORLD_RANK.log" 2>&1' \
    "$LS" "$2" >"$2.mpirun.log" 2>&1 &
  local pid=$! i
  for i in $(seq 300); do grep -qs "^Epoch 2/" "$2.rank0.log" && break; sleep 0.1; done
  kill -TERM $pid
  wait $pid
  ls "$2/checkpoints" 2>/dev/null | grep -c '^ckpt-' || true
}
n=$(term_case 6 grace)
[ "$n" -eq 1 ] && grep -q "rank 0 sleeps 2 s at phase checkpoint write" grace.rank0.log &&
  grep -q "interrupted by SIGTERM after step [0-9]*; checkpoint grace/checkpoints/ckpt-[0-9]*.h5" grace.rank0.log &&
  ok "odls_base_sigkill_timeout 6: the 2 s on-signal checkpoint is written" || bad "grace 6 s: $n checkpoint(s): rank 0: $(grep lockstep: grace.rank0.log | tail -3) rank 1: $(grep lockstep: grace.rank1.log | tail -2) mpirun: $(tail -3 grace.mpirun.log)"
# With 1 s the ranks are killed before the 2 s write ends, or (on a slow
# machine) before it starts: either way no checkpoint may appear.
n=$(term_case 1 nograce)
started=$(grep -c "rank 0 sleeps 2 s at phase checkpoint write" nograce.rank0.log || true)
[ "$n" -eq 0 ] &&
  ok "OpenMPI's default (1 s) leaves no checkpoint (the write started: $started; what the setting is for)" ||
  bad "grace 1 s: $n checkpoint(s): $(tail -3 nograce.rank0.log)"

# A frozen rank resumed by mpirun (SIGCONT, then 6 s before SIGTERM).
cat > stop.yaml <<YAML
data: {path: big.h5, scale: 0.0039}
model: {layers: [{units: 16, activation: tanh}]}
train: {epochs: 3, batch_size: 40, eval_batch_size: 100, progress: false}
comm: {timeout_s: 2, long_phase_s: 3}
output: {dir: stop, save_model: false}
YAML
# Each rank writes its own log (mpirun's forwarding loses the last lines of a
# killed job); 6 s between SIGCONT and SIGKILL leave a loaded machine room.
LOCKSTEP_FAULT="1:collective=150:STOP" OMPI_MCA_odls_base_sigkill_timeout=6 timeout --foreground 90 \
  mpirun --oversubscribe -np 2 -x LOCKSTEP_FAULT \
  sh -c 'exec "$0" train stop.yaml >"stop.rank$OMPI_COMM_WORLD_RANK.log" 2>&1' "$LS" >stop.log 2>&1
rc=$?
cat stop.rank0.log stop.rank1.log >>stop.log 2>/dev/null
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "fatal on rank 0 .*rank(s) 1 did not arrive" stop.log &&
   grep -q "fatal on rank 1 .*this process was stopped for [0-9.]* s" stop.log && ! grep -q "rank(s) 0 did not arrive" stop.log; then
  ok "rank 0 names the frozen rank 1; rank 1, resumed, says it was stopped and blames no one"
else
  bad "frozen rank: rc=$rc $(grep 'fatal' stop.log | cut -c1-300)"
fi
finish
