"""A small convolutional network on the bundled 8x8 digits: >= 98% test accuracy in seconds.

    python examples/digits_cnn.py [--epochs 30] [--threads N]
"""
import argparse
import time

import numpy as np

import cydnn
from cydnn import layers


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None, help="default: every core")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        cydnn.set_num_threads(args.threads)
    cydnn.set_random_seed(args.seed)

    (x_train, y_train), (x_test, y_test) = cydnn.datasets.load_digits()
    # pixels 0..16 -> 0..1, and a channel axis: (n, 8, 8) -> (n, 8, 8, 1)
    x_train = (x_train / 16.0).astype(np.float32)[..., None]
    x_test = (x_test / 16.0).astype(np.float32)[..., None]

    model = cydnn.Sequential([
        layers.InputLayer(shape=(8, 8, 1)),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=cydnn.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, verbose=1)
    seconds = time.perf_counter() - t0
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy {accuracy:.4f}  loss {loss:.4f}  "
          f"({len(x_train)} training images, {args.epochs} epochs, {seconds:.1f} s on "
          f"{cydnn.get_num_threads()} thread(s))")


if __name__ == "__main__":
    main()
