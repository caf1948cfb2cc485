#!/usr/bin/env bash
# What seeing inside a run costs on the real job: the shipped config on
# Fashion-MNIST for EPOCHS epochs, variants alternated round by round so they
# share the machine's state: plain, output.tensorboard on (batch_loss every 100
# steps), --trace on (300 steps), and with BASE=other/lockstep a second binary
# (e.g. one built without these hooks) run plain. Prints each variant's median
# and best training samples/s over all epochs of all rounds, the median step
# time where the binary reports it, and each one's ratio to plain.
#   bench/observability.sh [ROUNDS] [EPOCHS]        e.g. BASE=/tmp/base/lockstep bench/observability.sh 7 2
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
EPOCHS=${2:-2}
DATA=${DATA:-datasets/fashion_mnist.h5}
BASE=${BASE:-}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
common=(configs/fashion_mnist_mlp.yaml --set "data.path=$DATA" --set "train.epochs=$EPOCHS"
        --set train.progress=false --set output.save_model=false --set checkpoint.every_epoch=false)
variants=(plain tensorboard trace)
[ -n "$BASE" ] && variants+=(base)
for r in $(seq "$ROUNDS"); do
  for v in "${variants[@]}"; do
    dir=(--set "output.dir=$OUT/run-$v-$r")  # a fresh run folder each time
    case $v in
      plain) build/lockstep train "${common[@]}" "${dir[@]}" --metrics-out "$OUT/$v.$r.jsonl" ;;
      tensorboard) build/lockstep train "${common[@]}" "${dir[@]}" --set output.tensorboard=true --metrics-out "$OUT/$v.$r.jsonl" ;;
      trace) build/lockstep train "${common[@]}" "${dir[@]}" --trace "$OUT/trace.json" --metrics-out "$OUT/$v.$r.jsonl" ;;
      base) "$BASE" train "${common[@]}" "${dir[@]}" --metrics-out "$OUT/$v.$r.jsonl" ;;
    esac >/dev/null
  done
done
python3 - "$OUT" "${variants[@]}" <<'PY'
import glob, json, statistics, sys
out, variants = sys.argv[1], sys.argv[2:]
def recs(v):
    return [json.loads(l) for f in sorted(glob.glob(f"{out}/{v}.*.jsonl")) for l in open(f) if '"final"' not in l]
plain = recs("plain")
p_med = statistics.median(r["samples_per_sec"] for r in plain)
p_best = max(r["samples_per_sec"] for r in plain)
p_step = statistics.median(r["step_ms"] for r in plain) if "step_ms" in plain[0] else None
print("# samples/s: training only, per epoch; best = the fastest epoch (least disturbed by other load);")
print("# step ms: the median of each epoch's median step (input wait + train_step), where the binary reports it")
print(f"{'variant':<12} {'epochs':>6} {'median samples/s':>17} {'ratio':>6} {'best samples/s':>15} {'ratio':>6} {'step ms':>8} {'ratio':>6}")
for v in variants:
    rs = recs(v)
    med = statistics.median(r["samples_per_sec"] for r in rs)
    best = max(r["samples_per_sec"] for r in rs)
    line = f"{v:<12} {len(rs):>6} {med:>17.0f} {med / p_med:>6.3f} {best:>15.0f} {best / p_best:>6.3f}"
    if p_step and "step_ms" in rs[0]:
        st = statistics.median(r["step_ms"] for r in rs)
        line += f" {st:>8.4f} {st / p_step:>6.3f}"
    print(line)
PY
