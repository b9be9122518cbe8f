"""TimeDistributed: same result as the wrapped layer on every step, float64 gradient checks,
weights shared with the wrapped layer (also when a model packs them), masks, errors, config."""
import numpy as np
import pytest

import cydnn
from cydnn import layers
from helpers import check_layer_gradients


def test_dense_on_every_step():
    x = np.random.default_rng(0).standard_normal((4, 6, 3))
    td = layers.TimeDistributed(layers.Dense(5, activation="tanh"))
    y = td(x)
    assert y.shape == (4, 6, 5)
    kernel, bias = td.get_weights()
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float32) @ kernel + bias), rtol=1e-5, atol=1e-6)
    for t in range(6):
        np.testing.assert_allclose(y[:, t], td.layer(x[:, t]), rtol=1e-6)
    assert td.weights[0] is td.layer.weights[0] and td.count_params() == 3 * 5 + 5
    assert td.compute_output_shape((None, None, 3)) == (None, None, 5)


def test_gradient_check_dense():
    x = np.random.default_rng(1).standard_normal((3, 4, 2))
    td = layers.TimeDistributed(layers.Dense(3, activation="sigmoid", bias_initializer="random_normal"))
    dx, grads = check_layer_gradients(td, x)
    assert td.dtype == np.float64 and td.layer.dtype == np.float64
    assert [g.shape for g in grads] == [(2, 3), (3,)]


def test_gradient_check_conv_on_frames():
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 5, 2))
    td = layers.TimeDistributed(layers.Conv2D(3, 3, padding="same", activation="relu"))
    dx, grads = check_layer_gradients(td, x)
    assert dx.shape == x.shape and grads[0].shape == (3, 3, 2, 3)


def test_gradient_check_lstm_on_sub_sequences():
    # (batch, time, sub-steps, features): an LSTM summarises each time step's sub-sequence
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 2))
    td = layers.TimeDistributed(layers.LSTM(3))
    dx, grads = check_layer_gradients(td, x)
    assert td(x).shape == (2, 3, 3) and len(grads) == 3


def test_flags_reach_the_wrapped_layer():
    inner = layers.Dense(2, trainable=False)
    td = layers.TimeDistributed(inner)
    assert td.trainable is False  # the wrapped layer's own setting is kept
    td.trainable = True
    td.accumulate_grads = True
    td.need_input_grad = False
    inner_ctx = td.context(None).child("layer")  # the wrapped layer's state in td's direct calls
    assert inner.trainable and inner_ctx.accumulate and not inner_ctx.need_input_grad
    x = np.ones((2, 4, 3), dtype=np.float32)
    td(x)
    td.forward(x)
    assert td.backward(np.ones((2, 4, 2))) is None


def test_trains_in_a_model_and_the_wrapped_layer_sees_the_packed_weights():
    cydnn.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    y = x @ w  # a per-step linear map
    td = layers.TimeDistributed(layers.Dense(2), input_shape=(5, 3))
    model = cydnn.Sequential([td])
    model.compile(optimizer=cydnn.optimizers.Adam(0.05), loss="mse")
    model.fit(x, y, epochs=60, batch_size=16, verbose=0)
    np.testing.assert_allclose(td.layer.kernel, w, atol=0.05)
    assert np.shares_memory(td.layer.kernel, model._params)  # rebinding reached the wrapped layer
    assert model.evaluate(x, y) < 1e-3


def test_mask_passes_through():
    td = layers.TimeDistributed(layers.Dense(2))
    mask = np.array([[True, False]])
    assert td.compute_mask(np.zeros((1, 2, 3)), mask) is mask


def test_errors():
    with pytest.raises(TypeError, match=r"TimeDistributed: expected a cydnn layer to wrap, received 3"):
        layers.TimeDistributed(3)
    td = layers.TimeDistributed(layers.Dense(2), name="td")
    with pytest.raises(ValueError, match=r"TimeDistributed 'td': expected input of rank >= 3 \(batch, time, \.\.\.\), "
                                         r"received shape \(2, 4\)"):
        td(np.zeros((2, 4)))
    td(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"Dense 'dense.*': expected input with last dimension 4, received shape"):
        td(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"TimeDistributed 'td': expected input of rank 3 \(batch, time, \.\.\.\), "
                                         r"received shape \(2, 3, 4, 1\)"):
        td(np.zeros((2, 3, 4, 1)))


def test_config_round_trip():
    td = layers.TimeDistributed(layers.Dense(4, activation="relu"), name="td_cfg")
    config = td.get_config()
    assert config["layer"]["class_name"] == "Dense"
    clone = layers.TimeDistributed.from_config(config)
    assert clone.get_config() == config
    assert clone.layer.units == 4


def test_per_step_softmax_classification_with_sparse_or_one_hot_labels():
    """A (batch, time, classes) softmax output: the cross-entropy is the mean over every
    (sample, step) row, as Keras computes it, for integer (batch, time) labels and one-hot
    (batch, time, classes) labels alike, and a per-step classifier learns."""
    rng = np.random.default_rng(0)
    x = rng.random((64, 5, 2)).astype(np.float32)
    labels = (x[:, :, 0] > 0.5).astype(int) + (x[:, :, 1] > 0.5)
    one_hot = np.eye(3)[labels]
    for loss, y in (("sparse_categorical_crossentropy", labels), ("categorical_crossentropy", one_hot)):
        cydnn.set_random_seed(0)
        model = cydnn.Sequential([layers.InputLayer(shape=(5, 2)),
                                  layers.TimeDistributed(layers.Dense(16, activation="relu")),
                                  layers.TimeDistributed(layers.Dense(3, activation="softmax"))])
        model.compile(optimizer=cydnn.optimizers.Adam(0.02), loss=loss, metrics=["accuracy"])
        p = model.predict(x).astype(np.float64)
        expected = -np.mean(np.log(np.take_along_axis(p, labels[..., None], axis=-1)))
        np.testing.assert_allclose(model.evaluate(x, y)[0], expected, rtol=1e-5)
        history = model.fit(x, y, epochs=100, batch_size=16, verbose=0)
        assert history.history["accuracy"][-1] >= 0.95, (loss, history.history["accuracy"][-1])
