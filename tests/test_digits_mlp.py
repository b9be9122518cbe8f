"""Learning on real data: an MLP on the bundled 8x8 digits (1438 training, 359 test images)
reaches at least 97% test accuracy in about half a second."""
import numpy as np
import pytest

import cydnn
from cydnn import layers


@pytest.fixture(scope="module")
def digits():
    (x, y), (xt, yt) = cydnn.datasets.load_digits()
    assert x.shape == (1438, 8, 8) and xt.shape == (359, 8, 8) and x.dtype == np.uint8
    assert set(np.unique(y)) == set(range(10)) and x.max() == 16
    return (x.reshape(len(x), 64) / 16.0, y), (xt.reshape(len(xt), 64) / 16.0, yt)


def test_mlp_reaches_97_percent(digits):
    (x, y), (xt, yt) = digits
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.Dense(128, activation="relu", input_shape=(64,)), layers.Dropout(0.2),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer=cydnn.optimizers.Adam(lambda step: 3e-3 * 0.5 ** (step / 900)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=40, batch_size=32, verbose=0, validation_data=(xt, yt))
    loss, acc = model.evaluate(xt, yt)
    assert acc >= 0.97, f"test accuracy {acc:.4f}"
    assert hist.history["loss"][-1] < 0.2 * hist.history["loss"][0]
    assert hist.history["val_accuracy"][-1] == pytest.approx(acc)
    pred = model.predict(xt).argmax(axis=1)
    assert np.mean(pred == yt) == pytest.approx(acc)
    assert model.predict(xt).dtype == np.float32  # float64 inputs converted to the model's dtype


def test_mlp_with_one_hot_targets_and_sgd(digits):
    (x, y), (xt, yt) = digits
    cydnn.set_random_seed(1)
    model = cydnn.Sequential([layers.Dense(64, activation="tanh", input_shape=(64,)),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer=cydnn.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, np.eye(10)[y], epochs=20, batch_size=32, verbose=0)
    _, acc = model.evaluate(xt, np.eye(10)[yt])
    assert acc >= 0.95, f"test accuracy {acc:.4f}"
