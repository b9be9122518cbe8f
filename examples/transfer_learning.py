"""Transfer learning on the bundled 8x8 digits: a CNN learns the digits 0-4, its convolutional
base is frozen, and a new head learns the digits 5-9 from a few labelled images.

    python examples/transfer_learning.py [--per-class 5] [--repeats 3] [--epochs 20] [--threads N]

1. Pretrain a CNN (Conv2D, BatchNormalization, MaxPool2D, Dense) on every training image of
   0-4; save it with ``model.save`` and reload it with ``cydnn.load_model`` (one file).
2. Build a new model from the reloaded convolutional base and a fresh head for 5-9, freeze
   the base (``layer.trainable = False``: its weights and BatchNormalization statistics stay
   as they are) and train the head on ``--per-class`` images of each of 5-9.
3. Compare with the same network trained from scratch on the same few images, and with a
   second stage that unfreezes the base and fine-tunes everything at a low learning rate.
Steps 2-3 are repeated on ``--repeats`` different draws of the few images (and head inits).
"""
import argparse
import os
import tempfile
import time

import numpy as np

import cydnn
from cydnn import layers, optimizers


def conv_base():
    return [layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            layers.BatchNormalization(name="bn1"),
            layers.MaxPool2D(2, name="pool1"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPool2D(2, name="pool2"),
            layers.Flatten(name="flatten")]


def head(prefix):
    return [layers.Dense(64, activation="relu", name=f"{prefix}_dense"),
            layers.Dense(5, activation="softmax", name=f"{prefix}_out")]


def accuracy(model, x, y):
    return model.evaluate(x, y, return_dict=True)["accuracy"]


def fit_new_task(pretrained, xb, yb, xb_test, yb_test, epochs):
    """Steps 2 and 3 on one draw of the few labelled images: three test accuracies and whether
    the frozen weights stayed bit-for-bit the same."""
    base = [pretrained.get_layer(layer.name) for layer in conv_base()]
    for layer in base:
        layer.trainable = False
    frozen_before = [w.copy() for layer in base for w in layer.weights]
    transfer = cydnn.Sequential([layers.InputLayer(shape=(8, 8, 1))] + base + head("digits59"))
    transfer.compile(optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    transfer.fit(xb, yb, batch_size=16, epochs=epochs, verbose=0)
    unchanged = all(np.array_equal(a, b) for a, b in zip(frozen_before, (w for l in base for w in l.weights)))
    frozen_acc = accuracy(transfer, xb_test, yb_test)

    scratch = cydnn.Sequential([layers.InputLayer(shape=(8, 8, 1))] +
                               [type(l).from_config({**l.get_config(), "name": f"scratch_{l.name}"})
                                for l in conv_base()] + head("scratch"))
    scratch.compile(optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    scratch.fit(xb, yb, batch_size=16, epochs=epochs, verbose=0)
    scratch_acc = accuracy(scratch, xb_test, yb_test)

    for layer in base:  # unfreeze: the base trains again (BN uses batch statistics again)
        layer.trainable = True
    transfer.optimizer.learning_rate = 2e-4  # gently: the base is already good
    transfer.fit(xb, yb, batch_size=16, epochs=max(1, epochs // 2), verbose=0)
    tuned_acc = accuracy(transfer, xb_test, yb_test)
    return frozen_acc, scratch_acc, tuned_acc, unchanged, transfer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=5, help="labelled images of each of 5-9 for the new task")
    ap.add_argument("--repeats", type=int, default=3, help="draws of those images")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="default: every core")
    args = ap.parse_args()
    if args.threads:
        cydnn.set_num_threads(args.threads)
    cydnn.set_random_seed(args.seed)
    t0 = time.perf_counter()

    (x_train, y_train), (x_test, y_test) = cydnn.datasets.load_digits()
    x_train = (x_train / 16.0).astype(np.float32)[..., None]  # (n, 8, 8, 1), pixels in 0..1
    x_test = (x_test / 16.0).astype(np.float32)[..., None]
    low_tr, low_te = y_train < 5, y_test < 5
    xa, ya, xa_test, ya_test = x_train[low_tr], y_train[low_tr], x_test[low_te], y_test[low_te]
    xb_all, yb_all = x_train[~low_tr], y_train[~low_tr] - 5  # digits 5-9 as classes 0-4
    xb_test, yb_test = x_test[~low_te], y_test[~low_te] - 5

    # 1. pretrain on 0-4, save, reload
    source = cydnn.Sequential([layers.InputLayer(shape=(8, 8, 1))] + conv_base() + head("digits04"))
    source.compile(optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    source.fit(xa, ya, batch_size=32, epochs=args.epochs, verbose=0)
    print(f"1. CNN trained on all {len(xa)} training images of 0-4: test accuracy on 0-4 "
          f"{accuracy(source, xa_test, ya_test):.4f}")
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "digits04.cydnn")
    source.save(path)
    print(f"   saved with model.save (one file, {os.path.getsize(path) / 1024:.0f} KiB); each draw below starts "
          f"from cydnn.load_model of it")

    print(f"2-3. new task, digits 5-9, {args.per_class} labelled images per class "
          f"(test accuracy on the {len(xb_test)} test images of 5-9):")
    print("     draw  frozen base + new head  from scratch  then fine-tuned (all layers)")
    rows = []
    for r in range(args.repeats):
        rng = np.random.default_rng(args.seed + r)
        pick = np.concatenate([rng.permutation(np.flatnonzero(yb_all == c))[:args.per_class] for c in range(5)])
        frozen, scratch, tuned, unchanged, transfer = fit_new_task(cydnn.load_model(path), xb_all[pick],
                                                                   yb_all[pick], xb_test, yb_test, args.epochs)
        assert unchanged, "frozen weights changed"
        rows.append((frozen, scratch, tuned))
        print(f"     {r:4d}  {frozen:22.4f}  {scratch:12.4f}  {tuned:27.4f}")
    os.remove(path)
    os.rmdir(tmp)
    mean = np.mean(rows, axis=0)
    print(f"     mean  {mean[0]:22.4f}  {mean[1]:12.4f}  {mean[2]:27.4f}")
    trainable = sum(w.size for w in transfer.layers[-1].weights) + sum(w.size for w in transfer.layers[-2].weights)
    print(f"   the frozen base's weights and BatchNormalization statistics stayed bit-for-bit unchanged while "
          f"the head ({trainable:,} of {transfer.count_params():,} weights) trained")
    print(f"({time.perf_counter() - t0:.1f} s on {cydnn.get_num_threads()} thread(s))")


if __name__ == "__main__":
    main()
