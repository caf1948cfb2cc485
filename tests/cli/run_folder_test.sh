#!/usr/bin/env bash
# A run folder never loses work: a second run into a folder holding another
# run's work is refused (its files untouched) unless --resume or --overwrite;
# pruning never removes the checkpoint just written; every run leaves
# manifest.json, config.yaml (which reproduces the run) and metrics.jsonl; and
# start-up prints only the keys that differ from their defaults (--verbose: all).
source "$(dirname "$0")/lib.sh"
cd "$WORK"
make_tiny_dataset tiny.h5 200
cat > cfg.yaml <<YAML
data: {path: tiny.h5, scale: 0.0039}
model: {layers: [{units: 8, activation: relu}]}
train: {epochs: 3, batch_size: 20, eval_batch_size: 30, progress: false, seed: 1}
checkpoint: {keep: 1}
output: {dir: out}
YAML
sums() { (cd "$1" && find . -type f | sort | xargs sha256sum); }

"$LS" train cfg.yaml --metrics-out m.jsonl >a.log 2>&1 && ok "first run" || bad "first run: $(tail -2 a.log)"
sums out > before.txt
# The new user's mistake: a second run (another seed) into the same folder.
for keep in 1 3; do
  expect_fail 2 "key 'output.dir': out holds an earlier run's work (model.h5, manifest.json, config.yaml, metrics.jsonl and 1 more); continue it with --resume, replace it with --overwrite" -- \
    "$LS" train cfg.yaml --set train.seed=2 --set checkpoint.keep=$keep
done
# Two runs sharing one checkpoint.dir outside their output.dirs: the message names checkpoint.dir.
expect_fail 2 "key 'checkpoint.dir': out/checkpoints holds an earlier run's checkpoints (out/checkpoints/ckpt-.*); continue that run with --resume, replace them with --overwrite, or choose another checkpoint.dir" -- \
  "$LS" train cfg.yaml --set output.dir=other --set checkpoint.dir=out/checkpoints
sums out > after.txt
cmp -s before.txt after.txt && ok "the refused runs left every file of the first run as it was" || bad "files changed: $(diff before.txt after.txt)"

# metrics.jsonl is always written, with the records --metrics-out got.
"$PY" - out/metrics.jsonl m.jsonl <<'PYEOF' && ok "metrics.jsonl holds the --metrics-out records" || bad "metrics.jsonl differs"
import sys, json
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert len(a) == 4 and a == b, (a, b)
PYEOF
# manifest.json: run id, config hash, environment, command line, start time.
"$PY" - out/manifest.json <<'PYEOF' && ok "manifest.json has the run's record" || bad "manifest.json incomplete"
import sys, json, re
m = json.load(open(sys.argv[1]))
assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{8}", m["run_id"]), m["run_id"]
assert re.fullmatch(r"[0-9a-f]{16}", m["config_hash"])
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m["start_time"])
assert m["command_line"].endswith("train cfg.yaml --metrics-out m.jsonl"), m["command_line"]
assert m["processes"] == 1 and m["replicas_in_sync"] >= 1, (m["processes"], m["replicas_in_sync"])
for k in ("lockstep_version", "git_commit", "numeric_code", "compiler", "build_flags", "blas", "cpu_model", "cpu_isa", "mpi"):
    assert m["environment"][k], k
PYEOF
# config.yaml is the whole resolved config: training from it alone reproduces the weights bitwise.
"$LS" train out/config.yaml --set output.dir=again >again.log 2>&1 &&
  "$PY" - out/model.h5 again/model.h5 <<'PYEOF' && ok "config.yaml reproduces the run bitwise" || bad "config.yaml run differs: $(tail -2 again.log)"
import sys, h5py
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
for l in a["weights"]:
    for p in ("kernel", "bias"):
        assert a["weights"][l][p][()].tobytes() == b["weights"][l][p][()].tobytes(), (l, p)
PYEOF

