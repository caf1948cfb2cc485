#!/usr/bin/env bash
# Several machines over MPI. Every host needs the same build/lockstep path and the
# dataset at the config's data.path (or a shared filesystem). Change the variables,
# then: launch/multi_node.sh [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-configs/fashion_mnist_mlp.yaml}
HOSTFILE=${HOSTFILE:-launch/hosts.txt}  # lines like "node1 slots=8"
RANKS=${RANKS:-16}                      # total processes across the hosts
RANKS_PER_HOST=${RANKS_PER_HOST:-8}     # usually one per GPU, or per socket on CPU
LOCAL_REPLICAS=${LOCAL_REPLICAS:-1}     # replica threads inside each process
MPIRUN=${MPIRUN:-mpirun}
# Seconds the ranks get to write their checkpoint after a SIGTERM/SIGINT to mpirun
# (OpenMPI's odls_base_sigkill_timeout, default 1 s; README "Checkpoints, resume and failures").
CHECKPOINT_GRACE=${CHECKPOINT_GRACE:-10}

if [ ! -f "$HOSTFILE" ]; then
  echo "multi_node: hostfile $HOSTFILE not found: write one line per host, e.g. 'node1 slots=$RANKS_PER_HOST'" >&2
  exit 2
fi
# One replica per rank: each rank bound to a core; several: to LOCAL_REPLICAS
# cores (PE=); auto: unbound, and lockstep shares the node among its ranks.
case "$LOCAL_REPLICAS" in
  1) mapping=(--map-by "ppr:${RANKS_PER_HOST}:node" --bind-to core) ;;
  auto) mapping=(--map-by "ppr:${RANKS_PER_HOST}:node" --bind-to none) ;;
  *) mapping=(--map-by "ppr:${RANKS_PER_HOST}:node:PE=${LOCAL_REPLICAS}" --bind-to core) ;;
esac
exec "$MPIRUN" -np "$RANKS" --hostfile "$HOSTFILE" "${mapping[@]}" -x PATH -x LD_LIBRARY_PATH \
  --mca odls_base_sigkill_timeout "$CHECKPOINT_GRACE" \
  "$PWD/build/lockstep" train "$CONFIG" --set "strategy.local_replicas=$LOCAL_REPLICAS" "$@"
