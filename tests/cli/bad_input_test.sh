#!/usr/bin/env bash
# Bad input of every kind gets one clear "lockstep: error" line naming the file,
# key or flag and the problem, and a non-zero exit: never a crash or a hang.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
make_tiny_dataset tiny.h5
cat > good.yaml <<YAML
data: {path: tiny.h5, scale: 0.0039}
model: {layers: [{units: 8, activation: relu}]}
train: {epochs: 1, batch_size: 16, eval_batch_size: 16, progress: false}
output: {dir: out, save_model: true}
YAML

# The good config trains (the baseline the failures are measured against).
if "$LS" train good.yaml >train.log 2>&1; then ok "good config trains"; else bad "good config failed: $(cat train.log)"; fi

# command line
expect_fail 2 "frobnicate" -- "$LS" frobnicate
expect_fail 2 "unknown option '--no-such-flag' for 'lockstep train'" -- "$LS" train good.yaml --no-such-flag
expect_fail 2 "unknown option '--frob' for 'lockstep'" -- "$LS" --frob
expect_fail 2 "unknown subcommand 'frob' of 'lockstep convert' (choose idx)" -- "$LS" convert frob
expect_fail 2 "unknown option '--frob' for 'lockstep convert idx'" -- "$LS" convert idx --frob --dir x
expect_fail 2 "config" -- "$LS" train
expect_fail 2 "key=value" -- "$LS" train good.yaml --set train.epochs
expect_fail 2 "train.epochz" -- "$LS" train good.yaml --set train.epochz=3
expect_fail 2 "--metrics-out nodir/m.jsonl: folder nodir does not exist" -- "$LS" train good.yaml --metrics-out nodir/m.jsonl
# config files
expect_fail 2 "missing.yaml" -- "$LS" train missing.yaml
printf 'train: {epochs: [1\n' > broken.yaml
expect_fail 2 "not valid YAML" -- "$LS" train broken.yaml
printf 'data: {path: tiny.h5}\ntrain: {epoch: 3}\n' > unknown.yaml
expect_fail 2 "did you mean 'train.epochs'" -- "$LS" train unknown.yaml
expect_fail 2 "train.epochs.*out of range" -- "$LS" train good.yaml --set train.epochs=0
expect_fail 2 "train.batch_size.*out of range" -- "$LS" train good.yaml --set train.batch_size=-64
expect_fail 2 "train.batch_size.*expected an integer" -- "$LS" train good.yaml --set train.batch_size=abc
expect_fail 2 "optimizer.learning_rate" -- "$LS" train good.yaml --set optimizer.learning_rate=-1
expect_fail 2 "optimizer.name.*unknown value 'adagrad'" -- "$LS" train good.yaml --set optimizer.name=adagrad
expect_fail 2 "activation.*unknown value 'swish'" -- "$LS" train good.yaml --set 'model.layers=[{units: 4, activation: swish}]'
expect_fail 2 "data.path: empty value" -- "$LS" train good.yaml --set data.path=""
expect_fail 2 "does not divide" -- "$LS" train good.yaml --set strategy.local_replicas=3
expect_fail 2 "^lockstep: error: --set: key 'train.batch_size'.*fewer than one global batch" -- "$LS" train good.yaml --set train.batch_size=4096
expect_fail 2 "^lockstep: error: --set: key 'optimizer.decay_steps' must be > 0" -- "$LS" train good.yaml --set optimizer.schedule=step
expect_fail 2 "mse needs float targets" -- "$LS" train good.yaml --set model.loss=mse
# data files
expect_fail 3 "nothere.h5" -- "$LS" train good.yaml --set data.path=nothere.h5
head -c 3000 tiny.h5 > truncated.h5
expect_fail 3 "truncated.h5" -- "$LS" train good.yaml --set data.path=truncated.h5
printf 'this is not hdf5 at all' > text.h5
expect_fail 3 "text.h5" -- "$LS" train good.yaml --set data.path=text.h5
make_tiny_dataset badlabels.h5 96 7
expect_fail 3 "badlabels.h5.*label" -- "$LS" train good.yaml --set data.path=badlabels.h5
"$PY" - <<'PYEOF'
import h5py, numpy as np
with h5py.File("mismatch.h5", "w") as f:
    f.attrs["num_classes"] = 3
    for s in ("train", "test"):
        g = f.create_group(s)
        g.create_dataset("x", data=np.zeros((40, 4, 4), np.uint8))
        g.create_dataset("y", data=np.zeros((39,), np.int32))
PYEOF
expect_fail 3 "mismatch.h5" -- "$LS" train good.yaml --set data.path=mismatch.h5
expect_fail 3 "test" -- "$LS" train good.yaml --set data.eval_split=nosuchsplit
# model files
expect_fail 3 "nomodel.h5" -- "$LS" evaluate good.yaml --checkpoint nomodel.h5
expect_fail 3 "different model" -- "$LS" evaluate good.yaml --checkpoint out/model.h5 --set 'model.layers=[{units: 9}]'
expect_fail 3 "not a lockstep model" -- "$LS" evaluate good.yaml --checkpoint tiny.h5
# convert
expect_fail 3 "nowhere" -- "$LS" convert idx --dir nowhere --out x.h5
expect_fail 3 "exists" -- "$LS" convert idx --dir /usr/share/datasets/fashion-mnist --out tiny.h5
finish
