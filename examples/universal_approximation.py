"""A ReLU network approximates a smooth function: y = x^3 + x^2 - x - 1 on [-2, 2].

    python examples/universal_approximation.py [--epochs 150] [--units 64] [--plot out.png]

Every ReLU unit adds one kink to a piecewise-linear function; with enough of them the pieces
follow any continuous curve on a bounded interval (the universal approximation theorem).
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


def f(x):
    return x ** 3 + x ** 2 - x - 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default=None, help="save a plot here (needs matplotlib)")
    args = ap.parse_args()
    cydnn.set_random_seed(args.seed)

    x = np.random.default_rng(args.seed).uniform(-2, 2, (512, 1)).astype(np.float32)
    grid = np.linspace(-2, 2, 401, dtype=np.float32)[:, None]   # held out: evenly spaced
    model = cydnn.Sequential([layers.Dense(args.units, activation="relu", input_shape=(1,)),
                              layers.Dense(args.units, activation="relu"),
                              layers.Dense(1)])
    # a learning rate halving every 800 steps settles the fit
    model.compile(optimizer=cydnn.optimizers.Adam(lambda step: 0.01 * 0.5 ** (step / 800)), loss="mse")
    for done in range(0, args.epochs, 25):
        model.fit(x, f(x), epochs=min(done + 25, args.epochs), initial_epoch=done, batch_size=32, verbose=0)
        print(f"epoch {min(done + 25, args.epochs):4d}: held-out MSE {model.evaluate(grid, f(grid)):.6f}")

    pred = model.predict(grid)
    print(f"\nmax |error| on [-2, 2]: {np.max(np.abs(pred - f(grid))):.4f} (y spans [-3, 9])")
    for xv in (-2.0, -1.0, 0.0, 1.0, 2.0):
        i = int(round((xv + 2) * 100))
        print(f"  f({xv:+.0f}) = {f(xv):+7.3f}   network: {pred[i, 0]:+7.3f}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        plt.plot(grid, f(grid), label="x^3 + x^2 - x - 1")
        plt.plot(grid, pred, "--", label="ReLU network")
        plt.legend()
        plt.savefig(args.plot)
        print(f"plot saved to {args.plot}")


if __name__ == "__main__":
    main()
