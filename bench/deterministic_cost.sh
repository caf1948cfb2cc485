#!/usr/bin/env bash
# What train.deterministic costs on the reference job: `lockstep train` of
# configs/fashion_mnist_mlp.yaml as shipped, the normal mode and the
# deterministic one alternated ROUNDS times (EPOCHS epochs each), so both see
# the same machine load; prints the training ms/step of every run (train_seconds
# of --metrics-out over the steps, evaluation excluded), the medians and their
# ratio. Also a check: every deterministic run must end with the same test loss.
#   bench/deterministic_cost.sh [ROUNDS=5] [EPOCHS=2] [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
EPOCHS=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
LS=${LOCKSTEP_BINARY:-build/lockstep}
CFG=configs/fashion_mnist_mlp.yaml
OUT=$(mktemp -d /tmp/lockstep-detcost.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
[ -f datasets/fashion_mnist.h5 ] || "$LS" convert idx --dir /usr/share/datasets/fashion-mnist --out datasets/fashion_mnist.h5

run() {  # MODE [--set ...]: prints "ms_per_step test_loss"
  local mode=$1
  shift
  "$LS" train "$CFG" --set train.epochs="$EPOCHS" --set train.progress=false --set train.deterministic="$mode" \
    --set output.dir="$OUT/run" --overwrite --metrics-out "$OUT/m.jsonl" "$@" >"$OUT/log" 2>&1 ||
    { echo "run failed: $(tail -2 "$OUT/log")" >&2; exit 1; }
  /usr/bin/python3 - "$OUT/m.jsonl" <<'PYEOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ep = [r for r in recs if not r.get("final")]
fin = [r for r in recs if r.get("final")][0]
print("%.4f %r" % (1e3 * sum(r["train_seconds"] for r in ep) / sum(r["steps"] for r in ep), fin["test_loss"]))
PYEOF
}

echo "# lockstep deterministic_cost: $CFG, $EPOCHS epochs per run, $ROUNDS rounds, $(nproc) CPUs"
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
grep -m1 "replicas in sync" <("$LS" train "$CFG" --set train.epochs=1 --set train.deterministic=true \
  --set output.dir="$OUT/plan" "$@" 2>&1) | sed 's/^/# /' || true
printf '%6s %-14s %10s\n' round mode ms/step
printf '%6s %-14s %10s\n' "" "" "(train)"
normal=() det=() losses=()
for r in $(seq "$ROUNDS"); do
  read -r ms _ < <(run false "$@"); normal+=("$ms"); printf '%6d %-14s %10.3f\n' "$r" normal "$ms"
  read -r ms loss < <(run true "$@"); det+=("$ms"); losses+=("$loss"); printf '%6d %-14s %10.3f\n' "$r" deterministic "$ms"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mn=$(median "${normal[@]}") md=$(median "${det[@]}")
printf '# median ms/step: normal %.3f, deterministic %.3f, ratio %.2fx\n' "$mn" "$md" "$(awk -v a="$md" -v b="$mn" 'BEGIN {print a / b}')"
if [ "$(printf '%s\n' "${losses[@]}" | sort -u | wc -l)" -eq 1 ]; then
  echo "OK (every deterministic run: test loss ${losses[0]})"
else
  echo "FAILED: deterministic runs ended with different test losses: ${losses[*]}"; exit 1
fi
