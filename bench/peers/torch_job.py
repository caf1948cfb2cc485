#!/usr/bin/env python3
"""The reference job in PyTorch: Dense(128, relu) -> Dense(10), Adam(1e-3, eps
1e-7), global batch 64 reshuffled every epoch, on lockstep's HDF5 file; prints the
training samples/s of every epoch as one JSON line (bench/peers/common.py).

  python3 bench/peers/torch_job.py --data D.h5 --epochs 5 --threads 2
  python3 bench/peers/torch_job.py --data D.h5 --epochs 5 --ddp 2     # DDP, gloo, 2 x 1 thread
"""
import argparse
import os

import numpy as np
import torch

import common


def build(seed):
    rng = np.random.default_rng(seed)
    m = torch.nn.Sequential(torch.nn.Linear(784, common.HIDDEN), torch.nn.ReLU(),
                            torch.nn.Linear(common.HIDDEN, common.CLASSES))
    with torch.no_grad():
        for layer, (i, o) in ((m[0], (784, common.HIDDEN)), (m[2], (common.HIDDEN, common.CLASSES))):
            layer.weight.copy_(torch.from_numpy(common.glorot(rng, i, o).T.copy()))
            layer.bias.zero_()
    return m


def train(m, x, y, epochs, batch, seed, rank=0, world=1):
    """Each process takes rows [rank*b/world, (rank+1)*b/world) of every global batch."""
    opt = torch.optim.Adam(m.parameters(), lr=common.LR, betas=(common.BETA1, common.BETA2), eps=common.EPS)
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    timer = common.EpochTimer()
    n = len(x)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        if world > 1:
            torch.distributed.barrier()
        timer.start()
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            lo, hi = len(idx) * rank // world, len(idx) * (rank + 1) // world
            idx = idx[lo:hi]
            opt.zero_grad(set_to_none=True)
            # DDP averages the processes' gradients of their slice means: the
            # global mean whenever the slices are equal (all but a short last batch).
            loss_fn(m(x[idx]), y[idx]).backward()
            opt.step()
        if world > 1:
            torch.distributed.barrier()
        timer.stop(n)
    return timer.rates


def ddp_worker(rank, world, args, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    x, y, _, _ = common.load(args.data)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    m = torch.nn.parallel.DistributedDataParallel(build(args.seed))
    rates = train(m, x, y, args.epochs, args.batch, args.seed, rank, world)
    if rank == 0:
        common.report("pytorch " + torch.__version__, "ddp-gloo", world, args.batch, rates, processes=world)
    torch.distributed.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--ddp", type=int, default=0, help="processes of 1 thread each (gloo)")
    args = ap.parse_args()
    if args.ddp:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        torch.multiprocessing.spawn(ddp_worker, args=(args.ddp, args, port), nprocs=args.ddp)
        return
    torch.set_num_threads(args.threads)
    x, y, _, _ = common.load(args.data)
    rates = train(build(args.seed), torch.from_numpy(x), torch.from_numpy(y), args.epochs, args.batch, args.seed)
    common.report("pytorch " + torch.__version__, "eager", args.threads, args.batch, rates)


if __name__ == "__main__":
    main()