# --resume continues the same run: same run id, the resume recorded, metrics appended.
id1=$("$PY" -c "import json; print(json.load(open('out/manifest.json'))['run_id'])")
"$LS" train cfg.yaml --set train.epochs=4 --resume auto >r.log 2>&1 &&
  "$PY" - out "$id1" <<'PYEOF' && ok "--resume keeps the run id, records the resume, appends metrics" || bad "resume record: $(tail -2 r.log)"
import sys, json
m = json.load(open(sys.argv[1] + "/manifest.json"))
assert m["run_id"] == sys.argv[2] and len(m["resumes"]) == 1, m
epochs = [json.loads(l).get("epoch") for l in open(sys.argv[1] + "/metrics.jsonl")]
assert epochs == [1, 2, 3, None, 4, None], epochs
PYEOF
expect_fail 2 "^lockstep: error: --resume and --overwrite exclude each other" -- "$LS" train cfg.yaml --resume --overwrite
# --overwrite: a new run replaces the earlier run's files (and only those).
echo keep-me > out/notes.txt
"$LS" train cfg.yaml --set train.seed=2 --overwrite >o.log 2>&1 && grep -q "^--overwrite: removed the earlier run's" o.log &&
  "$PY" - out "$id1" <<'PYEOF' && ok "--overwrite starts a new run and keeps unrelated files" || bad "overwrite: $(tail -2 o.log)"
import sys, json, os
m = json.load(open(sys.argv[1] + "/manifest.json"))
assert m["run_id"] != sys.argv[2] and "resumes" not in m and "train.seed=2" in m["command_line"], m
assert len(open(sys.argv[1] + "/metrics.jsonl").readlines()) == 4
assert os.listdir(sys.argv[1] + "/checkpoints") == ["ckpt-0000000030.h5"], os.listdir(sys.argv[1] + "/checkpoints")
assert open(sys.argv[1] + "/notes.txt").read() == "keep-me\n"
PYEOF

# Pruning never removes the checkpoint just written, even when an older file has
# a higher step: resume at step 10 with train.epochs 1 into a folder holding
# steps 10..30; with keep 1 the new ckpt-10 written at the epoch end must stay.
"$LS" train cfg.yaml --set output.dir=p --set checkpoint.keep=10 --set checkpoint.every_steps=5 >p.log 2>&1
ls p/checkpoints > p_before.txt
"$LS" train cfg.yaml --set output.dir=p --set train.epochs=1 --set checkpoint.keep=1 \
  --resume p/checkpoints/ckpt-0000000005.h5 >p2.log 2>&1
left=$(ls p/checkpoints | tr '\n' ' ')
[ "$(wc -l < p_before.txt)" -eq 6 ] && [ "$left" = "ckpt-0000000010.h5 " ] &&
  ok "pruning kept the new checkpoint (ckpt-10) over older higher steps" || bad "pruning left: '$left' (before: $(cat p_before.txt | tr '\n' ' ')) $(tail -2 p2.log)"

# Start-up prints only the keys that differ from the defaults; --verbose all of them.
grep -q "^config keys that differ from their defaults (all of them: out/config.yaml, or --verbose):" a.log &&
  grep -q "^train.seed  *1$" a.log && grep -q "^checkpoint.keep  *1$" a.log && ! grep -q "optimizer.beta1" a.log &&
  ok "start-up lists only non-default keys ($(sed -n '/^config keys that differ/,/^$/p' a.log | grep -c '^[a-z]') rows)" ||
  bad "start-up table: $(sed -n '/^config key/,/^$/p' a.log)"
"$LS" train cfg.yaml --set output.dir=verbose --verbose >v.log 2>&1 &&
  grep -q "^config key  *value  *meaning" v.log && grep -q "^optimizer.beta1  *0.9  *Adam" v.log &&
  ok "--verbose prints the whole table" || bad "--verbose: $(grep -c . v.log) lines"
finish
