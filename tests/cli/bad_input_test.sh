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
printf 'data: 3\n' >section.yaml
expect_fail 2 "section.yaml:1: 'data' is a section: give its keys as a mapping (e.g. data: {path: ...})" -- "$LS" train section.yaml
expect_fail 2 "unknown key 'train.shuffle' (did you mean 'data.shuffle'?)" -- "$LS" train good.yaml --set train.shuffle=false
mkdir -p cfgdir
expect_fail 2 "cfgdir: is a folder; name the config file" -- "$LS" train cfgdir --set data.path=tiny.h5
expect_fail 3 "cfgdir: is a folder, not an HDF5 dataset file" -- "$LS" train good.yaml --set data.path=cfgdir
expect_fail 3 "cfgdir: is a folder; name a model or checkpoint file in it" -- "$LS" evaluate good.yaml --checkpoint cfgdir
expect_fail 2 "scale --out good.yaml: is a file, not a folder" -- "$LS" scale good.yaml --replicas 1 --out good.yaml
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
expect_fail 2 "exists" -- "$LS" convert idx --dir /usr/share/datasets/fashion-mnist --out tiny.h5
# ---- found by trying lockstep as a new user would ----
# An eval split smaller than train.eval_batch_size is one short batch (data/README.md).
"$LS" train good.yaml --set output.dir=shorteval --set train.eval_batch_size=1000 --metrics-out short.jsonl >short.log 2>&1 &&
  "$PY" -c "import json,sys; f=[json.loads(l) for l in open('short.jsonl')][-1]; sys.exit(0 if f['examples'] == 32 else 1)" &&
  ok "an eval split of 32 with train.eval_batch_size 1000 evaluates all 32" || bad "short eval split: $(tail -2 short.log)"
# evaluate and predict never use train.batch_size: any replica count may evaluate.
"$LS" evaluate good.yaml --checkpoint out/model.h5 --set strategy.local_replicas=3 --set train.eval_batch_size=1000 \
  >ev3.log 2>&1 && grep -q "(32 examples)" ev3.log && ok "evaluate with 3 replicas (global batch 16 does not divide)" ||
  bad "evaluate with 3 replicas: $(cat ev3.log)"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 60 mpirun --oversubscribe -np 3 \
  "$LS" evaluate good.yaml --checkpoint out/model.h5 >evmpi.log 2>&1 && [ "$(grep -c '(32 examples)' evmpi.log)" -eq 1 ] &&
  ok "evaluate under mpirun -np 3: one result line" || bad "evaluate -np 3: $(grep -v '^ *$' evmpi.log | head -3)"
"$LS" predict good.yaml --checkpoint out/model.h5 --input tiny.h5 --output p3.jsonl --set strategy.local_replicas=3 >p3.log 2>&1 &&
  [ "$(wc -l < p3.jsonl)" -eq 32 ] && ok "predict with 3 replicas configured" || bad "predict: $(cat p3.log)"
# --metrics-out naming a folder, output.dir naming a file: usage errors naming the flag or key.
mkdir -p mdir
expect_fail 2 "^lockstep: error: --metrics-out mdir: is a folder; name a file" -- "$LS" train good.yaml --set output.dir=o2 --metrics-out mdir
# --metrics-out and --trace never replace what the run reads or writes, a device,
# or a file that is not JSON; an earlier metrics file is replaced.
md5sum good.yaml tiny.h5 out/model.h5 >before.md5
expect_fail 2 "^lockstep: error: --metrics-out good.yaml: is the config file" -- "$LS" train good.yaml --set output.dir=o6 --metrics-out good.yaml
expect_fail 2 "^lockstep: error: --metrics-out tiny.h5: is the dataset (data.path)" -- \
  "$LS" evaluate good.yaml --checkpoint out/model.h5 --metrics-out tiny.h5
expect_fail 2 "^lockstep: error: --metrics-out out/model.h5: is the model being evaluated" -- \
  "$LS" evaluate good.yaml --checkpoint out/model.h5 --metrics-out out/model.h5
expect_fail 2 "^lockstep: error: --trace o7/model.h5: is the run folder's model.h5 (output.dir)" -- \
  "$LS" train good.yaml --set output.dir=./o7/ --trace o7/model.h5
expect_fail 2 "^lockstep: error: --metrics-out o7/metrics.jsonl: is the run folder's metrics.jsonl" -- \
  "$LS" train good.yaml --set output.dir=o7 --metrics-out o7/metrics.jsonl
expect_fail 2 "^lockstep: error: --trace same.jsonl: is the --metrics-out file" -- \
  "$LS" train good.yaml --set output.dir=o8 --metrics-out same.jsonl --trace same.jsonl
printf 'notes\n' >notes.txt
expect_fail 2 "^lockstep: error: --metrics-out notes.txt: already exists and does not hold JSON" -- \
  "$LS" train good.yaml --set output.dir=o8 --metrics-out notes.txt
mkfifo pipe
expect_fail 2 "^lockstep: error: --trace pipe: is not a regular file (a device, a pipe or a socket" -- \
  "$LS" train good.yaml --set output.dir=o8 --trace pipe
