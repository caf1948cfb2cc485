# onnxruntime's in-process single-row rate on a model lockstep exported
# (lockstep export --format onnx): one thread, one row per run() call, for a
# bounded time; prints calls/s and p50/p99 latency. Run with the venv of
# launch/pyenv.sh onnx onnxruntime. Usage: onnx_rate.py MODEL.onnx [SECONDS]
import sys, time
import numpy as np
import onnxruntime as ort

path = sys.argv[1]
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
width = inp.shape[1]
x = (np.arange(width, dtype=np.float32).reshape(1, width) * 37) % 256
for _ in range(200):
    sess.run(None, {inp.name: x})
lat = []
end = time.perf_counter() + seconds
while True:
    t0 = time.perf_counter()
    sess.run(None, {inp.name: x})
    t1 = time.perf_counter()
    lat.append(t1 - t0)
    if t1 >= end:
        break
lat = np.array(lat) * 1e3
print(f"onnxruntime {ort.__version__} in-process, 1 thread, single row ({width} values): "
      f"{len(lat) / lat.sum() * 1e3:,.0f} calls/s, p50 {np.percentile(lat, 50):.3f} ms, "
      f"p99 {np.percentile(lat, 99):.3f} ms ({len(lat)} calls)")
