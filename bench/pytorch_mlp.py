#!/usr/bin/env python3
"""The reference experiment in PyTorch, as a peer to measure lockstep against.

Dense(128, relu) -> Dense(10) on Fashion-MNIST, Glorot-uniform weights, zero
biases, Adam(1e-3, 0.9, 0.999, eps=1e-7), batch 64 reshuffled every epoch,
inputs scaled to [0, 1]. Reads the lockstep HDF5 dataset (h5py), so both engines
see the same bytes.

  bench/pytorch_mlp.py --data datasets/fashion_mnist.h5 --throughput   # samples/s, 1 thread
  bench/pytorch_mlp.py --data datasets/fashion_mnist.h5 --epochs 10 --seeds 1,2,3,4,5
"""
import argparse
import json
import statistics
import time

import h5py
import numpy as np
import torch


def load(path):
    with h5py.File(path, "r") as f:
        def split(name):
            x = torch.from_numpy(f[name]["x"][()].reshape(len(f[name]["x"]), -1).astype(np.float32) / 255.0)
            y = torch.from_numpy(f[name]["y"][()].astype(np.int64))
            return x, y
        return split("train"), split("test")


def model(seed):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    for layer in (m[0], m[2]):
        torch.nn.init.xavier_uniform_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    return m


def train(data, epochs, seed, batch):
    (xtr, ytr), (xte, yte) = data
    m = model(seed)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(m(xtr[idx]), ytr[idx]).backward()
            opt.step()
    with torch.no_grad():
        return (m(xte).argmax(1) == yte).float().mean().item()


def throughput(data, batch, steps, reps):
    (xtr, ytr), _ = data
    m = model(0)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    perm = torch.randperm(len(xtr))
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for s in range(steps):
            idx = perm[(s * batch) % (len(xtr) - batch):][:batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(m(xtr[idx]), ytr[idx]).backward()
            opt.step()
        rates.append(batch * steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--throughput", action="store_true", help="measure samples/s instead of accuracy")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load(args.data)
    if args.throughput:
        sps = throughput(data, args.batch, args.steps, args.reps)
        print(json.dumps({"engine": "pytorch " + torch.__version__, "batch": args.batch, "threads": 1,
                          "samples_per_sec": sps}))
        return
    accs = [train(data, args.epochs, int(s), args.batch) for s in args.seeds.split(",")]
    print(json.dumps({"engine": "pytorch " + torch.__version__, "epochs": args.epochs,
                      "test_accuracy": accs, "median": statistics.median(accs)}))


if __name__ == "__main__":
    main()
