"""Training safeguards on the bundled 8x8 digits: early stopping, learning-rate schedules,
reduce-on-plateau, gradient clipping, NaN guard, CSV log and training curves.

    python examples/training_safeguards.py [--epochs 200] [--plot curves.png] [--csv log.csv]

Two runs of the same MLP, each stopped by EarlyStopping once the validation loss stops improving
(and rolled back to its best epoch):
  A. SGD with momentum on a schedule (linear warmup, then cosine decay, per step) and
     global_clipnorm=1.0;
  B. Adam at a fixed rate that ReduceLROnPlateau divides by 5 whenever the validation loss
     stalls for 3 epochs.
"""
import argparse
import math
import os
import tempfile

import numpy as np

import cydnn
from cydnn import callbacks, layers, optimizers, schedules


def load():
    (x, y), (x_test, y_test) = cydnn.datasets.load_digits()
    x = x.reshape(len(x), -1).astype(np.float32) / 16.0
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 16.0
    return x, y, x_test, y_test


def mlp():
    return cydnn.Sequential([layers.Dense(128, activation="relu", input_shape=(64,)), layers.Dropout(0.2),
                             layers.Dense(10, activation="softmax")])


def run(name, optimizer, extra_callbacks, data, epochs, batch_size, csv_path):
    x, y, x_test, y_test = data
    cydnn.set_random_seed(0)
    model = mlp()
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True)
    cbs = [callbacks.TerminateOnNaN(), *extra_callbacks, stop, callbacks.CSVLogger(csv_path)]
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_split=0.2, verbose=0, callbacks=cbs)
    test_loss, test_acc = model.evaluate(x_test, y_test)
    h = history.history
    rates = h["learning_rate"]
    print(f"{name}: {len(h['loss'])} epochs"
          + (f" (stopped at epoch {stop.stopped_epoch + 1})" if stop.stopped_epoch else "")
          + f"; best val_loss {stop.best:.4f} at epoch {stop.best_epoch + 1}, weights restored")
    print(f"   learning rate: first epoch {rates[0]:.3g}, highest {max(rates):.3g}, last {rates[-1]:.3g};  "
          f"test loss {test_loss:.4f}, test accuracy {test_acc:.2%}")
    return history


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--plot", default=None, help="save run A's training curves to this PNG (needs cydnn[plot])")
    ap.add_argument("--csv", default=None, help="write run A's per-epoch log here (default: a temporary file)")
    args = ap.parse_args()
    data = load()

    # A. the rate is a function of the optimizer step: 5 epochs of linear warmup to 0.1, then a
    #    cosine decay to 1% of it over the next 60 epochs. steps_per_epoch counts the batches of
    #    the 80% of the training set that validation_split=0.2 leaves.
    steps_per_epoch = math.ceil(int(len(data[0]) * 0.8) / args.batch_size)
    warmup_cosine = schedules.CosineDecay(0.01, decay_steps=60 * steps_per_epoch, alpha=0.01,
                                          warmup_target=0.1, warmup_steps=5 * steps_per_epoch)
    sgd = optimizers.SGD(learning_rate=warmup_cosine, momentum=0.9, global_clipnorm=1.0)
    csv_a = args.csv or os.path.join(tempfile.mkdtemp(), "run_a.csv")
    history = run("A  SGD + warmup/cosine schedule + global_clipnorm", sgd, [], data, args.epochs,
                  args.batch_size, csv_a)
    print(f"   per-epoch log: {csv_a}")

    # B. a fixed rate, lowered when the validation loss plateaus
    plateau = callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.2, patience=3, min_lr=1e-5)
    run("B  Adam + ReduceLROnPlateau", optimizers.Adam(0.003), [plateau], data, args.epochs, args.batch_size,
        os.path.join(tempfile.mkdtemp(), "run_b.csv"))

    if args.plot:
        history.plot(metrics=["loss", "accuracy", "learning_rate"], path=args.plot)
        print(f"training curves of run A: {args.plot}")


if __name__ == "__main__":
    main()
