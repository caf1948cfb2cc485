#!/usr/bin/env bash
# End to end on the real data: convert Debian's Fashion-MNIST IDX files, train
# the reference MLP for 2 epochs, and check the metrics file against a band
# (measured over seeds; see bench/README.md), that the loss falls, and that evaluating
# the saved model reproduces the final test accuracy exactly.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
IDX=/usr/share/datasets/fashion-mnist
if [ ! -f "$IDX/train-images-idx3-ubyte.gz" ]; then
  echo "FAIL - $IDX is missing: install dataset-fashion-mnist (launch/setup.sh does)"; exit 1
fi
"$LS" convert idx --dir "$IDX" --out fm.h5 >convert.log 2>&1 && ok "convert" || bad "convert: $(cat convert.log)"
CFG=$LOCKSTEP_SOURCE_DIR/configs/fashion_mnist_mlp.yaml
"$LS" train "$CFG" --set data.path=fm.h5 --set train.epochs=2 --set output.dir=out \
  --metrics-out metrics.jsonl >train.log 2>&1 && ok "train 2 epochs" || bad "train: $(tail -5 train.log)"
cat train.log
"$PY" - metrics.jsonl <<'PYEOF' && ok "metrics in band" || bad "metrics out of band"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
epochs = [r for r in recs if not r.get("final")]
final = [r for r in recs if r.get("final")]
assert [r["epoch"] for r in epochs] == [1, 2], epochs
for r in epochs:
    for k in ("loss", "accuracy", "val_loss", "val_accuracy", "samples_per_sec", "seconds"):
        assert k in r, (k, r)
assert epochs[1]["loss"] < epochs[0]["loss"], "training loss did not fall"
assert len(final) == 1 and final[0]["examples"] == 10000, final
acc = final[0]["test_accuracy"]
print("test_accuracy after 2 epochs:", acc)
# Band for 2 epochs of the reference config (see bench/README.md for how it was measured).
assert 0.835 <= acc <= 0.885, acc
assert abs(final[0]["test_accuracy"] - epochs[-1]["val_accuracy"]) < 1e-12
PYEOF
"$LS" evaluate "$CFG" --set data.path=fm.h5 --checkpoint out/model.h5 --metrics-out eval.jsonl \
  >eval.log 2>&1 && ok "evaluate saved model" || bad "evaluate: $(cat eval.log)"
"$PY" - metrics.jsonl eval.jsonl <<'PYEOF' && ok "saved model reproduces the test accuracy" || bad "evaluate differs"
import json, sys
final = [json.loads(l) for l in open(sys.argv[1]) if '"final"' in l][0]
ev = json.loads(open(sys.argv[2]).readline())
assert ev["test_accuracy"] == final["test_accuracy"], (ev, final)
assert abs(ev["test_loss"] - final["test_loss"]) < 1e-9, (ev, final)
PYEOF
"$LS" predict "$CFG" --checkpoint out/model.h5 --input fm.h5 --output pred.h5 >pred.log 2>&1 &&
  "$LS" predict "$CFG" --checkpoint out/model.h5 --input fm.h5 --output pred.jsonl >>pred.log 2>&1 &&
  ok "predict to HDF5 and JSON" || bad "predict: $(cat pred.log)"
"$PY" - metrics.jsonl pred.h5 pred.jsonl fm.h5 <<'PYEOF' && ok "predictions match the labels as often as test_accuracy says" || bad "predictions"
import json, sys, h5py, numpy as np
final = [json.loads(l) for l in open(sys.argv[1]) if '"final"' in l][0]
p = h5py.File(sys.argv[2], "r")
probs, classes = p["probabilities"][()], p["classes"][()]
y = h5py.File(sys.argv[4], "r")["test/y"][()]
assert probs.shape == (10000, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
assert (classes == probs.argmax(1)).all()
assert (classes == y).mean() == final["test_accuracy"], ((classes == y).mean(), final)
rows = [json.loads(l) for l in open(sys.argv[3])]
assert [r["class"] for r in rows] == classes.tolist()
PYEOF
expect_fail 3 "missing.h5" -- "$LS" predict "$CFG" --checkpoint out/model.h5 --input missing.h5 --output x.h5
expect_fail 2 "exists" -- "$LS" predict "$CFG" --checkpoint out/model.h5 --input fm.h5 --output pred.h5
finish
