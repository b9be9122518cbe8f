"""Forecast next year's sunspot number with an LSTM (the bundled yearly series, 1700-2008).

Each sample is a window of the previous 12 yearly values; the target is the next value. The
model trains on the windows whose target lies in the first 80% of the series (1700-1946) and
is scored on the rest (1947-2008), against the naive forecast "next year = this year" and a
linear autoregression fitted by least squares on the same windows.

    python examples/sunspots_lstm.py [--epochs 60] [--window 12] [--units 32] [--plot out.png]

Typical result: the LSTM's held-out MSE is about a third of the naive forecast's (0.30-0.37
over seeds 0-3), on a par with the linear autoregression.
"""
import argparse
import time

import numpy as np

import cydnn
from cydnn import layers


def sunspot_windows(window=12, train_fraction=0.8):
    """(x_train, y_train), (x_test, y_test), (mean, std): windows of standardized values.

    x: (n, window, 1) float32, y: (n,) the next value. Standardized with the mean and std of
    the training part of the series only. A window belongs to the test set when its target
    lies after the first ``train_fraction`` of the series."""
    years, values = cydnn.datasets.load_sunspots()
    split = int(train_fraction * len(values))
    mean, std = values[:split].mean(), values[:split].std()
    z = ((values - mean) / std).astype(np.float32)
    x = np.stack([z[i:i + window] for i in range(len(z) - window)])[:, :, None]
    y = z[window:]
    train = np.arange(len(y)) + window < split
    return (x[train], y[train]), (x[~train], y[~train]), (mean, std)


def sunspot_lstm(window=12, units=32):
    return cydnn.Sequential([
        layers.InputLayer(shape=(window, 1)),
        layers.LSTM(units),
        layers.Dense(1),
    ])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--window", type=int, default=12)
    ap.add_argument("--units", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="default: every core")
    ap.add_argument("--plot", default=None, help="save a plot of the held-out forecasts to this file")
    args = ap.parse_args()
    if args.threads:
        cydnn.set_num_threads(args.threads)
    cydnn.set_random_seed(args.seed)

    (x_train, y_train), (x_test, y_test), (mean, std) = sunspot_windows(args.window)
    model = sunspot_lstm(args.window, args.units)
    model.compile(optimizer=cydnn.optimizers.Adam(0.01), loss="mse")
    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, verbose=0)
    seconds = time.perf_counter() - t0

    def mse(pred):  # in squared sunspot numbers
        return float(np.mean(((pred - y_test) * std) ** 2))

    lstm = model.predict(x_test)[:, 0]
    naive = x_test[:, -1, 0]  # next year = this year
    a = np.c_[x_train[:, :, 0], np.ones(len(x_train))]
    coef = np.linalg.lstsq(a, y_train, rcond=None)[0]
    linear = np.c_[x_test[:, :, 0], np.ones(len(x_test))] @ coef

    print(f"{len(x_train)} training windows, {len(x_test)} held-out years; LSTM({args.units}) trained "
          f"{args.epochs} epochs in {seconds:.1f} s on {cydnn.get_num_threads()} thread(s)")
    print(f"held-out MSE   naive (last value) {mse(naive):8.1f}")
    print(f"               linear AR({args.window})     {mse(linear):8.1f}   ({mse(linear) / mse(naive):.2f} x naive)")
    print(f"               LSTM               {mse(lstm):8.1f}   ({mse(lstm) / mse(naive):.2f} x naive)")

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        years, _ = cydnn.datasets.load_sunspots()
        test_years = years[-len(y_test):]
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.plot(test_years, y_test * std + mean, "k-", label="observed")
        ax.plot(test_years, lstm * std + mean, "r.-", label="LSTM one-year-ahead")
        ax.plot(test_years, naive * std + mean, color="0.6", ls=":", label="naive (last value)")
        ax.set_xlabel("year")
        ax.set_ylabel("sunspot number")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot saved to {args.plot}")


if __name__ == "__main__":
    main()
