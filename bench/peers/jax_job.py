#!/usr/bin/env python3
"""The reference job in JAX + optax: Dense(128, relu) -> Dense(10), Adam(1e-3, eps
1e-7), global batch 64 reshuffled every epoch, on lockstep's HDF5 file. Two
variants: a jitted step called per batch (--scan off), or a whole epoch of steps
under lax.scan in one jitted call (--scan). Prints each epoch's training
samples/s as one JSON line. XLA uses the machine's cores (its default).

  PY bench/peers/jax_job.py --data D.h5 --epochs 5 [--scan]
"""
import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import common


def init(seed):
    rng = np.random.default_rng(seed)
    return {"w1": jnp.asarray(common.glorot(rng, 784, common.HIDDEN)), "b1": jnp.zeros(common.HIDDEN),
            "w2": jnp.asarray(common.glorot(rng, common.HIDDEN, common.CLASSES)), "b2": jnp.zeros(common.CLASSES)}


def loss(p, x, y):
    h = jax.nn.relu(x @ p["w1"] + p["b1"])
    return optax.softmax_cross_entropy_with_integer_labels(h @ p["w2"] + p["b2"], y).mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--scan", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    opt = optax.adam(common.LR, b1=common.BETA1, b2=common.BETA2, eps=common.EPS)

    def step(state, xy):
        p, s = state
        value, g = jax.value_and_grad(loss)(p, *xy)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), value

    jstep = jax.jit(step)
    jepoch = jax.jit(lambda state, xs, ys: jax.lax.scan(step, state, (xs, ys)))
    x, y, _, _ = common.load(args.data)
    y = y.astype(np.int32)
    p = init(args.seed)
    state = (p, opt.init(p))
    rng = np.random.default_rng(args.seed)
    timer = common.EpochTimer()
    n, b = len(x), args.batch
    full = n // b * b
    for _ in range(args.epochs):
        perm = rng.permutation(n)
        timer.start()
        xs, ys = x[perm], y[perm]  # the shuffle is part of the epoch, as in the others
        if args.scan:
            state, losses = jepoch(state, xs[:full].reshape(-1, b, 784), ys[:full].reshape(-1, b))
            if full < n:
                state, _ = jstep(state, (xs[full:], ys[full:]))
        else:
            for i in range(0, n, b):
                state, losses = jstep(state, (xs[i:i + b], ys[i:i + b]))
        jax.block_until_ready(state)
        timer.stop(n)
    common.report("jax " + jax.__version__, "scan-epoch" if args.scan else "jit-step",
                  os.cpu_count(), args.batch, timer.rates)


if __name__ == "__main__":
    main()
