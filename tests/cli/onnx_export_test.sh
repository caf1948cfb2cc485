#!/usr/bin/env bash
# lockstep export --format onnx against lockstep predict: tiny models with every
# activation (and dropout, and mse regression) and every convolutional layer kind
# (odd image sizes, strides, same/valid padding, batch norm's moving statistics,
# residual blocks with and without projection) are trained a few steps, exported,
# checked by onnx.checker and run by onnxruntime on the raw test rows (the input
# scale is in the graph); probabilities / outputs must match predict's to 1e-5.
source "$(dirname "$0")/lib.sh"
cd "$WORK"

if ! ORTPY=$("$LOCKSTEP_SOURCE_DIR/launch/pyenv.sh" onnx onnxruntime | tail -n 1); then
  echo "SKIPPED: onnx/onnxruntime cannot be installed (launch/pyenv.sh failed); nothing was checked"
  exit 0
fi
case $ORTPY in /*) ;; *) ORTPY=$LOCKSTEP_SOURCE_DIR/$ORTPY ;; esac

make_tiny_dataset tiny.h5 96 2
# A regression set with float features and (N, 2) float targets.
"$PY" - <<'PYEOF'
import h5py, numpy as np
rng = np.random.default_rng(1)
with h5py.File("reg.h5", "w") as f:
    for split, n in (("train", 64), ("test", 24)):
        g = f.create_group(split)
        x = rng.normal(size=(n, 5)).astype(np.float32) * 3
        g.create_dataset("x", data=x)
        g.create_dataset("y", data=np.stack([x.sum(1), x[:, 0] * x[:, 1]], 1).astype(np.float32))
PYEOF
# Two-channel 9x7 images (N, C, H, W) as float32, to exercise asymmetric "same" pads.
"$PY" - <<'PYEOF'
import h5py, numpy as np
rng = np.random.default_rng(2)
with h5py.File("img.h5", "w") as f:
    f.attrs["num_classes"] = 3
    for split, n in (("train", 64), ("test", 24)):
        g = f.create_group(split)
        g.create_dataset("x", data=rng.normal(size=(n, 2, 9, 7)).astype(np.float32))
        g.create_dataset("y", data=rng.integers(0, 3, size=n).astype(np.int32))
PYEOF

# NAME DATA SCALE LOSS LAYERS
check_model() {
  local name=$1 data=$2 scale=$3 loss=$4 layers=$5
  cat > "$name.yaml" <<YAML
data: {path: $data, scale: $scale}
model: {layers: $layers, loss: $loss}
optimizer: {name: adam, learning_rate: 0.05}
train: {epochs: 2, batch_size: 16, eval_batch_size: 16, progress: false, seed: 3}
output: {dir: out_$name, save_model: true}
YAML
  if ! "$LS" train "$name.yaml" >"$name.train.log" 2>&1; then bad "$name: train failed: $(tail -3 "$name.train.log")"; return; fi
  if ! "$LS" export "$name.yaml" --checkpoint "out_$name/model.h5" --format onnx --out "$name.onnx" >"$name.export.log" 2>&1; then
    bad "$name: export failed: $(cat "$name.export.log")"; return
  fi
  if ! "$LS" predict "$name.yaml" --checkpoint "out_$name/model.h5" --input "$data" --output "$name.pred.h5" >/dev/null 2>&1; then
    bad "$name: predict failed"; return
  fi
  # The system Python (h5py) hands the rows and predict's answer over as .npy files.
  "$PY" - "$data" "$name.pred.h5" "$name" <<'PYEOF'
import sys, h5py, numpy as np
data, pred, name = sys.argv[1:]
with h5py.File(data) as f:
    x = f["test/x"][...]
np.save(name + ".x.npy", x.reshape(len(x), -1).astype(np.float32))  # raw values: the graph scales them
with h5py.File(pred) as f:
    key = "probabilities" if "probabilities" in f else "outputs"
    np.save(name + "." + key + ".npy", f[key][...])
PYEOF
  local result
  if result=$("$ORTPY" - "$name.onnx" "$name" 2>&1 <<'PYEOF'
import os, sys, numpy as np, onnx, onnxruntime as ort
path, name = sys.argv[1:]
model = onnx.load(path)
onnx.checker.check_model(model, full_check=True)
x = np.load(name + ".x.npy")
key = "probabilities" if os.path.exists(name + ".probabilities.npy") else "outputs"
want = np.load(name + "." + key + ".npy")
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
outs = [o.name for o in sess.get_outputs()]
assert outs == [key], f"graph outputs {outs}, predict wrote /{key}"
got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
assert got.shape == want.shape, (got.shape, want.shape)
err = float(np.abs(got - want).max())
assert err <= 1e-5, f"max |onnxruntime - predict| = {err:.3g} > 1e-5"
# The model must not be trivial: outputs differ across rows.
assert float(np.ptp(want, axis=0).max()) > 1e-3, "outputs do not vary with the input"
print(f"{key} {got.shape}, max |diff| {err:.2e}")
PYEOF
  ); then ok "$name: onnx.checker passes, onnxruntime = predict ($result)"; else bad "$name: $result"; fi
}

check_model relu tiny.h5 0.0039 softmax_cross_entropy "[{units: 8, activation: relu}]"
check_model tanh_sigmoid tiny.h5 0.0039 softmax_cross_entropy \
  "[{units: 7, activation: tanh, dropout: 0.3}, {units: 5, activation: sigmoid}]"
check_model gelu_linear tiny.h5 0.01 softmax_cross_entropy "[{units: 9, activation: gelu}, {units: 4, activation: linear}]"
check_model mse_regression reg.h5 0.5 mse "[{units: 8, activation: gelu}, {units: 6, activation: relu}]"
check_model conv_pool tiny.h5 0.0039 softmax_cross_entropy \
  "[{type: conv2d, filters: 3, kernel_size: 3, padding: valid, activation: tanh}, {type: max_pool2d, pool_size: 2, strides: 1}, {type: flatten}, {units: 6}, {type: batch_norm}]"
check_model conv_residual img.h5 1.0 softmax_cross_entropy \
  "[{type: conv2d, filters: 4, kernel_size: 3, strides: 2, padding: same}, {type: batch_norm, momentum: 0.5}, {type: residual, filters: 4}, {type: residual, filters: 6, strides: 2, momentum: 0.5}, {type: avg_pool2d, pool_size: 2, strides: 1}, {type: dropout, rate: 0.2}, {type: global_avg_pool2d}]"

# Errors: one line, the usual exit codes, nothing overwritten.
expect_fail 2 "--format tflite is not known" -- "$LS" export relu.yaml --checkpoint out_relu/model.h5 --format tflite --out x.onnx
expect_fail 2 "relu.onnx.*exists" -- "$LS" export relu.yaml --checkpoint out_relu/model.h5 --out relu.onnx
expect_fail 3 "holds a different model" -- "$LS" export tanh_sigmoid.yaml --checkpoint out_relu/model.h5 --out y.onnx
expect_fail 3 "nothere.h5" -- "$LS" export relu.yaml --checkpoint nothere.h5 --out z.onnx
if "$LS" export relu.yaml --checkpoint out_relu/model.h5 --out relu.onnx --overwrite >/dev/null; then
  ok "--overwrite replaces an export"
else
  bad "--overwrite failed"
fi
finish
