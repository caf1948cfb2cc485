#!/usr/bin/env bash
# Checkpoints and exact resume: a run resumed from any checkpoint (mid-epoch or
# at an epoch end) or after SIGTERM ends with weights and optimizer state BITWISE
# equal to the uninterrupted run; a full disk, a corrupt newest checkpoint, a
# different config and a NaN loss are handled without losing the last good state.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
make_tiny_dataset tiny.h5 1000
cat > cfg.yaml <<YAML
data: {path: tiny.h5, scale: 0.0039}
model: {layers: [{units: 32, activation: relu, dropout: 0.2}]}
optimizer: {name: adam, learning_rate: 0.002}
train: {epochs: 3, batch_size: 40, eval_batch_size: 100, progress: false}
checkpoint: {every_steps: 7, keep: 100}
output: {dir: full}
YAML
"$LS" train cfg.yaml >full.log 2>&1 && ok "uninterrupted run" || bad "full run: $(tail -3 full.log)"
ls full/checkpoints > ckpts.txt
# 25 steps per epoch: 7 and 14 are mid-epoch 1, 25 is the end of epoch 1, 49 mid-epoch 2.
for step in 7 25 49 70; do
  f=$(printf 'full/checkpoints/ckpt-%010d.h5' $step)
  rm -rf r$step && mkdir -p r$step
  if "$LS" train cfg.yaml --set output.dir=r$step --resume "$f" >r$step.log 2>&1 &&
     same_state full/model.h5 r$step/model.h5; then
    ok "resume from step $step: bitwise equal final state"
  else
    bad "resume from step $step: $(grep -E 'lockstep|resume' r$step.log | tail -2)"
  fi
done

# SIGTERM mid-run: a checkpoint at the step boundary, exit 143, then --resume auto.
"$PY" - <<'PYEOF'
import h5py, numpy as np
rng = np.random.default_rng(1)
with h5py.File("big.h5", "w") as f:
    f.attrs["num_classes"] = 3
    for s, n in (("train", 8000), ("test", 500)):
        g = f.create_group(s)
        g.create_dataset("x", data=rng.integers(0, 256, size=(n, 4, 4), dtype=np.uint8))
        g.create_dataset("y", data=rng.integers(0, 3, size=(n,)).astype(np.int32))
PYEOF
# Two replica threads: each one's report of the signal must name the checkpoint
# that replica 0 wrote (whichever thread's report is printed). The signal comes
# when epoch 1's line is out: while epoch 2 trains, or in epoch 2's evaluation
# (the 3rd entry: one per replica and epoch), which sleeps 2 s, so the run is
# still going on a fast machine and the test needs no model big enough to be slow.
BIG=(--set data.path=big.h5 --set checkpoint.every_steps=0 --set train.epochs=4
     --set 'model.layers=[{units: 128}, {units: 128}]' --set strategy.local_replicas=2)
"$LS" train cfg.yaml "${BIG[@]}" --set output.dir=bigfull >bigfull.log 2>&1 || bad "big run: $(tail -2 bigfull.log)"
LOCKSTEP_FAULT="0:phase=evaluation@3:SLEEP2" "$LS" train cfg.yaml "${BIG[@]}" --set output.dir=sig >sig.log 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q "^Epoch 1/4" sig.log && break; sleep 0.05; done  # mid-run
kill -TERM $pid
wait $pid
rc=$?
if [ $rc -eq 143 ] && grep -q "interrupted by SIGTERM after step [0-9]*; checkpoint sig/checkpoints/ckpt-" sig.log; then
  ok "SIGTERM: exit 143, $(grep -o 'after step [0-9]*; checkpoint [^ ]*' sig.log)"
else
  bad "SIGTERM: rc=$rc $(tail -2 sig.log)"
fi
"$LS" train cfg.yaml "${BIG[@]}" --set output.dir=sig --resume auto >sig2.log 2>&1 &&
  same_state bigfull/model.h5 sig/model.h5 && ok "resume auto after SIGTERM: bitwise equal" ||
  bad "resume after SIGTERM: $(grep -E 'lockstep|resume' sig2.log | tail -2)"

