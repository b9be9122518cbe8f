"""Small real datasets shipped inside the package (nothing is downloaded)."""
import csv
from importlib import resources

import numpy as np


def _data_path(name):
    return resources.files("cydnn").joinpath("data", name)


def load_digits(test_fraction=0.2, seed=0):
    """UCI optical digits: 1797 grey 8x8 images (values 0..16) of the digits 0-9.

    Returns ``(x_train, y_train), (x_test, y_test)`` like keras.datasets.mnist.load_data():
    images uint8 of shape (n, 8, 8), labels uint8. The split is a fixed shuffle (``seed``) with
    ``test_fraction`` of the images held out (359 of 1797 by default, 1438 for training).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"load_digits: expected test_fraction in (0, 1), received test_fraction={test_fraction!r}")
    with _data_path("digits.npz").open("rb") as f, np.load(f) as data:
        images, labels = data["images"], data["labels"]
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(len(labels) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return (images[train], labels[train]), (images[test], labels[test])


def load_sunspots():
    """Yearly mean total sunspot number, 1700-2008 (309 values). Returns (years, values)."""
    with _data_path("sunspots.csv").open("r") as f:
        rows = [r for r in csv.reader(line for line in f if not line.startswith("#"))][1:]
    years = np.array([int(r[0]) for r in rows])
    values = np.array([float(r[1]) for r in rows])
    return years, values
