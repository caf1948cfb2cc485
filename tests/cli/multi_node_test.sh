#!/usr/bin/env bash
# The inter-node path on one machine: LOCKSTEP_TEST_RANKS_PER_NODE=K (tests only,
# comm/README.md "Bootstrap") makes the node split treat each K consecutive ranks
# as one node. `mpirun -np 4` with K=2 then trains as 2 nodes (MPI between the
# processes, shared memory among each process's replica threads) and must end with
# weights and optimizer slots bitwise equal to the same 4 ranks on one node (shm
# between processes, and one copy of the weights and slots for the node, each
# replica updating its shard); the plan names the node count and where the
# weights are kept. A K that is not a positive
# integer or does not divide the rank count stops the job with a message naming it.
# With strategy.share_weights false (a copy per replica) the model is the same.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset LOCKSTEP_TEST_RANKS_PER_NODE
make_tiny_dataset tiny.h5 800
cat > cfg.yaml <<YAML
data: {path: tiny.h5, scale: 0.0039}
model: {layers: [{units: 16, activation: tanh}]}
optimizer: {name: adam, learning_rate: 0.01}
train: {epochs: 2, batch_size: 40, eval_batch_size: 100, progress: false}
YAML

for local in 1 2; do
  one=one$local two=two$local
  mpirun --oversubscribe -np 4 "$LS" train cfg.yaml --set output.dir=$one \
    --set strategy.local_replicas=$local >$one.log 2>&1 || bad "one node, local $local: $(tail -3 $one.log)"
  mpirun --oversubscribe -np 4 -x LOCKSTEP_TEST_RANKS_PER_NODE=2 "$LS" train cfg.yaml --set output.dir=$two \
    --set strategy.local_replicas=$local >$two.log 2>&1 || bad "2 nodes, local $local: $(tail -3 $two.log)"
  grep -q "between processes: shm (.*) on 1 node)" $one.log && ok "plan: 1 node (local $local)" ||
    bad "one-node plan: $(grep 'replicas in sync' $one.log)"
  grep -q "between processes: mpi on 2 nodes)" $two.log && ok "plan: 2 nodes (local $local)" ||
    bad "two-node plan: $(grep 'replicas in sync' $two.log)"
  grep -q "weights and optimizer slots: one copy for the node's 4 processes (shared memory); each of the $((4 * local)) replicas updates its shard" $one.log &&
    ok "plan: one copy of the weights for the node (local $local)" || bad "one-node weights: $(grep -i 'weights' $one.log)"
  if [ $local = 1 ]; then
    ! grep -q "weights and optimizer slots" $two.log && ok "plan: 2 nodes, 1 replica per process, no shards" ||
      bad "two-node weights (local 1): $(grep -i 'weights' $two.log)"
  else
    grep -q "weights and optimizer slots: one copy per process; each of its 2 replicas updates its shard" $two.log &&
      ok "plan: one copy of the weights per process on 2 nodes" || bad "two-node weights: $(grep -i 'weights' $two.log)"
  fi
  same_state $one/model.h5 $two/model.h5 && ok "2 nodes bitwise equal to 1 node (4 ranks x $local local)" ||
    bad "2 nodes differ from 1 node (4 ranks x $local local)"
done

# strategy.share_weights false: every replica of every process keeps its own copy
# and runs the whole update; the same model, bitwise.
mpirun --oversubscribe -np 4 "$LS" train cfg.yaml --set output.dir=own --set strategy.local_replicas=2 \
  --set strategy.share_weights=false >own.log 2>&1 || bad "share_weights false: $(tail -3 own.log)"
grep -q "weights and optimizer slots: one copy per replica (strategy.share_weights: false); each runs the whole update" own.log &&
  ok "plan: one copy of the weights per replica" || bad "share_weights false plan: $(grep -i 'weights' own.log)"
same_state one2/model.h5 own/model.h5 && ok "weights of their own: bitwise equal to the node's one copy (4 ranks x 2 local)" ||
  bad "share_weights false differs from the shared copy"
# One replica per process and a copy each: on one node the ranks sum the
# gradient inside the update, through memory they all map; on 2 nodes they
# cannot, and all-reduce it. The same model as the node's one copy, bitwise.
for nodes in 1 2; do
  mpirun --oversubscribe -np 4 -x LOCKSTEP_TEST_RANKS_PER_NODE=$((4 / nodes)) "$LS" train cfg.yaml     --set output.dir=own1n$nodes --set strategy.local_replicas=1 --set strategy.share_weights=false     >own1n$nodes.log 2>&1 || bad "share_weights false, 1 local, $nodes node(s): $(tail -3 own1n$nodes.log)"
  same_state one1/model.h5 own1n$nodes/model.h5 &&
    ok "weights of their own, 4 ranks x 1 local on $nodes node(s): bitwise equal to the node's one copy" ||
    bad "share_weights false, 4 ranks x 1 local on $nodes node(s), differs from the shared copy"
done
grep -q "summing its slice of the replicas' gradients in it (no all-reduce; the gradients in memory the node's processes share)" own1n1.log &&
  ok "plan: 1 node, the ranks sum inside the update" || bad "one-node own-copies plan: $(grep -i 'weights' own1n1.log)"
grep -q "one copy per replica (strategy.share_weights: false); each runs the whole update$" own1n2.log &&
  ok "plan: 2 nodes, the ranks all-reduce" || bad "two-node own-copies plan: $(grep -i 'weights' own1n2.log)"

refused() {  # NP K PATTERN
  timeout 60 mpirun --oversubscribe -np "$1" -x LOCKSTEP_TEST_RANKS_PER_NODE="$2" "$LS" train cfg.yaml \
    --set output.dir=bad >bad.log 2>&1
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q -- "LOCKSTEP_TEST_RANKS_PER_NODE=$2 is not $3" bad.log; then
    ok "K=$2 with $1 ranks refused: $(grep -m1 'lockstep: error' bad.log | cut -c1-140)"
  else
    bad "K=$2 with $1 ranks: rc=$rc: $(head -3 bad.log)"
  fi
}
refused 4 3 "a divisor of the 4 ranks"
refused 2 0 "a positive integer"
refused 2 -2 "a positive integer"
refused 2 two "a positive integer"
finish
