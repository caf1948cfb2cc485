#!/usr/bin/env python3
"""Training throughput on 1 thread: lockstep (build/bench/train_bench, the real
engine path) and PyTorch (bench/pytorch_mlp.py with Debian's python3-torch),
alternated ROUNDS times in one run so machine noise hits both; prints the
medians, the ratio, and lockstep's fraction of its GEMM bound.

  /usr/bin/python3 bench/vs_pytorch.py [--rounds 3] [--data datasets/fashion_mnist.h5]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def lockstep(batch):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([os.path.join(ROOT, "build/bench/train_bench"), "--batch", str(batch),
                        "--reps", "3", "--steps", "400", "--json", f.name],
                       check=True, stdout=subprocess.DEVNULL)
        row = json.load(open(f.name))[0]
        return row["samples_per_sec"], row["gemm_fraction"]


def pytorch(batch, data):
    out = subprocess.run([sys.executable, os.path.join(HERE, "pytorch_mlp.py"), "--data", data,
                          "--throughput", "--batch", str(batch)], check=True, capture_output=True,
                         text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return json.loads(out.stdout)["samples_per_sec"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default=os.path.join(ROOT, "datasets/fashion_mnist.h5"))
    args = ap.parse_args()
    print("# 1 thread, MLP 784-128-10, Adam; medians over %d alternating rounds" % args.rounds)
    print("#%6s %14s %14s %8s %12s" % ("batch", "lockstep", "pytorch", "ratio", "gemm/step"))
    print("#%6s %14s %14s %8s %12s" % ("", "(samples/s)", "(samples/s)", "", "(lockstep)"))
    for batch in (64, 256):
        ls, fr, pt = [], [], []
        for _ in range(args.rounds):
            sps, frac = lockstep(batch)
            ls.append(sps)
            fr.append(frac)
            pt.append(pytorch(batch, args.data))
        a, b = statistics.median(ls), statistics.median(pt)
        print("%7d %14.0f %14.0f %8.2f %12.3f" % (batch, a, b, a / b, statistics.median(fr)))


if __name__ == "__main__":
    main()
