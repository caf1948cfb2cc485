#!/usr/bin/env python3
"""PyTorch's time for the convolutional kernels that bench/kernels_bench times, on the
same shapes and thread count, so the two tables can be read side by side.

Fashion-MNIST CNN shapes at batch 32 and 64 (one replica's batch): Conv2D(32, 3x3,
same) on 1x28x28, MaxPool(2), Conv2D(64, 3x3, same) on 32x14x14, MaxPool(2), and a
batch norm on 32x28x28. Backward passes are timed through torch.autograd.grad with
a fixed upstream gradient; `conv bwd w+b` asks for the weight and bias gradients
only, `conv bwd data` for the input gradient only (so each is one kernel call).

  /usr/bin/python3 bench/pytorch_cnn_kernels.py --threads 1 --reps 200
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def median_us(fn, reps):
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    inner = max(1, int(50e-6 / max(one, 1e-9)))
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner * 1e6)
    return statistics.median(samples)


def row(name, shape, us, flops):
    gflops = flops / (us * 1e3)
    print(f"{name:<22} {shape:<22} {us:10.2f} {gflops:8.2f}")


def conv(name, batch, c, hw, filters, need_dx, reps):
    x = torch.rand(batch, c, hw, hw) * 2 - 1
    w = (torch.rand(filters, c, 3, 3) * 2 - 1) * 0.1
    b = torch.rand(filters) * 2 - 1
    x.requires_grad_(need_dx)
    w.requires_grad_(True)
    b.requires_grad_(True)
    flops = 2.0 * batch * filters * hw * hw * c * 9
    shape = f"{batch}x{c}x{hw}x{hw}->{filters}"
    with torch.no_grad():
        fwd = median_us(lambda: F.conv2d(x, w, b, padding=1), reps)
    row(f"{name} fwd", shape, fwd, flops)
    y = F.conv2d(x, w, b, padding=1)
    dy = torch.rand_like(y) * 2 - 1
    bww = median_us(lambda: torch.autograd.grad(y, (w, b), dy, retain_graph=True), reps)
    row(f"{name} bwd w+b", shape, bww, flops)
    total = fwd + bww
    if need_dx:
        bwd = median_us(lambda: torch.autograd.grad(y, (x,), dy, retain_graph=True), reps)
        row(f"{name} bwd data", shape, bwd, flops)
        total += bwd
    return total


def pool(name, batch, c, hw, reps):
    x = (torch.rand(batch, c, hw, hw) * 2 - 1).requires_grad_(True)
    with torch.no_grad():
        fwd = median_us(lambda: F.max_pool2d(x, 2), reps)
    row(f"{name} fwd", f"{batch}x{c}x{hw}x{hw}", fwd, 0)
    y = F.max_pool2d(x, 2)
    dy = torch.rand_like(y)
    bwd = median_us(lambda: torch.autograd.grad(y, (x,), dy, retain_graph=True), reps)
    row(f"{name} bwd", f"{batch}x{c}x{hw}x{hw}", bwd, 0)
    return fwd + bwd


def batch_norm(batch, c, hw, reps):
    x = (torch.rand(batch, c, hw, hw) * 2 - 1).requires_grad_(True)
    gamma = torch.ones(c, requires_grad=True)
    beta = torch.zeros(c, requires_grad=True)
    mean, var = torch.zeros(c), torch.ones(c)
    n = batch * c * hw * hw
    with torch.no_grad():
        fwd = median_us(lambda: F.batch_norm(x, mean, var, gamma, beta, True, 0.01, 1e-3), reps)
    row("batch_norm fwd", f"{batch}x{c}x{hw}x{hw}", fwd, 5 * n)
    y = F.batch_norm(x, mean, var, gamma, beta, True, 0.01, 1e-3)
    dy = torch.rand_like(y)
    bwd = median_us(lambda: torch.autograd.grad(y, (x, gamma, beta), dy, retain_graph=True), reps)
    row("batch_norm bwd", f"{batch}x{c}x{hw}x{hw}", bwd, 9 * n)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--reps", type=int, default=200, help="samples per kernel (median)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"# PyTorch {torch.__version__} CNN kernels, {args.threads} thread(s), median of {args.reps}"
          f" samples; mkldnn enabled: {torch.backends.mkldnn.is_available()}")
    for batch in (32, 64):
        print(f"#\n# batch {batch}")
        print(f"# {'kernel':<20} {'shape':<22} {'time':>10} {'':>8}")
        print(f"# {'':<20} {'':<22} {'(us)':>10} {'(GF/s)':>8}")
        total = conv("conv1", batch, 1, 28, 32, False, args.reps)
        total += pool("maxpool1", batch, 32, 28, args.reps)
        total += conv("conv2", batch, 32, 14, 64, True, args.reps)
        total += pool("maxpool2", batch, 64, 14, args.reps)
        print(f"# batch {batch}: conv + pool kernels of one step (conv1 needs no dx): {total:.1f} us")
        batch_norm(batch, 32, 28, args.reps)


if __name__ == "__main__":
    main()
