#!/usr/bin/env bash
# Seeing inside a run: TensorBoard event files read back with TensorBoard's own
# reader (tags, steps and values against the metrics JSON), the --trace timeline
# (tracks, spans, window, all-reduce bytes counted by hand), under threads and
# MPI ranks, and the per-epoch step breakdown with its end-of-run line.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
make_tiny_dataset tiny.h5 960   # 960 train rows: 30 steps of 32 per epoch
cat > cfg.yaml <<YAML
data: {path: tiny.h5, scale: 0.0039}
model: {layers: [{units: 8, activation: relu}]}
optimizer: {name: adam, learning_rate: 0.01}
train: {epochs: 2, batch_size: 32, eval_batch_size: 100, progress: false}
strategy: {local_replicas: 2, check_every: 5}
output: {dir: out, tensorboard: true, tensorboard_every_steps: 1}
YAML
# 16 features -> 8 -> 3 classes: 16*8+8 + 8*3+3 = 163 parameters, plus the 5
# values (loss, correct, rows, stop, replicas over the gradient bound) that ride
# the last bucket: 168 floats.
BYTES=$((168 * 4))

"$LS" train cfg.yaml --metrics-out m.jsonl --trace trace.json --trace-steps 10 >train.log 2>&1 &&
  ok "train with TensorBoard and --trace" || bad "train: $(tail -5 train.log)"

grep -q "^where the time went: .* of a step at 2 replicas (median step" train.log &&
  ok "end-of-run line: $(grep '^where the time went' train.log | cut -c1-90)" || bad "no end-of-run line: $(tail -3 train.log)"

"$PY" - m.jsonl <<'PYEOF' && ok "every epoch record has the step breakdown" || bad "step breakdown"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"final"' not in l]
assert len(recs) == 2
for r in recs:
    parts = [r[k] for k in ("compute_ms", "allreduce_wait_ms", "input_wait_ms", "optimizer_ms")]
    assert all(p >= 0 for p in parts) and r["step_ms"] > 0, r
    assert r["compute_ms"] > 0 and r["allreduce_wait_ms"] > 0, r   # 2 replicas all-reduce every step
    # every part of a step is at most the step, so its median is at most the step's median
    assert max(parts) <= r["step_ms"] + 1e-9, r
PYEOF

