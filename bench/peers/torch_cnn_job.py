#!/usr/bin/env python3
"""The convolutional reference job in PyTorch, the architecture of
configs/fashion_mnist_cnn.yaml: Conv2D(32, 3x3, same, relu) -> MaxPool(2) ->
Conv2D(64, 3x3, same, relu) -> MaxPool(2) -> Flatten -> Dense(128, relu) ->
Dense(10); Glorot-uniform weights and zero biases (Keras' defaults), Adam(1e-3,
eps 1e-7), batch 64 reshuffled every epoch, on lockstep's HDF5 file. Prints one
JSON line (bench/peers/common.py) with the training samples/s of every epoch and
the test accuracy after every epoch, so it serves both as the speed peer and as
the accuracy reference.

  python3 bench/peers/torch_cnn_job.py --data D.h5 --epochs 10 --threads 2 [--seed 1]
"""
import argparse

import numpy as np
import torch

import common


def glorot_conv(rng, out_c, in_c, k):
    fan_in, fan_out = in_c * k * k, out_c * k * k
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(out_c, in_c, k, k)).astype(np.float32)


def build(seed):
    rng = np.random.default_rng(seed)
    nn = torch.nn
    m = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, common.CLASSES))
    with torch.no_grad():
        for layer in m:
            if isinstance(layer, nn.Conv2d):
                layer.weight.copy_(torch.from_numpy(glorot_conv(rng, layer.out_channels, layer.in_channels, 3)))
                layer.bias.zero_()
            elif isinstance(layer, nn.Linear):
                w = common.glorot(rng, layer.in_features, layer.out_features)
                layer.weight.copy_(torch.from_numpy(w.T.copy()))
                layer.bias.zero_()
    return m


def accuracy(m, x, y, batch=1000):
    m.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((m(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    m.train()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x, y, xt, yt = common.load(args.data)
    x = torch.from_numpy(x).reshape(-1, 1, 28, 28)
    xt = torch.from_numpy(xt).reshape(-1, 1, 28, 28)
    y, yt = torch.from_numpy(y), torch.from_numpy(yt)
    m = build(args.seed)
    opt = torch.optim.Adam(m.parameters(), lr=common.LR, betas=(common.BETA1, common.BETA2), eps=common.EPS)
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(args.seed)
    timer = common.EpochTimer()
    accs = []
    for _ in range(args.epochs):
        perm = torch.randperm(len(x), generator=g)
        timer.start()
        for i in range(0, len(x), args.batch):
            idx = perm[i:i + args.batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(m(x[idx]), y[idx]).backward()
            opt.step()
        timer.stop(len(x))
        accs.append(accuracy(m, xt, yt))
    common.report("pytorch " + torch.__version__, "eager cnn", args.threads, args.batch, timer.rates,
                  test_accuracy=accs)


if __name__ == "__main__":
    main()
