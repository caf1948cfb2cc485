#!/usr/bin/env bash
# train.deterministic end to end: the model file (weights and optimizer slots)
# of 1 replica, 4 threads and 2 ranks x 2 threads is bitwise the same, and so
# is a run interrupted with one replica and resumed with two; the training loss
# each epoch reports is exact too. Bad micro-batch settings are one clear error.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
make_tiny_dataset tiny.h5 1000
cat > cfg.yaml <<YAML
data: {path: tiny.h5, scale: 0.0039}
model: {layers: [{units: 32, activation: relu, dropout: 0.2}]}
optimizer: {name: adam, learning_rate: 0.002}
train: {epochs: 2, batch_size: 40, eval_batch_size: 100, progress: false,
        deterministic: true, micro_batch_size: 5}
checkpoint: {every_steps: 7, keep: 100}
output: {dir: one}
YAML
train_loss() { grep -v final "$1" | "$PY" -c 'import sys, json; print([json.loads(l)["loss"] for l in sys.stdin])'; }

"$LS" train cfg.yaml --metrics-out one.jsonl >one.log 2>&1 || bad "1 replica: $(tail -2 one.log)"
grep -q "deterministic: the global batch of 40 is 8 micro-batches of 5 rows" one.log &&
  ok "the plan names the micro-batches" || bad "plan: $(grep -i determin one.log)"

"$LS" train cfg.yaml --set output.dir=four --set strategy.local_replicas=4 --metrics-out four.jsonl \
  >four.log 2>&1 || bad "4 threads: $(tail -2 four.log)"
same_state one/model.h5 four/model.h5 && ok "4 threads: bitwise the weights and slots of 1 replica" ||
  bad "4 threads differ from 1 replica"
[ "$(train_loss one.jsonl)" = "$(train_loss four.jsonl)" ] && ok "4 threads: the same training loss, exactly" ||
  bad "training loss: $(train_loss one.jsonl) vs $(train_loss four.jsonl)"

mpirun --oversubscribe -np 2 "$LS" train cfg.yaml --set output.dir=mpi --set strategy.local_replicas=2 \
  >mpi.log 2>&1 || bad "2 ranks x 2 threads: $(grep -m2 error mpi.log)"
same_state one/model.h5 mpi/model.h5 && ok "2 ranks x 2 threads: bitwise the same" ||
  bad "2 ranks x 2 threads differ from 1 replica"

# Interrupted after step 7 of the 1-replica run, resumed with 2 replicas: 25
# steps per epoch, so this is mid-epoch, and the result is the uninterrupted one.
"$LS" train cfg.yaml --set output.dir=resumed --set strategy.local_replicas=2 \
  --resume one/checkpoints/ckpt-0000000007.h5 >resumed.log 2>&1 || bad "resume: $(tail -2 resumed.log)"
grep -q "bitwise the weights of either count" resumed.log && same_state one/model.h5 resumed/model.h5 &&
  ok "written with 1 replica, resumed with 2: bitwise the uninterrupted run" ||
  bad "resume with another count: $(grep resume resumed.log)"

# 8 replicas cannot share 4 micro-batches; 7 does not divide 40.
expect_fail 2 "key 'train.micro_batch_size'.*run 1, 2, 4 replicas" -- \
  "$LS" train cfg.yaml --set train.micro_batch_size=10 --set strategy.local_replicas=8 --set output.dir=x
expect_fail 2 "key 'train.micro_batch_size': 7 does not divide the global batch 40" -- \
  "$LS" train cfg.yaml --set train.micro_batch_size=7
# Evaluation trains nothing: no micro-batch split to check.
"$LS" evaluate cfg.yaml --checkpoint one/model.h5 --set train.micro_batch_size=10 \
  --set strategy.local_replicas=8 >eval.log 2>&1 && grep -q "^evaluate one/model.h5" eval.log &&
  ok "evaluate with 8 replicas and 4 micro-batches: not refused" || bad "evaluate: $(tail -2 eval.log)"
finish
