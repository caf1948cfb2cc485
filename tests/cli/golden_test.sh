#!/usr/bin/env bash
# Golden baseline: the committed short run (tests/golden/golden.yaml on
# make_data.py's dataset) must match tests/golden/baseline.json — exactly on the
# machine kind that wrote it, within the documented tolerances on another CPU,
# BLAS or build. Also: the record agrees with an independent NumPy reading of
# the run folder, verify is exact when the environment matches and tolerant when
# a numeric entry changed (faked here), and a moved value or config fails (exit 6).
source "$(dirname "$0")/lib.sh"
cd "$WORK"
G=$LOCKSTEP_SOURCE_DIR/tests/golden
"$PY" "$G/make_data.py" golden.h5
"$LS" train "$G/golden.yaml" --set output.dir=run >train.log 2>&1 && ok "golden run trains" || bad "golden run: $(tail -3 train.log)"

# The committed baseline (CI's drift check). How to refresh it on purpose: README "Golden baselines".
"$LS" verify "$G/baseline.json" run >committed.log 2>&1
rc=$?
cat committed.log
[ $rc -eq 0 ] && ok "matches the committed baseline ($(grep '^comparison' committed.log))" ||
  bad "committed baseline: exit $rc"

# A real change of numeric environment: the GEMM library's AVX2 kernels instead of
# the ones it picks here (oneDNN: ONEDNN_MAX_CPU_ISA; OpenBLAS: OPENBLAS_CORETYPE);
# the run still verifies (within tolerance when the kernel changed, exactly when
# this machine has nothing above AVX2 or the build uses Eigen).
ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell "$LS" train "$G/golden.yaml" --set output.dir=haswell >haswell_train.log 2>&1
"$LS" verify "$G/baseline.json" haswell >haswell.log 2>&1 && ok "AVX2 GEMM kernels: $(grep '^comparison' haswell.log)" ||
  bad "AVX2 GEMM kernels: $(grep -E 'MOVED|comparison|error' haswell.log)"

# The deterministic promise, checked by verify: 2 replica threads against the
# 1-replica baseline (weights, slots and training loss bitwise; evaluation to 1e-12).
"$LS" train "$G/golden.yaml" --set output.dir=two --set strategy.local_replicas=2 >two_train.log 2>&1
"$LS" verify "$G/baseline.json" two >two.log 2>&1 && grep -q "local_replicas: 1 -> 2 (a deterministic run: allowed)" two.log &&
  ok "2 replicas verify against the 1-replica baseline ($(grep '^comparison' two.log))" ||
  bad "2 replicas: $(grep -E 'MOVED|config|comparison|error' two.log | head -3)"

# The weight checksum's interval only decides how often the weights are read:
# another strategy.check_every verifies, and its line says it is allowed.
"$LS" train "$G/golden.yaml" --set output.dir=checks --set strategy.check_every=1 >checks_train.log 2>&1
"$LS" verify "$G/baseline.json" checks >checks.log 2>&1 &&
  grep -q "strategy.check_every: .* -> 1 (a check that only reads the weights: allowed)" checks.log &&
  ok "another strategy.check_every verifies ($(grep '^comparison' checks.log))" ||
  bad "strategy.check_every: $(grep -E 'MOVED|config|comparison|error' checks.log | head -3)"

