"""A multilayer perceptron on the bundled 8x8 digits: about 98% test accuracy in a second.

    python examples/digits_mlp.py [--epochs 40] [--threads N] [--seed 0]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

try:
    import cydnn
except ImportError:  # a source checkout that is not installed: use its src/ (built in place)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import cydnn
from cydnn import layers  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=None, help="default: every core")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        cydnn.set_num_threads(args.threads)
    cydnn.set_random_seed(args.seed)

    (x_train, y_train), (x_test, y_test) = cydnn.datasets.load_digits()
    # (n, 8, 8) pixels 0..16 -> (n, 64) in 0..1
    x_train = x_train.reshape(len(x_train), 64).astype(np.float32) / 16
    x_test = x_test.reshape(len(x_test), 64).astype(np.float32) / 16
    print(f"{len(x_train)} training and {len(x_test)} test images, {cydnn.get_num_threads()} thread(s)")

    model = cydnn.Sequential([
        layers.Dense(128, activation="relu", input_shape=(64,)),
        layers.Dropout(0.2),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=cydnn.optimizers.Adam(lambda step: 3e-3 * 0.5 ** (step / 900)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=2 if args.epochs <= 10 else 0)
    seconds = time.perf_counter() - t0
    loss, acc = model.evaluate(x_test, y_test)
    print(f"trained {args.epochs} epochs in {seconds:.2f} s; test loss {loss:.4f}, test accuracy {acc:.2%}")

    pred = model.predict(x_test).argmax(axis=1)
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (y_test, pred), 1)
    print("\nconfusion matrix (rows: true digit, columns: predicted)")
    print("     " + " ".join(f"{d:3d}" for d in range(10)))
    for d in range(10):
        print(f"  {d}: " + " ".join(f"{c:3d}" for c in confusion[d]))


if __name__ == "__main__":
    main()
