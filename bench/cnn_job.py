#!/usr/bin/env python3
"""The convolutional job side by side with PyTorch: configs/fashion_mnist_cnn.yaml
trained by build/lockstep on the Fashion-MNIST HDF5 file for full epochs,
alternated in rounds with bench/peers/torch_cnn_job.py (the same architecture,
initialisation, Adam, batch 64 and data; Debian's python3-torch on as many threads).

Reports, per run, the median training samples/s of epochs 2..N and the test
accuracy after epochs 5 and N; the ratio lockstep / PyTorch (median over rounds
of the per-round ratio) against the target 1.5; and the share of the machine's
fp32 FMA peak lockstep's rate is (FLOPs of a training step counted from the
layer shapes, over cores x clock x FMA lanes). Prints the CPU model and ISA first.

  /usr/bin/python3 bench/cnn_job.py [--epochs 10] [--rounds 1] [--json OUT.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from real_job import LOCKSTEP, ROOT, cpu_description, lockstep_epochs, steady  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "fashion_mnist_cnn.yaml")


def train_flops_per_sample():
    """Multiply-adds of the forward pass x 2 FLOPs x 3 (forward, d(input), d(weights))."""
    conv1 = 28 * 28 * 32 * 1 * 9
    conv2 = 14 * 14 * 64 * 32 * 9
    dense = 3136 * 128 + 128 * 10
    return 2.0 * 3.0 * (conv1 + conv2 + dense)


def fma_peak():
    """(FLOP/s, how it was counted): cores x max clock x fp32 FMA lanes x 2 FMA units x 2."""
    flags, mhz = set(), 0.0
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
        elif line.startswith("cpu MHz"):
            mhz = max(mhz, float(line.split(":", 1)[1]))
    try:
        mhz = max(mhz, int(open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read()) / 1000)
    except OSError:
        pass
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    cores = os.cpu_count()
    return cores * mhz * 1e6 * lanes * 2 * 2, f"{cores} CPUs x {mhz:.0f} MHz x {lanes} lanes x 2 FMA units x 2"


def run_lockstep(data, epochs):
    recs = lockstep_epochs(data, epochs, [], config=CONFIG)
    return [r["samples_per_sec"] for r in recs], [r["val_accuracy"] for r in recs]


def run_torch(data, epochs, threads):
    out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "peers", "torch_cnn_job.py"), "--data", data,
                          "--epochs", str(epochs), "--threads", str(threads)],
                         check=True, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    return rec["epoch_samples_per_sec"], rec["test_accuracy"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "datasets", "fashion_mnist.h5"))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", help="write every run's per-epoch rates and accuracies here")
    args = ap.parse_args()
    if not os.path.exists(LOCKSTEP):
        sys.exit(f"cnn_job: {LOCKSTEP} is missing: build first (launch/setup.sh)")
    if not os.path.exists(args.data):
        sys.exit(f"cnn_job: {args.data} is missing: launch/run.sh makes it")
    threads = os.cpu_count()
    print(f"# CPU: {cpu_description()}")
    print(f"# job: {os.path.relpath(CONFIG, ROOT)} on {os.path.relpath(args.data, ROOT)}, {args.epochs} epochs, "
          f"{args.rounds} alternating round(s); samples/s = median of epochs 2..{args.epochs} of a run")
    runs = {}
    names = ("lockstep", f"pytorch {threads} threads")
    for rnd in range(args.rounds):
        for name in names:
            rates, accs = run_lockstep(args.data, args.epochs) if name == "lockstep" else \
                run_torch(args.data, args.epochs, threads)
            runs.setdefault(name, []).append({"rates": rates, "accuracy": accs})
            med, spread = steady(rates)
            at5 = accs[4] if len(accs) >= 5 else float("nan")
            print(f"  round {rnd + 1}  {name:20s} {med:9.0f} samples/s  spread {spread:5.2f}  "
                  f"test accuracy: epoch 5 {at5:.4f}, epoch {len(accs)} {accs[-1]:.4f}", flush=True)
    per = [steady(a["rates"])[0] / steady(b["rates"])[0] for a, b in zip(runs[names[0]], runs[names[1]])]
    med = statistics.median(per)
    print(f"\n lockstep / {names[1]}: {med:.2f} (rounds {' '.join(f'{p:.2f}' for p in per)}; target 1.5"
          f"{'  met' if med >= 1.5 else '  MISSED'})")
    for name in names:
        accs = [r["accuracy"] for r in runs[name]]
        last = statistics.median(a[-1] for a in accs)
        line = f" {name} median test accuracy: epoch {args.epochs} {last:.4f}"
        if args.epochs >= 5:
            line += f", epoch 5 {statistics.median(a[4] for a in accs):.4f}"
        print(line)
    peak, how = fma_peak()
    rate = statistics.median(steady(r["rates"])[0] for r in runs["lockstep"])
    flops = train_flops_per_sample()
    print(f" lockstep: {rate * flops / 1e9:.1f} GFLOP/s of training ({flops / 1e6:.1f} MFLOP a sample) = "
          f"{100 * rate * flops / peak:.0f}% of the fp32 FMA peak ({how})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_description(), "epochs": args.epochs, "runs": runs, "ratios": per}, f, indent=1)


if __name__ == "__main__":
    main()