"$LS" baseline run --out fresh.json >base.log 2>&1 && ok "baseline of the run folder alone" || bad "baseline: $(cat base.log)"
# Independent check of the record: weights hash (FNV-1a 64 over the arena: the
# last layer first, kernel then bias per layer), the fixed-example predictions (softmax of the MLP, NumPy),
# and the metrics, from the run's own files.
"$PY" - fresh.json run <<'PYEOF' && ok "baseline record agrees with NumPy" || bad "baseline record differs from NumPy"
import sys, json, h5py, numpy as np
rec, run = json.load(open(sys.argv[1])), sys.argv[2]
def fnv(b):
    h = 1469598103934665603
    for c in b:
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h
m = h5py.File(run + "/model.h5", "r")
layers = sorted(m["weights"].keys(), key=lambda n: int(n.split("_")[1]))
arena = b"".join(m["weights"][l][p][()].astype("<f4").tobytes() for l in reversed(layers) for p in ("kernel", "bias"))
assert rec["weights"]["hash"] == fnv(arena), "weights hash"
slots = b"".join(m["optimizer"][s][()].astype("<f4").tobytes() for s in sorted(m["optimizer"].keys()))
assert rec["weights"]["optimizer_hash"] == fnv(slots), "optimizer hash"
x = h5py.File("golden.h5", "r")["test"]["x"][:16].reshape(16, -1).astype(np.float64) * np.float32(0.0039)
h = x
for i, l in enumerate(layers):
    h = h @ m["weights"][l]["kernel"][()] + m["weights"][l]["bias"][()]
    if i + 1 < len(layers):
        h = np.maximum(h, 0)
p = np.exp(h - h.max(axis=1, keepdims=True)); p /= p.sum(axis=1, keepdims=True)
assert np.abs(p - np.array(rec["predictions"]["values"])).max() < 1e-5, "predictions"
lines = [json.loads(l) for l in open(run + "/metrics.jsonl")]
final = [l for l in lines if l.get("final")][-1]
assert rec["final"]["test_loss"] == final["test_loss"] and rec["final"]["examples"] == 60
assert [e["val_loss"] for e in rec["epochs"]] == [l["val_loss"] for l in lines if "epoch" in l]
PYEOF

"$LS" verify fresh.json run >same.log 2>&1 && grep -q "^comparison: exact" same.log &&
  ok "same environment: exact comparison passes" || bad "exact self-check: $(tail -3 same.log)"

fake() {  # IN OUT PYTHON-STATEMENTS on the record r
  "$PY" - "$1" "$2" "$3" <<'PYEOF'
import sys, json
r = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(r, open(sys.argv[2], "w"))
PYEOF
}
# Another CPU: an ISA and a BLAS no x86 machine running this test reports, so the
# entries differ from the run's whatever CPU the test runs on.
CPU='r["environment"]["cpu_isa"] = "aarch64: asimd sve"; r["environment"]["blas"] = "OpenBLAS (kernel NEOVERSEV1)"'
# Another CPU: within tolerance passes, naming the changed entries.
fake fresh.json zen.json "$CPU; r['final']['test_loss'] += 1e-4; r['weights']['hash'] = '0'; r['predictions']['digest'] = '0'"
"$LS" verify zen.json run >zen.log 2>&1
rc=$?
[ $rc -eq 0 ] && grep -q "^comparison: within tolerances" zen.log && grep -q "cpu_isa .*" zen.log &&
  grep -q "(affects numerics)" zen.log && ok "numeric environment changed: tolerant comparison passes, names cpu_isa and blas" ||
  bad "tolerance path: exit $rc $(cat zen.log)"
