"""Rosenblatt's perceptron: it learns AND and OR, and can never learn XOR.

    python examples/perceptron.py [--epochs 20]

The perceptron rule (w += lr (target - output) x, b += lr (target - output)) converges on any
linearly separable data. XOR is not: a threshold unit would need
    b < 0 (0,0 -> 0),  w1 + b >= 0 (1,0 -> 1),  w2 + b >= 0 (0,1 -> 1),  w1 + w2 + b < 0 (1,1 -> 0);
adding the middle two gives w1 + w2 + 2b >= 0, so w1 + w2 + b >= -b > 0: a contradiction.
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

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
GATES = {"AND": [0, 0, 0, 1], "OR": [0, 1, 1, 1], "XOR": [0, 1, 1, 0]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()

    for gate, targets in GATES.items():
        p = cydnn.Perceptron(learning_rate=1.0, max_epochs=args.epochs).fit(X, targets)
        out = p.predict(X)
        print(f"{gate}: weights {p.weights}, bias {p.bias:+.1f}")
        print(f"  mistakes per epoch: {p.errors_}")
        print(f"  outputs {out.tolist()} vs targets {targets}: "
              + ("converged" if p.converged_ else f"NOT converged after {args.epochs} epochs"))

    # the same fact by brute force: no line on a grid of 41^3 (w1, w2, b) computes XOR
    g = np.linspace(-2, 2, 41)
    w1, w2, b = np.meshgrid(g, g, g, indexing="ij")
    outs = np.stack([(x1 * w1 + x2 * w2 + b >= 0) for x1, x2 in X])
    best = (outs == np.array(GATES["XOR"], bool)[:, None, None, None]).sum(axis=0).max()
    print(f"\nbest of {w1.size} lines on XOR: {best}/4 points right (a line gets at most 3)")


if __name__ == "__main__":
    main()
