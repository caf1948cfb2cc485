#!/usr/bin/env bash
# One machine, N MPI ranks (one replica each) or one process with local replicas.
# Change the variables below, then: launch/single_node.sh [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-configs/fashion_mnist_mlp.yaml}
RANKS=${RANKS:-2}                 # MPI processes on this machine (1 = no mpirun)
LOCAL_REPLICAS=${LOCAL_REPLICAS:-1}  # replica threads per process ("auto" = one per core of the process)
MPIRUN=${MPIRUN:-mpirun}
# Seconds the ranks get to write their checkpoint after a SIGTERM/SIGINT to mpirun.
# OpenMPI 4.1's mpirun waits this long, then forwards SIGTERM, then waits this long
# again before SIGKILL (odls_base_sigkill_timeout; its default of 1 s cuts off
# any checkpoint write longer than that). Raise it for big models or slow disks.
CHECKPOINT_GRACE=${CHECKPOINT_GRACE:-10}

args=(train "$CONFIG" --set "strategy.local_replicas=$LOCAL_REPLICAS" "$@")
if [ "$RANKS" -le 1 ]; then
  exec build/lockstep "${args[@]}"
fi
extra=()
# OpenMPI refuses root unless told; more ranks than cores needs --oversubscribe.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
[ "$RANKS" -gt "$(nproc)" ] && extra+=(--oversubscribe)
# One replica per rank: bind each rank to a core. Several: leave the ranks free
# (a rank bound to one core would stack its threads there); lockstep pins each
# replica thread to a CPU of its own itself when they fit.
if [ "$LOCAL_REPLICAS" = 1 ]; then extra+=(--bind-to core); else extra+=(--bind-to none); fi
exec "$MPIRUN" -np "$RANKS" "${extra[@]}" --mca odls_base_sigkill_timeout "$CHECKPOINT_GRACE" \
  build/lockstep "${args[@]}"