"$PY" - trace.json "$BYTES" <<'PYEOF' && ok "timeline: 2 tracks, 10 steps each, spans nested, all-reduce bytes by hand" || bad "timeline"
import json, sys, collections
doc = json.load(open(sys.argv[1])); want_bytes = int(sys.argv[2])
meta = doc["metadata"]
assert (meta["first_step"], meta["last_step"], meta["replicas"], meta["dropped_spans"]) == (21, 30, 2, 0), meta
ev = [e for e in doc["traceEvents"] if e["ph"] == "X"]
names = {e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
assert names == {"rank 0 replica 0", "rank 0 replica 1"}, names
for tid in (0, 1):
    mine = [e for e in ev if e["tid"] == tid and e["pid"] == 0]
    by = collections.defaultdict(list)
    for e in mine: by[e["name"]].append(e)
    for n in ("input wait", "forward", "backward", "all-reduce", "optimizer"):
        assert sorted(e["args"]["step"] for e in by[n]) == list(range(21, 31)), (tid, n)
    assert len(by["evaluation"]) == 2, (tid, by["evaluation"])       # one per epoch
    assert [e["args"]["step"] for e in by["weight checksum"]] == [25, 30], by["weight checksum"]
    assert len(by["checkpoint write"]) == (2 if tid == 0 else 0)
    for e in by["all-reduce"]:
        assert e["args"]["bytes"] == want_bytes and e["args"]["backend"], e
    for s in range(21, 31):
        f = [e for e in by["forward"] if e["args"]["step"] == s][0]
        b = [e for e in by["backward"] if e["args"]["step"] == s][0]
        o = [e for e in by["optimizer"] if e["args"]["step"] == s][0]
        i = [e for e in by["input wait"] if e["args"]["step"] == s][0]
        eps = 0.002  # us: printed with 3 decimals
        assert i["ts"] + i["dur"] <= f["ts"] + eps and f["ts"] + f["dur"] <= b["ts"] + eps, (i, f, b)
        assert b["ts"] + b["dur"] <= o["ts"] + eps, (b, o)
PYEOF

# The files are TensorBoard's: read them with its own reader.
TBPY=$("$LOCKSTEP_SOURCE_DIR/launch/pyenv.sh" tensorboard 2>pyenv.log | tail -n 1) || TBPY=
case $TBPY in /*|"") ;; *) TBPY=$LOCKSTEP_SOURCE_DIR/$TBPY ;; esac  # pyenv.sh prints it from the source root
if [ -n "$TBPY" ] && [ -x "$TBPY" ]; then
  "$TBPY" - out/tensorboard m.jsonl <<'PYEOF' && ok "TensorBoard's EventAccumulator reads tags, steps and values equal to the metrics" || bad "TensorBoard read-back"
import json, sys, math
from tensorboard.backend.event_processing import event_accumulator as ea
recs = [json.loads(l) for l in open(sys.argv[2]) if '"final"' not in l]
def load(sub):
    a = ea.EventAccumulator(sys.argv[1] + "/" + sub, size_guidance={ea.SCALARS: 0}); a.Reload()
    return {t: [(s.step, s.value) for s in a.Scalars(t)] for t in a.Tags()["scalars"]}
train, val = load("train"), load("validation")
assert set(train) == {"epoch_loss", "epoch_accuracy", "learning_rate", "samples_per_sec", "batch_loss"}, train.keys()
assert set(val) == {"epoch_loss", "epoch_accuracy"}, val.keys()
def close(a, b): return math.isclose(a, b, rel_tol=2e-7, abs_tol=1e-12)   # stored as float32
for tag, src, key in (("epoch_loss", train, "loss"), ("epoch_accuracy", train, "accuracy"),
                      ("learning_rate", train, "learning_rate"), ("samples_per_sec", train, "samples_per_sec"),
                      ("epoch_loss", val, "val_loss"), ("epoch_accuracy", val, "val_accuracy")):
    assert [s for s, _ in src[tag]] == [0, 1], (tag, src[tag])
    for (step, v), r in zip(src[tag], recs):
        assert close(v, r[key]), (tag, step, v, r[key])
b = train["batch_loss"]
assert [s for s, _ in b] == list(range(1, 61)), b
# Every batch has 32 rows, so an epoch's loss is the mean of its 30 batch losses.
for e in range(2):
    mean = sum(v for _, v in b[30 * e:30 * e + 30]) / 30
    assert math.isclose(mean, recs[e]["loss"], rel_tol=1e-5), (e, mean, recs[e]["loss"])
PYEOF
  # The reader checks every record's CRC: a flipped byte drops that record.
  mkdir -p damaged && cp out/tensorboard/validation/events.* damaged/
  "$PY" -c "import sys,glob;p=glob.glob('damaged/*')[0];b=bytearray(open(p,'rb').read());b[-6]^=1;open(p,'wb').write(b)"
  "$TBPY" - <<'PYEOF' && ok "a damaged record fails its CRC and is dropped (the intact ones pass)" || bad "CRC check"
from tensorboard.backend.event_processing import event_accumulator as ea
a = ea.EventAccumulator("damaged"); a.Reload()
assert [s.step for s in a.Scalars("epoch_loss")] == [0, 1]
assert [s.step for s in a.Scalars("epoch_accuracy")] == [0], a.Scalars("epoch_accuracy")
PYEOF
else
  echo "SKIPPED - TensorBoard read-back: pip cannot install tensorboard here ($(tail -1 pyenv.log))"
fi

# strategy.overlap: the bucket reducer threads get tracks of their own.
"$LS" train cfg.yaml --set strategy.overlap=true --set train.epochs=1 --set output.dir=ov \
  --trace ov.json --trace-steps 5 >ov.log 2>&1 && "$PY" - ov.json "$BYTES" <<'PYEOF' &&
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X"]
red = [e for e in ev if e["tid"] >= 1000 and e["name"] == "all-reduce"]
assert sorted({e["tid"] for e in red}) == [1000, 1001], red
assert all(e["args"]["bytes"] == int(sys.argv[2]) for e in red) and len(red) == 10
assert len([e for e in ev if e["tid"] < 1000 and e["name"] == "all-reduce wait"]) == 10
PYEOF
  ok "overlap: reducer tracks with the bucket all-reduces" || bad "overlap trace: $(tail -3 ov.log)"

# Two ranks: one file, a pid per rank.
if command -v mpirun >/dev/null; then
  mpirun --oversubscribe -np 2 "$LS" train cfg.yaml --set strategy.local_replicas=1 --set train.epochs=1 \
    --set output.dir=mpi --trace mpi.json --trace-steps 4 >mpi.log 2>&1 && "$PY" - mpi.json <<'PYEOF' &&
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X"]
for pid in (0, 1):
    assert len([e for e in ev if e["pid"] == pid and e["name"] == "forward"]) == 4, pid
PYEOF
    ok "mpirun -np 2: both ranks' tracks in rank 0's file" || bad "mpi trace: $(tail -3 mpi.log)"
fi

# The event files are the run's work: a new run in the folder needs --overwrite,
# which removes them with the rest.
mkdir -p evonly && cp -r out/tensorboard evonly/
expect_fail 2 "tensorboard/train/events.out.tfevents" -- "$LS" train cfg.yaml --set output.dir=evonly
"$LS" train cfg.yaml --overwrite --set train.epochs=1 >again.log 2>&1 &&
  [ "$(ls out/tensorboard/train | wc -l)" = 1 ] && [ "$(ls out/tensorboard/validation | wc -l)" = 1 ] &&
  ok "--overwrite replaces the earlier run's event files" || bad "overwrite: $(ls -R out/tensorboard; tail -3 again.log)"
expect_fail 2 "--trace nodir/t.json: folder nodir does not exist" -- "$LS" train cfg.yaml --set output.dir=o2 --trace nodir/t.json
mkdir -p tdir
expect_fail 2 "--trace tdir: is a folder; name a file to write (e.g. tdir/trace.json)" -- \
  "$LS" train cfg.yaml --set output.dir=o5 --trace tdir
expect_fail 2 "output.tensorboard" -- "$LS" train cfg.yaml --set output.dir=o3 --set output.tensorboard=maybe
expect_fail 2 "trace-steps" -- "$LS" train cfg.yaml --set output.dir=o4 --trace t.json --trace-steps 0
mkdir -p blocked && touch blocked/tensorboard
expect_fail 1 "output.tensorboard" -- "$LS" train cfg.yaml --set output.dir=blocked
finish