# The same small change with the environment unchanged is drift: exit 6.
fake fresh.json tiny.json "r['final']['test_loss'] += 1e-4"
expect_rc() {  # CODE PATTERN LOG -- CMD...
  local code=$1 pattern=$2 log=$3; shift 4
  "$@" >"$log" 2>&1
  local rc=$?
  [ $rc -eq "$code" ] && grep -q -- "$pattern" "$log" && ok "exit $rc: $(grep -m1 -- "$pattern" "$log" | tr -s ' ' | cut -c1-100)" ||
    bad "want exit $code and '$pattern', got $rc: $(tail -5 "$log")"
}
expect_rc 6 "final test_loss .*MOVED" tiny.log -- "$LS" verify tiny.json run
fake fresh.json hash.json "r['weights']['hash'] = '0123456789abcdef'"
expect_rc 6 "weights hash .*MOVED" hash.log -- "$LS" verify hash.json run
# Another CPU but a real drift (beyond the tolerance): exit 6 with the table.
fake fresh.json drift.json "$CPU; r['epochs'][1]['val_accuracy'] -= 0.05"
expect_rc 6 "epoch 2 val_accuracy .*±0.02 .*MOVED" drift.log -- "$LS" verify drift.json run
# A changed config is named.
"$LS" train "$G/golden.yaml" --set output.dir=seed --set train.seed=8 >seed.log 2>&1
expect_rc 6 "config differs: train.seed: 7 -> 8" seedv.log -- "$LS" verify fresh.json seed
# Without deterministic mode the number of replicas in sync decides the result,
# their layout does not: 2 ranks verify exactly against a 2-thread baseline, 1
# replica does not (exit 6, naming the counts).
ND="--set train.deterministic=false --set train.micro_batch_size=auto"
"$LS" train "$G/golden.yaml" $ND --set output.dir=nd_threads --set strategy.local_replicas=2 >nd_threads.log 2>&1 &&
  "$LS" baseline nd_threads --out nd.json >nd_base.log 2>&1 || bad "2-thread baseline: $(tail -2 nd_threads.log nd_base.log)"
mpirun --oversubscribe -np 2 "$LS" train "$G/golden.yaml" $ND --set output.dir=nd_ranks --set strategy.local_replicas=1 \
  >nd_ranks.log 2>&1 || bad "2 ranks: $(grep -m2 error nd_ranks.log)"
expect_rc 0 "local_replicas: 2 -> 1 (the same replicas in sync, laid out otherwise: allowed)" nd_ranksv.log -- \
  "$LS" verify nd.json nd_ranks
grep -q "^verify: OK: .* (exactly)" nd_ranksv.log && ok "2 ranks against 2 threads: exact" || bad "2 ranks: $(tail -3 nd_ranksv.log)"
"$PY" -c "import json; m = json.load(open('nd_ranks/manifest.json')); assert (m['processes'], m['replicas_in_sync']) == (2, 2), m" &&
  ok "the 2-rank run's manifest: 2 processes, 2 replicas in sync" || bad "2-rank manifest layout"
"$LS" train "$G/golden.yaml" $ND --set output.dir=nd_one >nd_one.log 2>&1
expect_rc 6 "replicas in sync differ: 2 -> 1 (the gradient sums run over another number of replicas" nd_onev.log -- \
  "$LS" verify nd.json nd_one
# Bad inputs.
expect_fail 3 "nobaseline.json: missing" -- "$LS" verify nobaseline.json run
expect_fail 3 "golden.h5: not valid JSON" -- "$LS" verify golden.h5 run
expect_fail 3 "norun: not a folder" -- "$LS" baseline norun --out x.json
mkdir -p half && cp run/manifest.json run/config.yaml half/ && head -2 run/metrics.jsonl > half/metrics.jsonl
expect_fail 3 "no final record" -- "$LS" baseline half --out x.json
# A baseline is never replaced by accident: an existing file is refused (exit 2,
# unchanged), --overwrite replaces it; a folder or a missing folder is refused.
cp fresh.json keep.json && echo '{"edited": true}' > fresh.json && cp fresh.json edited.json
expect_fail 2 "fresh.json: already exists; refusing to overwrite it (pass --overwrite" -- "$LS" baseline run --out fresh.json
cmp -s fresh.json edited.json && ok "the refused baseline left the file as it was" || bad "refused baseline changed the file"
"$LS" baseline run --out fresh.json --overwrite >ow.log 2>&1 && cmp -s fresh.json keep.json &&
  ok "--overwrite replaces the baseline with the same record" || bad "baseline --overwrite: $(tail -2 ow.log)"
expect_fail 2 "nofolder/b.json: folder nofolder does not exist" -- "$LS" baseline run --out nofolder/b.json
expect_fail 2 "is a folder; name a file to write (e.g. half/baseline.json)" -- "$LS" baseline run --out half
finish
