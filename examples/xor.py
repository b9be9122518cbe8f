"""XOR, the function a single neuron cannot learn, learned by a network with one hidden layer.

    python examples/xor.py [--epochs 300] [--seed 0]

Four points, two classes that no line separates (see examples/perceptron.py). Four tanh units
bend the input space so that a sigmoid output can separate them.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cydnn.set_random_seed(args.seed)

    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0], dtype=np.float32)

    model = cydnn.Sequential([
        layers.Dense(4, activation="tanh", input_shape=(2,)),   # hidden layer
        layers.Dense(1, activation="sigmoid"),                   # P(x1 XOR x2)
    ])
    model.compile(optimizer=cydnn.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    model.summary()
    hist = model.fit(x, y, epochs=args.epochs, batch_size=4, verbose=0)
    for epoch in (0, 9, 49, args.epochs - 1):
        if epoch < args.epochs:
            print(f"epoch {epoch + 1:4d}: loss {hist.history['loss'][epoch]:.4f}  "
                  f"accuracy {hist.history['accuracy'][epoch]:.2f}")

    p = model.predict(x)[:, 0]
    print("\n x1 x2 | target  output  class")
    for (a, b), t, out in zip(x.astype(int), y.astype(int), p):
        print(f"  {a}  {b} |   {t}     {out:.4f}    {int(out > 0.5)}")
    acc = np.mean((p > 0.5) == (y > 0.5))
    print(f"\naccuracy {acc:.0%}" + ("  (XOR learned)" if acc == 1 else "  (try more epochs)"))


if __name__ == "__main__":
    main()