expect_fail 2 "^lockstep: error: pipe: is not a regular file" -- \
  "$LS" predict good.yaml --checkpoint out/model.h5 --input tiny.h5 --output pipe --overwrite
expect_fail 2 "^lockstep: error: --trace /dev/stdout: is not a regular file (a device, a pipe or a socket, or a link to one)" -- \
  "$LS" train good.yaml --set output.dir=o8 --trace /dev/stdout
expect_fail 2 "^lockstep: error: --metrics-out o10/checkpoints: is checkpoint.dir" -- \
  "$LS" train good.yaml --set output.dir=o10 --metrics-out o10/checkpoints
expect_fail 2 "^lockstep: error: --metrics-out o11/e.jsonl: folder o11 does not exist" -- \
  "$LS" evaluate good.yaml --set output.dir=o11 --checkpoint out/model.h5 --metrics-out o11/e.jsonl
md5sum -c --quiet before.md5 && [ "$(cat notes.txt)" = notes ] && [ -p pipe ] && [ ! -e o7 ] && [ ! -e o10 ] &&
  ok "refused side outputs left every file as it was" || bad "a refused side output changed a file"
# A stream is written in place: /dev/stdout into a pipe; /dev/full fails the write (exit 5).
out=$("$LS" evaluate good.yaml --checkpoint out/model.h5 --metrics-out /dev/stdout 2>/dev/null | cat) &&
  printf '%s\n' "$out" | grep -q '^{"examples":.*"test_loss"' &&
  ok "--metrics-out /dev/stdout writes the record into a pipe" || bad "--metrics-out /dev/stdout"
expect_fail 5 "^lockstep: error: /dev/full: cannot write a metrics record: No space left on device" -- \
  "$LS" evaluate good.yaml --checkpoint out/model.h5 --metrics-out /dev/full
# The epoch's checkpoint is written before its record, so a failed record costs no trained state.
expect_fail 5 "^lockstep: error: /dev/full: cannot write a metrics record" -- \
  "$LS" train good.yaml --set output.dir=o12 --set checkpoint.every_epoch=true --metrics-out /dev/full
ls o12/checkpoints/ckpt-*.h5 >/dev/null 2>&1 && ok "the epoch's checkpoint was written before its failed record" ||
  bad "no checkpoint after the failed record: $(ls -R o12)"
echo '{"old": 1}' >old.jsonl
"$LS" evaluate good.yaml --checkpoint out/model.h5 --metrics-out old.jsonl >/dev/null 2>&1 &&
  grep -q '"test_loss"' old.jsonl && ! grep -q '"old"' old.jsonl && ok "an earlier metrics file is replaced" ||
  bad "earlier metrics file: $(head -c 200 old.jsonl)"
# A metrics record that cannot be written whole ends the run (exit 5), the file
# cut back to its last whole record (a 2 KiB file-size limit, reached in epoch 6 or so).
# (Its messages come through a pipe: the limit holds for a log file too.)
err=$( (ulimit -f 2; exec "$LS" train good.yaml --set output.dir=o9 --set train.epochs=40 --set output.save_model=false \
  --set checkpoint.every_epoch=false --metrics-out fsz.jsonl) 2>&1 >/dev/null)
rc=$?
[ $rc -eq 5 ] && printf '%s\n' "$err" | grep -q "lockstep: error: fsz.jsonl: cannot write a metrics record: File too large" &&
  "$PY" -c "import json,sys; [json.loads(l) for l in open('fsz.jsonl')]" && [ "$(tail -c 1 fsz.jsonl | od -An -c | tr -d ' ')" = '\n' ] &&
  ok "metrics past a file-size limit: exit 5, whole records only" || bad "file-size limit: exit $rc: $err"
touch afile
expect_fail 2 "^lockstep: error: --set: key 'output.dir': afile is a file, not a folder" -- "$LS" train good.yaml --set output.dir=afile
# Data: a num_classes of 2^31-1, splits of different row shapes.
"$PY" - <<'PYEOF'
import h5py, numpy as np
with h5py.File("manyclasses.h5", "w") as f:
    f.attrs["num_classes"] = 2**31 - 1
    for s in ("train", "test"):
        g = f.create_group(s)
        g.create_dataset("x", data=np.zeros((40, 4, 4), np.uint8))
        g.create_dataset("y", data=np.zeros((40,), np.int32))
with h5py.File("shapes.h5", "w") as f:
    f.attrs["num_classes"] = 3
    for s, shape in (("train", (40, 4, 4)), ("test", (40, 5, 5))):
        g = f.create_group(s)
        g.create_dataset("x", data=np.zeros(shape, np.uint8))
        g.create_dataset("y", data=np.zeros((40,), np.int32))
PYEOF
expect_fail 3 "manyclasses.h5: attribute num_classes is 2147483647, more than 1000000" -- "$LS" train good.yaml --set data.path=manyclasses.h5
expect_fail 3 "shapes.h5: splits 'train' (rows of shape (4, 4), 3 classes) and 'test' (rows of shape (5, 5), 3 classes) differ" -- \
  "$LS" train good.yaml --set data.path=shapes.h5
