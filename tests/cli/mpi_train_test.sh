#!/usr/bin/env bash
# The lockstep binary under mpirun: 1 process, 2 ranks and 2 ranks x 2 local
# replicas train to the same result; evaluation counts every test example once
# (333 does not divide by 2 or 4); a rank with a different config stops the job
# at start with a message naming the key; bad layouts are clear errors.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun --oversubscribe -np 2)
make_tiny_dataset tiny.h5 1000
cat > cfg.yaml <<YAML
data: {path: tiny.h5, scale: 0.0039}
model: {layers: [{units: 16, activation: tanh}]}
optimizer: {name: sgd, learning_rate: 0.05, momentum: 0.9}
train: {epochs: 2, batch_size: 40, eval_batch_size: 100, progress: false}
output: {save_model: false}
YAML

"$LS" train cfg.yaml --set output.dir=one --metrics-out one.jsonl >one.log 2>&1 && ok "1 process" || bad "1 process: $(tail -3 one.log)"
"${MPI[@]}" "$LS" train cfg.yaml --set output.dir=two --metrics-out two.jsonl >two.log 2>&1 && ok "2 ranks" || bad "2 ranks: $(tail -3 two.log)"
"${MPI[@]}" "$LS" train cfg.yaml --set output.dir=four --set strategy.local_replicas=2 --metrics-out four.jsonl >four.log 2>&1 \
  && ok "2 ranks x 2 local" || bad "2x2: $(tail -3 four.log)"
grep -q "2 process(es) x 2 local replica(s) = 4 replicas in sync (hierarchical; between processes: shm (" four.log \
  && ok "plan names the hierarchical layout" || bad "plan line: $(grep replicas four.log)"
"$PY" - one.jsonl two.jsonl four.jsonl <<'PYEOF' && ok "same result for 1, 2 and 4 replicas" || bad "results differ"
import json, sys
finals = [[json.loads(l) for l in open(p) if '"final"' in l][0] for p in sys.argv[1:]]
for f in finals:
    assert f["examples"] == 333, f          # every test example exactly once
for f in finals[1:]:
    assert abs(f["test_loss"] - finals[0]["test_loss"]) < 1e-5, (f, finals[0])
print([round(f["test_loss"], 7) for f in finals])
PYEOF

# A rank with another seed: the job ends at start, naming the key, non-zero.
cat > other_seed.sh <<SH
#!/usr/bin/env bash
extra=()
[ "\${OMPI_COMM_WORLD_RANK:-0}" = 1 ] && extra=(--set train.seed=3)
exec "$LS" train cfg.yaml "\${extra[@]}"
SH
chmod +x other_seed.sh
start=$(date +%s)
timeout 60 "${MPI[@]}" ./other_seed.sh >seed.log 2>&1
rc=$?
took=$(( $(date +%s) - start ))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "train.seed = 3 (rank 0 has train.seed = 42)" seed.log && [ $took -lt 30 ]; then
  ok "mismatched seed stops the job in ${took}s naming train.seed"
else
  bad "mismatched seed: rc=$rc after ${took}s: $(grep lockstep: seed.log)"
fi
# A rank with another model: the same, naming the layers on both sides.
cat > other_model.sh <<SH
#!/usr/bin/env bash
extra=()
[ "\${OMPI_COMM_WORLD_RANK:-0}" = 1 ] && extra=(--set 'model.layers=[{units: 5, activation: tanh}]')
exec "$LS" train cfg.yaml "\${extra[@]}"
SH
chmod +x other_model.sh
timeout 60 "${MPI[@]}" ./other_model.sh >model.log 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "rank 1: model.layers = - {units: 5, activation: tanh" model.log; then
  ok "mismatched model stops the job naming model.layers"
else
  bad "mismatched model: rc=$rc: $(grep lockstep: model.log)"
fi
timeout 60 "${MPI[@]}" "$LS" train cfg.yaml --set strategy.local_replicas=3 >div.log 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "does not divide by num_replicas_in_sync 6" div.log \
  && ok "global batch not dividing by 2 x 3 replicas" || bad "divide: rc=$rc $(grep lockstep: div.log)"
finish
