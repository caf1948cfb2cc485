#!/usr/bin/env python3
"""The reference job in TensorFlow/Keras, with tf.distribute.MirroredStrategy over
N logical CPU devices (or no strategy with --devices 0): Dense(128, relu) ->
Dense(10), Adam(1e-3, eps 1e-7), global batch 64 reshuffled every epoch, on
lockstep's HDF5 file. Prints each epoch's training samples/s as one JSON line.

  PY bench/peers/tf_job.py --data D.h5 --epochs 5 --devices 2 --threads 2
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import common  # noqa: E402


class Timer(tf.keras.callbacks.Callback):
    def __init__(self, samples):
        super().__init__()
        self.samples = samples
        self.timer = common.EpochTimer()

    def on_epoch_begin(self, epoch, logs=None):
        self.timer.start()

    def on_epoch_end(self, epoch, logs=None):
        self.timer.stop(self.samples)


def model(seed):
    rng = np.random.default_rng(seed)
    m = tf.keras.Sequential([tf.keras.Input((784,)), tf.keras.layers.Dense(common.HIDDEN, activation="relu"),
                             tf.keras.layers.Dense(common.CLASSES)])
    m.layers[0].set_weights([common.glorot(rng, 784, common.HIDDEN), np.zeros(common.HIDDEN, np.float32)])
    m.layers[1].set_weights([common.glorot(rng, common.HIDDEN, common.CLASSES), np.zeros(common.CLASSES, np.float32)])
    m.compile(optimizer=tf.keras.optimizers.Adam(common.LR, common.BETA1, common.BETA2, common.EPS),
              loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--devices", type=int, default=2, help="logical CPU devices mirrored (0: no strategy)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.devices:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.devices)
    x, y, _, _ = common.load(args.data)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=args.seed,
                                                             reshuffle_each_iteration=True)
    ds = ds.batch(args.batch).prefetch(2)
    timer = Timer(len(x))
    if args.devices:
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(args.devices)])
        with strategy.scope():
            m = model(args.seed)
        variant = f"keras-mirrored-{args.devices}cpu"
    else:
        m = model(args.seed)
        variant = "keras"
    m.fit(ds, epochs=args.epochs, verbose=0, callbacks=[timer])
    common.report("tensorflow " + tf.__version__, variant, args.threads, args.batch, timer.timer.rates)


if __name__ == "__main__":
    main()