# Model files: NaN or Inf weights, a kernel stored transposed.
"$PY" - <<'PYEOF'
import shutil, h5py, numpy as np
for name, change in (("nan.h5", lambda k: k.__setitem__((0, 0), np.nan)), ("inf.h5", lambda k: k.__setitem__((2, 1), np.inf))):
    shutil.copy("out/model.h5", name)
    with h5py.File(name, "r+") as f:
        k = f["weights/dense_1/kernel"][()]
        change(k)
        f["weights/dense_1/kernel"][...] = k
shutil.copy("out/model.h5", "edited.h5")
with h5py.File("edited.h5", "r+") as f:
    k = f["weights/dense_1/kernel"][()]
    k[1, 1] = 1e30  # finite, so only the checksum can tell
    f["weights/dense_1/kernel"][...] = k
shutil.copy("out/model.h5", "transposed.h5")
with h5py.File("transposed.h5", "r+") as f:
    k = f["weights/dense_1/kernel"][()]
    del f["weights/dense_1/kernel"]
    f["weights/dense_1"].create_dataset("kernel", data=k.T.copy())
PYEOF
expect_fail 3 "nan.h5:/weights/dense_1: dataset 'kernel' holds NaN (element 0)" -- "$LS" evaluate good.yaml --checkpoint nan.h5
expect_fail 3 "inf.h5:/weights/dense_1: dataset 'kernel' holds Inf (element 17)" -- "$LS" evaluate good.yaml --checkpoint inf.h5
expect_fail 3 "edited.h5: checksum mismatch: the weights, optimizer slots or attributes are not the ones lockstep wrote" -- \
  "$LS" evaluate good.yaml --checkpoint edited.h5
expect_fail 3 "transposed.h5:/weights/dense_1: dataset 'kernel' has shape (8, 16), the model needs (16, 8) (stored transposed?" -- \
  "$LS" evaluate good.yaml --checkpoint transposed.h5
# Writes that fail (a 1 KiB file-size limit: EFBIG; lockstep ignores SIGXFSZ itself,
# so the shell's default action is left in place): exit 5 with the system's reason,
# no crash, nothing left in the folder. A failed HDF5 write once ended in a crash in
# HDF5's exit-time cleanup (exit 139) after its message.
limited() { (ulimit -f 1; exec "$@"); }
mkdir -p full
expect_fail 5 "full/c.h5:/train/x: write failed (disk full?): .*File too large" -- \
  limited "$LS" convert idx --dir /usr/share/datasets/fashion-mnist --out full/c.h5
expect_fail 5 "full/p.h5: cannot finish writing: .*File too large" -- \
  limited "$LS" predict good.yaml --checkpoint out/model.h5 --input tiny.h5 --output full/p.h5
expect_fail 5 "full/p.json: cannot finish writing" -- \
  limited "$LS" predict good.yaml --checkpoint out/model.h5 --input tiny.h5 --output full/p.json
expect_fail 5 "full/m.onnx: cannot finish writing: .*File too large" -- \
  limited "$LS" export good.yaml --checkpoint out/model.h5 --out full/m.onnx
[ -z "$(ls -A full)" ] && ok "failed writes left nothing in the folder" || bad "left behind: $(ls -A full)"
mkdir -p pdir
# Output paths are checked before any work: an empty one, a dangling symbolic link
# (anything at the path counts as existing), a file used as a folder.
ln -sf nothere.h5 dangling.h5
expect_fail 2 "dangling.h5: already exists; refusing to overwrite it" -- \
  "$LS" predict good.yaml --checkpoint out/model.h5 --input tiny.h5 --output dangling.h5
[ -L dangling.h5 ] && [ ! -e nothere.h5 ] && ok "the dangling link is left as it was" || bad "dangling link replaced"
expect_fail 2 "the output path is empty: name the file to write (e.g. model.onnx)" -- \
  "$LS" export good.yaml --checkpoint out/model.h5 --out ''
expect_fail 2 "afile/x.h5: afile is not a folder" -- "$LS" convert idx --dir /usr/share/datasets/fashion-mnist --out afile/x.h5
expect_fail 2 "pdir: is a folder; name a file to write (e.g. pdir/predictions.jsonl)" -- \
  "$LS" predict good.yaml --checkpoint out/model.h5 --input nosuch.h5 --output pdir

# The benchmarks: a data file that is not there is one error line naming it and
# exit 1, never an abort from an uncaught exception.
BENCH_DIR=$(dirname "$LS")/bench
if [ -x "$BENCH_DIR/train_bench" ]; then
  for b in train_bench observability_bench; do
    err=$("$BENCH_DIR/$b" --data nosuch.h5 2>&1 >/dev/null)
    rc=$?
    if [ $rc -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] &&
       printf '%s' "$err" | grep -q "^$b: error: nosuch.h5: no such file"; then
      ok "$err"
    else
      bad "$b --data nosuch.h5: exit $rc: $err"
    fi
  done
else
  echo "SKIPPED - benchmark errors: the benchmarks are not built here (LOCKSTEP_BENCH=OFF)"
fi
finish