# Another replica count may resume (and says so); results agree closely, not bitwise.
"$LS" train cfg.yaml --set output.dir=r2 --set strategy.local_replicas=2 \
  --resume full/checkpoints/ckpt-0000000049.h5 >r2.log 2>&1 &&
  grep -q "written with 1 replicas in sync, continuing with 2" r2.log &&
  ok "resume with 2 replicas is allowed and says so" || bad "2 replicas: $(tail -2 r2.log)"

# A checkpoint of 2 replicas sharing one copy resumes with a copy per replica
# (strategy.share_weights false): the same final weights and slots, bitwise.
"$LS" train cfg.yaml --set output.dir=sh2 --set strategy.local_replicas=2 >sh2.log 2>&1 &&
  "$LS" train cfg.yaml --set output.dir=own2 --set strategy.local_replicas=2 --set strategy.share_weights=false \
    --resume sh2/checkpoints/ckpt-0000000049.h5 >own2.log 2>&1 &&
  same_state sh2/model.h5 own2/model.h5 &&
  ok "resume with a copy of the weights per replica: bitwise equal to the shared run" ||
  bad "share_weights false resume: $(grep -E 'lockstep|resume' own2.log | tail -2)"

# Resuming a run that already ended trains nothing and reports the model's real
# test result (the same line as the run that wrote it), not an empty evaluation.
last=$(ls full/checkpoints | tail -1)
"$LS" train cfg.yaml --set output.dir=end --resume "full/checkpoints/$last" >end.log 2>&1 &&
  grep -q "nothing left to train" end.log &&
  [ "$(grep '^test:' end.log | sed 's/, [0-9.]* s total//')" = "$(grep '^test:' full.log | sed 's/, [0-9.]* s total//')" ] &&
  ok "resume at the end ($last): nothing trained, same test result" ||
  bad "resume at the end: $(grep '^test:' full.log end.log; tail -2 end.log)"

# Past the end of fewer epochs (step 49 is in epoch 2 of 3; train.epochs=1): refused
# before anything is written, since the run's record would say 1 epoch.
expect_fail 2 "ckpt-0000000049.h5: the checkpoint is in epoch 2, past the end of this run (--set: train.epochs is 1); raise train.epochs to at least 2" -- \
  "$LS" train cfg.yaml --set output.dir=past --set train.epochs=1 --resume full/checkpoints/ckpt-0000000049.h5
[ -z "$(ls -A past 2>/dev/null)" ] && ok "the refused resume wrote nothing" || bad "past/: $(ls -A past)"

# More epochs on resume stretch a cosine decay that spans the run: allowed, and said.
COS=(--set optimizer.schedule=cosine --set output.dir=cos --set train.epochs=1)
"$LS" train cfg.yaml "${COS[@]}" >cos1.log 2>&1 &&
  "$LS" train cfg.yaml "${COS[@]}" --set train.epochs=2 --resume cos/checkpoints/ckpt-0000000014.h5 >cos2.log 2>&1 &&
  grep -q "train.epochs 1 -> 2 stretches the cosine decay over 50 steps instead of 25" cos2.log &&
  grep -q "resume: settings changed since the checkpoint: train.epochs 1 -> 2" cos2.log &&
  ok "resume with more epochs says the cosine schedule changes" ||
  bad "cosine resume: $(grep resume cos2.log; tail -2 cos2.log)"

# A changed hyper-parameter is refused, naming it.
expect_fail 2 "optimizer.learning_rate is 0.1 but was 0.002" -- "$LS" train cfg.yaml \
  --set optimizer.learning_rate=0.1 --resume full/checkpoints/ckpt-0000000049.h5
expect_fail 3 "nope.h5" -- "$LS" train cfg.yaml --resume nope.h5
# A refused resume writes nothing in output.dir: a fresh run may use it next.
expect_fail 2 "optimizer.learning_rate is 0.1 but was 0.002" -- "$LS" train cfg.yaml --set output.dir=refused \
  --set optimizer.learning_rate=0.1 --resume full/checkpoints/ckpt-0000000049.h5
[ -z "$(ls -A refused 2>/dev/null)" ] && "$LS" train cfg.yaml --set output.dir=refused --set train.epochs=1 >refused.log 2>&1 &&
  ok "a refused resume leaves output.dir empty, and a fresh run uses it" ||
  bad "after a refused resume: $(ls -A refused) $(tail -2 refused.log)"

