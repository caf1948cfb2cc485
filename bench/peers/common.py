"""What every peer job shares: the lockstep HDF5 dataset as float32 arrays, the
reference model's shapes and hyper-parameters, a seeded global shuffle, and the
one-line JSON result (per-epoch training samples/s) that bench/real_job.py reads.
"""
import json
import sys
import time

import h5py
import numpy as np

HIDDEN, CLASSES = 128, 10
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-7


def load(path):
    """(x_train, y_train, x_test, y_test): pixels scaled to [0, 1] as lockstep's data.scale does."""
    with h5py.File(path, "r") as f:
        def split(name):
            x = f[name]["x"][()]
            return (x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0),
                    f[name]["y"][()].astype(np.int64))
        return split("train") + split("test")


def glorot(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)


class EpochTimer:
    """Training time of each epoch (evaluation excluded), as lockstep's samples_per_sec."""
    def __init__(self):
        self.rates = []
        self._t0 = None

    def start(self):
        self._t0 = time.perf_counter()

    def stop(self, samples):
        self.rates.append(samples / (time.perf_counter() - self._t0))


def report(engine, variant, threads, batch, rates, **extra):
    rec = {"engine": engine, "variant": variant, "threads": threads, "batch": batch,
           "epoch_samples_per_sec": rates}
    rec.update(extra)
    print(json.dumps(rec))
    sys.stdout.flush()
