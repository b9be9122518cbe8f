"""Learning on real data: small convolutional networks on the bundled 8x8 digits (1797 images,
359 held out). Fixed seeds; the kernels give the same result whatever the thread count."""
import numpy as np
import pytest

import cydnn
from cydnn import layers
from cydnn.cli import demo_model


def digits(channel_axis=True):
    (x_train, y_train), (x_test, y_test) = cydnn.datasets.load_digits()
    x_train, x_test = (x_train / 16.0).astype(np.float32), (x_test / 16.0).astype(np.float32)
    if channel_axis:
        x_train, x_test = x_train[..., None], x_test[..., None]
    return (x_train, y_train), (x_test, y_test)


def digits_cnn():
    """The model `cydnn demo` trains (examples/digits_cnn.py writes it out for reading)."""
    return demo_model("cnn")


@pytest.mark.slow
def test_cnn_reaches_98_percent_on_digits():
    """The demo's CNN reaches >= 98% held out (355 of 359 images) after 20 epochs. The demo
    trains 30, which the claim does not need: with seeds 0-3 the held-out accuracy is 98.6-99.4%
    after every epoch from the 17th to the 30th (seed 0, the one tested: 98.9% after 20, 98.6%
    after 30); before the 17th it still dips to 98.1% (seed 0, epochs 12 and 16)."""
    cydnn.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits()
    model = digits_cnn()
    model.compile(optimizer=cydnn.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=20, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] / 10
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.98, f"test accuracy {accuracy:.4f} (loss {loss:.4f})"
    assert model.predict(x_test[:5], verbose=0).shape == (5, 10)


def test_conv1d_network_learns_digit_rows_as_signals():
    # each image as a signal of 8 rows with 8 features per step: Conv1D "same" then "causal"
    cydnn.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = digits(channel_axis=False)
    model = cydnn.Sequential([
        layers.InputLayer(shape=(8, 8)),
        layers.Conv1D(32, 3, padding="same", activation="relu"),
        layers.Conv1D(32, 3, padding="causal", activation="relu"),
        layers.MaxPooling1D(2),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=cydnn.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=30, verbose=0)
    assert model.evaluate(x_test, y_test, verbose=0)[1] >= 0.96


def test_conv_output_layer_with_softmax_trains_per_position():
    # a convolution as the output layer: softmax over its filters at every position, trained with
    # sparse cross-entropy on one label per step (the loss works on the conv's logits and calls
    # its backward_preactivation)
    cydnn.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 12, 2)).astype(np.float32)
    y = (x[..., 0] > x[..., 1]).astype(np.int64)
    model = cydnn.Sequential([layers.InputLayer(shape=(12, 2)),
                              layers.Conv1D(8, 3, padding="same", activation="relu"),
                              layers.Conv1D(2, 1, activation="softmax")])
    model.compile(optimizer=cydnn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=40, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]
    assert model.evaluate(x, y, verbose=0)[1] >= 0.97
    probs = model.predict(x[:3], verbose=0)
    assert probs.shape == (3, 12, 2)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