# resume auto skips a corrupt newest checkpoint and says so.
mkdir -p corrupt/checkpoints
cp full/checkpoints/ckpt-0000000049.h5 corrupt/checkpoints/
head -c 5000 full/checkpoints/ckpt-0000000056.h5 > corrupt/checkpoints/ckpt-0000000056.h5
"$LS" train cfg.yaml --set output.dir=corrupt --resume auto >corrupt.log 2>&1 &&
  grep -q "skipping corrupt/checkpoints/ckpt-0000000056.h5" corrupt.log &&
  same_state full/model.h5 corrupt/model.h5 && ok "resume auto skips a corrupt checkpoint" ||
  bad "corrupt newest: $(grep -E 'lockstep|resume' corrupt.log | tail -3)"

# A full disk: the write fails with one clear line naming the checkpoint, the
# system's reason and the checkpoint kept, exit 5 (I/O); the last good one loads.
# Two ways to fill a disk: a small tmpfs (needs root and mount) and, everywhere,
# a file-size limit (RLIMIT_FSIZE: writes past it fail with EFBIG; SIGXFSZ ignored).
check_disk_full() {  # WHAT RC LOG DIR REASON
  local what=$1 rc=$2 log=$3 dir=$4 reason=$5
  local good tmp
  good=$(ls "$dir" | grep -c '^ckpt-.*\.h5$')
  tmp=$(ls -a "$dir" | grep -c tmp || true)
  if [ "$rc" -eq 5 ] && [ "$(grep -c 'lockstep: error' "$log")" -eq 1 ] &&
     grep -q "^lockstep: error: cannot write checkpoint $dir/ckpt-[0-9]*\.h5: $reason; $dir/ckpt-[0-9]*\.h5 kept$" "$log" &&
     [ "$good" -ge 1 ] && [ "$tmp" -eq 0 ] &&
     "$LS" evaluate cfg.yaml --set 'model.layers=[{units: 1000}]' --checkpoint "$dir/$(ls "$dir" | tail -1)" >/dev/null 2>&1; then
    ok "$what: exit 5, $(grep 'lockstep: error' "$log" | sed 's/.*: \([^:;]*\); .*/\1/'), the last good checkpoint loads, no temp file left"
  else
    bad "$what: rc=$rc good=$good tmp=$tmp $(grep lockstep "$log")"
  fi
}
mkdir -p disk
if mount -t tmpfs -o size=700k tmpfs disk 2>/dev/null; then
  "$LS" train cfg.yaml --set 'model.layers=[{units: 1000}]' --set checkpoint.dir=disk --set output.dir=diskrun \
    --set checkpoint.every_steps=3 --set output.save_model=false >disk.log 2>&1
  check_disk_full "full disk (tmpfs)" $? disk.log disk "No space left on device"
  umount disk
else
  echo "SKIPPED - full-disk check on a small tmpfs: cannot mount one here (needs root); the file-size limit below still runs"
fi
# Each checkpoint of this model is about 250 KB: the first run writes one, the
# resumed run under a 100 KB limit cannot write the next.
"$LS" train cfg.yaml --set 'model.layers=[{units: 1000}]' --set checkpoint.dir=fsize --set output.dir=fsizerun \
  --set train.epochs=1 --set checkpoint.every_steps=0 --set output.save_model=false >fsize1.log 2>&1
(trap '' XFSZ; ulimit -f 100; exec "$LS" train cfg.yaml --set 'model.layers=[{units: 1000}]' --set checkpoint.dir=fsize \
  --set output.dir=fsizerun --set train.epochs=2 --set checkpoint.every_steps=0 --set output.save_model=false \
  --resume auto >fsize2.log 2>&1)
check_disk_full "file-size limit" $? fsize2.log fsize "File too large"

# NaN: stop naming the step, and no checkpoint holds it; or skip when asked.
rm -rf nan
# Linear layers and SGD at rate 1000 overflow the logits within a few steps.
NAN=(--set optimizer.name=sgd --set optimizer.learning_rate=1000 --set optimizer.momentum=0.9
     --set 'model.layers=[{units: 32, activation: linear}]')
