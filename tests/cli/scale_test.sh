#!/usr/bin/env bash
# lockstep scale on a tiny job: every layout measured (threads, and 2 ranks
# under mpirun), scaling.json's efficiencies recomputed from its own samples/s,
# scaling.md holding the same rows, weak mode growing the global batch, a PNG,
# and bad options rejected with one error line.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
make_tiny_dataset tiny.h5 960
cat > cfg.yaml <<YAML
data: {path: tiny.h5, scale: 0.0039}
model: {layers: [{units: 8, activation: relu}]}
train: {epochs: 1, batch_size: 32, eval_batch_size: 100}
YAML
RANKS=1
command -v mpirun >/dev/null && RANKS=1,2
"$LS" scale cfg.yaml --replicas 1,2 --ranks "$RANKS" --steps 40 --warmup 5 --out strong >strong.log 2>&1 &&
  ok "scale --replicas 1,2 --ranks $RANKS" || bad "scale: $(tail -5 strong.log)"
"$PY" - strong "$RANKS" <<'PYEOF' && ok "scaling.json: every layout, efficiencies from its own samples/s, the same rows in scaling.md" || bad "scaling report"
import json, sys, os
d = sys.argv[1]; ranks = [int(r) for r in sys.argv[2].split(",")]
j = json.load(open(d + "/scaling.json"))
lay = j["layouts"]
assert j["mode"] == "strong" and j["steps"] == 40
assert sorted((p["ranks"], p["local_replicas"]) for p in lay) == sorted((r, k) for r in ranks for k in (1, 2)), lay
base = lay[0]
assert base["replicas"] == 1
for p in lay:
    assert p["replicas"] == p["ranks"] * p["local_replicas"] and p["global_batch"] == 32 and p["steps"] == 40
    assert p["samples_per_sec"] > 0 and abs(p["samples_per_sec"] - 40 * 32 / p["seconds"]) < 1e-6 * p["samples_per_sec"]
    eff = (p["samples_per_sec"] / p["replicas"]) / (base["samples_per_sec"] / base["replicas"])
    assert abs(p["efficiency"] - eff) < 1e-9, (p, eff)
    assert abs(p["speedup"] - p["samples_per_sec"] / base["samples_per_sec"]) < 1e-9
    assert all(p[k] >= 0 for k in ("step_ms", "compute_ms", "allreduce_wait_ms", "input_wait_ms", "optimizer_ms"))
    assert p["allreduce_wait_ms"] > 0 or p["replicas"] == 1, p
md = open(d + "/scaling.md").read()
for p in lay:
    row = "| %d x %d | %d | 32 | %.0f | %.2fx | %.2f |" % (p["ranks"], p["local_replicas"], p["replicas"],
                                                         p["samples_per_sec"], p["speedup"], p["efficiency"])
    assert row in md, (row, md)
png = open(d + "/scaling.png", "rb").read(8)
assert png == b"\x89PNG\r\n\x1a\n", png
PYEOF
"$LS" scale cfg.yaml --replicas 1,2 --mode weak --steps 20 --warmup 2 --out weak >weak.log 2>&1 &&
  "$PY" -c "
import json; l = json.load(open('weak/scaling.json'))['layouts']
assert [(p['replicas'], p['global_batch']) for p in l] == [(1, 32), (2, 64)], l" &&
  ok "weak mode keeps 32 rows per replica" || bad "weak: $(tail -3 weak.log)"
# A projection from an alpha-beta file: a separate table marked as a model.
printf 'alpha_us: 5\nbandwidth_gbps: 10\nreplicas: [8, 16]\n' > ring.yaml
"$LS" scale cfg.yaml --replicas 1,2 --steps 20 --warmup 2 --project ring.yaml --out proj >proj.log 2>&1 &&
  "$PY" - proj <<'PYEOF' && ok "projection: ring model of the measured step, marked as a model" || bad "projection: $(tail -3 proj.log)"
import json, sys
j = json.load(open(sys.argv[1] + "/scaling.json"))
big, base = j["layouts"][-1], j["layouts"][0]
pr = j["projection"]
assert pr["kind"] == "model, not a measurement" and [p["replicas"] for p in pr["layouts"]] == [8, 16]
assert big["gradient_bytes"] == 168 * 4  # 163 parameters and the 5 extras of the last bucket (src/step.h)
for p in pr["layouts"]:
    n = p["replicas"]
    ring = 2 * (n - 1) * 5e-3 + 2 * (n - 1) / n * big["gradient_bytes"] / 10e9 * 1e3   # ms
    assert abs(p["allreduce_ms"] - ring) < 1e-12, (p, ring)
    step = big["compute_ms"] * big["replicas"] / n + big["input_wait_ms"] + big["optimizer_ms"] + ring
    assert abs(p["step_ms"] - step) < 1e-9 and abs(p["samples_per_sec"] - 32e3 / step) < 1e-6 * p["samples_per_sec"]
md = open(sys.argv[1] + "/scaling.md").read()
assert "Projection: a MODEL, not a measurement" in md and "| 16 | 32 |" in md
PYEOF
printf 'alpha_us: 5\nbandwidth: 10\n' > bad.yaml
expect_fail 2 "unknown key 'bandwidth'" -- "$LS" scale cfg.yaml --project bad.yaml --out x
expect_fail 2 "--mode" -- "$LS" scale cfg.yaml --mode sideways --out x
expect_fail 2 "train.batch_size" -- "$LS" scale cfg.yaml --replicas 3 --steps 2 --out x
expect_fail 2 "--out" -- "$LS" scale cfg.yaml --replicas 1
finish
