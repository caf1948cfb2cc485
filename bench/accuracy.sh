#!/usr/bin/env bash
# Test accuracy of the reference experiment over seeds, lockstep beside PyTorch
# (bench/pytorch_mlp.py, same data file, same hyper-parameters).
#   bench/accuracy.sh [EPOCHS] [SEEDS]     e.g. bench/accuracy.sh 10 1,2,3,4,5
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-10}
SEEDS=${2:-1,2,3,4,5}
DATA=${DATA:-datasets/fashion_mnist.h5}
OUT=$(mktemp -d)
accs=()
for s in ${SEEDS//,/ }; do
  build/lockstep train configs/fashion_mnist_mlp.yaml --set "data.path=$DATA" \
    --set train.epochs="$EPOCHS" --set train.seed="$s" --set train.progress=false \
    --set output.save_model=false --set checkpoint.every_epoch=false --set "output.dir=$OUT/run$s" \
    --metrics-out "$OUT/m$s.jsonl" >/dev/null
  accs+=("$(python3 -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if 'final' in l][0]['test_accuracy'])" "$OUT/m$s.jsonl")")
done
python3 - "$EPOCHS" "${accs[@]}" <<'PY'
import statistics, sys
accs = [float(a) for a in sys.argv[2:]]
print(f"lockstep: {sys.argv[1]} epochs, test accuracy per seed {accs}, median {statistics.median(accs):.4f}")
PY
if /usr/bin/python3 -c "import torch, h5py" 2>/dev/null; then
  /usr/bin/python3 bench/pytorch_mlp.py --data "$DATA" --epochs "$EPOCHS" --seeds "$SEEDS"
fi
rm -rf "$OUT"