"$LS" train cfg.yaml --set output.dir=nan "${NAN[@]}" --set checkpoint.every_steps=1 >nan.log 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -qE "the loss is NaN or infinite|gradient holds NaN" nan.log; then
  ok "NaN/Inf stops: $(grep -oE 'step [0-9]* \(epoch [0-9]*, step [0-9]*\): [^;]*' nan.log)"
else
  bad "NaN: rc=$rc $(tail -2 nan.log)"
fi
"$PY" - nan/checkpoints <<'PYEOF' && ok "no checkpoint holds NaN/Inf" || bad "a checkpoint holds NaN/Inf"
import sys, os, h5py, numpy as np
d = sys.argv[1]
for f in os.listdir(d):
    h = h5py.File(os.path.join(d, f), "r")
    h.visit(lambda n: None if not isinstance(h[n], h5py.Dataset) else
            (_ for _ in ()).throw(AssertionError(f + ":" + n)) if not np.all(np.isfinite(h[n][()])) else None)
PYEOF
"$LS" train cfg.yaml --set output.dir=nanskip "${NAN[@]}" \
  --set train.on_nonfinite=skip --set train.epochs=2 >skip.log 2>&1 && grep -q "update was skipped" skip.log &&
  ok "on_nonfinite: skip keeps going" || bad "skip: $(tail -2 skip.log)"
# A finite pixel of 1e35 gives a finite loss and a gradient beyond 2^63, which
# Adam would square past float's range (its slot v Inf for good, the weight
# frozen, the model file unloadable): training stops naming the limit, or skips
# the step when asked, and the model file stays finite.
"$PY" - <<'PYEOF'
import h5py, numpy as np
rng = np.random.default_rng(2)
with h5py.File("huge.h5", "w") as f:
    f.attrs["num_classes"] = 3
    for s, n in (("train", 400), ("test", 100)):
        g = f.create_group(s)
        x = rng.random((n, 4, 4), dtype=np.float32)
        if s == "train":
            x[10, 2, 2] = 1e35
        g.create_dataset("x", data=x)
        g.create_dataset("y", data=rng.integers(0, 3, size=(n,)).astype(np.int32))
PYEOF
HUGE=(--set data.path=huge.h5 --set data.scale=1 --set checkpoint.every_steps=0 --set train.epochs=2)
"$LS" train cfg.yaml "${HUGE[@]}" --set output.dir=huge >huge.log 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "beyond 2^63" huge.log && ok "a gradient beyond 2^63 stops training, naming the limit" ||
  bad "huge gradient: rc=$rc $(tail -2 huge.log)"
"$LS" train cfg.yaml "${HUGE[@]}" --set output.dir=hugeskip --set train.on_nonfinite=skip >hugeskip.log 2>&1 &&
  grep -q "update was skipped" hugeskip.log && "$PY" - hugeskip/model.h5 <<'PYEOF' &&
import sys, h5py, numpy as np
h = h5py.File(sys.argv[1], "r")
h.visit(lambda n: None if not isinstance(h[n], h5py.Dataset) or h[n].dtype.kind != "f" else
        (_ for _ in ()).throw(AssertionError(n)) if not np.all(np.isfinite(h[n][()])) else None)
PYEOF
  ok "skipped, and every weight and optimizer slot of the model file is finite" ||
  bad "huge gradient, skip: $(tail -2 hugeskip.log)"
# An epoch whose every step was skipped trained on no rows: its loss and accuracy
# are null in metrics.jsonl, not a clean-looking 0.
"$PY" - nanskip/metrics.jsonl <<'PYEOF' && ok "an all-skipped epoch reports null loss and accuracy" || bad "all-skipped epoch: $(tail -1 nanskip/metrics.jsonl)"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"epoch"' in l and '"loss"' in l]
prev, seen = 0, 0
for r in recs:
    skipped = r["skipped_steps"] - prev
    prev = r["skipped_steps"]
    if skipped == r["steps"]:
        seen += 1
        assert r["loss"] is None and r.get("accuracy") is None, r
    else:
        assert r["loss"] is not None, r
assert seen >= 1, "no epoch had every step skipped: " + str(recs)
PYEOF
finish
