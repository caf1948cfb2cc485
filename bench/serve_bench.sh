#!/usr/bin/env bash
# The serving benchmark on loopback: the Fashion-MNIST MLP (one epoch) served with
# batching on and off, each loaded by build/bench/serve_bench (CLIENTS clients,
# single-row requests, ROUNDS rounds of ROUND_SECONDS s), then onnxruntime in
# process on the exported model. Prints the CPU model and load first. Variables:
# CLIENTS=16 ROUNDS=3 ROUND_SECONDS=3 BATCH=64 (max batch size) WAIT_US=0 THREADS=64.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-16}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_ROUND=${ROUND_SECONDS:-3}
BATCH=${BATCH:-64}
WAIT_US=${WAIT_US:-0}
THREADS=${THREADS:-64}
LS=build/lockstep
OUT=build/serve_bench
mkdir -p "$OUT"

echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p datasets
[ -f datasets/fashion_mnist.h5 ] ||
  $LS convert idx --dir /usr/share/datasets/fashion-mnist --out datasets/fashion_mnist.h5 >/dev/null
CFG=configs/fashion_mnist_mlp.yaml
SETS=(--set train.epochs=1 --set "output.dir=$OUT/run")
[ -f "$OUT/run/model.h5" ] || $LS train $CFG "${SETS[@]}" >"$OUT/train.log" 2>&1

SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; true' EXIT
bench_server() {  # LABEL SERVE-ARGS...
  local label=$1 port=
  shift
  $LS serve $CFG "${SETS[@]}" --checkpoint "$OUT/run/model.h5" --port 0 --threads "$THREADS" "$@" \
    >"$OUT/serve_$label.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do
    port=$(grep -o 'http://127.0.0.1:[0-9]*' "$OUT/serve_$label.log" | cut -d: -f3) && [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "serve did not start: $(cat "$OUT/serve_$label.log")" >&2; exit 1; }
  build/bench/serve_bench --port "$port" --clients "$CLIENTS" --rounds "$ROUNDS" --seconds "$SECONDS_PER_ROUND" \
    --label "$label ($*)"
  kill -TERM "$SERVER"
  wait "$SERVER" || true
  SERVER=
  echo "# server: $(tail -1 "$OUT/serve_$label.log")"
}
bench_server batching_on --max-batch-size "$BATCH" --batch-timeout-micros "$WAIT_US"
bench_server batching_off --max-batch-size 0

$LS export $CFG "${SETS[@]}" --checkpoint "$OUT/run/model.h5" --out "$OUT/model.onnx" --overwrite >/dev/null
if PYV=$(launch/pyenv.sh onnxruntime | tail -n 1); then
  "$PYV" bench/onnx_rate.py "$OUT/model.onnx" "$SECONDS_PER_ROUND"
else
  echo "# onnxruntime: SKIPPED (launch/pyenv.sh could not install it)"
fi
