"""Logistic regression as a one-neuron network: Dense(1, sigmoid) + binary cross-entropy.

    python examples/logistic_regression.py [--epochs 20]

Two Gaussian classes in the plane. The gradient of the mean cross-entropy has the closed form
    dz = a - y,   dw = x^T dz / m,   db = mean(dz)
(a = sigmoid(x w + b)); the script checks cydnn's gradient against it, then trains.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import cydnn
except ImportError:  # a source checkout that is not installed: use its src/ (built in place)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import cydnn
from cydnn import layers  # noqa: E402


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 2)) + np.where(y[:, None] == 1, [2.0, 1.5], [-1.5, -2.0])
    return x, y


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    cydnn.set_floatx("float64")
    cydnn.set_random_seed(0)
    x, y = blobs(400, seed=0)
    x_test, y_test = blobs(200, seed=1)

    model = cydnn.Sequential([layers.Dense(1, activation="sigmoid", input_shape=(2,))])

    # the gradient of one batch, with learning rate 0 (nothing moves), against the closed form
    model.compile(optimizer=cydnn.optimizers.SGD(0.0), loss="binary_crossentropy")
    w, b = model.get_weights()
    model.train_on_batch(x, y)
    a = 1 / (1 + np.exp(-(x @ w + b)))[:, 0]
    dz = a - y
    print("gradient of the mean cross-entropy")
    print(f"  cydnn:       dw = {model.layers[0].grads[0][:, 0]}, db = {model.layers[0].grads[1][0]:.10f}")
    print(f"  closed form: dw = {x.T @ dz / len(y)}, db = {dz.mean():.10f}")

    model.compile(optimizer=cydnn.optimizers.SGD(0.1), loss="binary_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=args.epochs, batch_size=16, verbose=0)
    loss, acc = model.evaluate(x_test, y_test)
    w, b = model.get_weights()
    print(f"\nafter {args.epochs} epochs: training loss {hist.history['loss'][-1]:.4f}, "
          f"test loss {loss:.4f}, test accuracy {acc:.1%}")
    print(f"decision boundary: {w[0, 0]:.3f} x1 + {w[1, 0]:.3f} x2 + {b[0]:.3f} = 0")


if __name__ == "__main__":
    main()
