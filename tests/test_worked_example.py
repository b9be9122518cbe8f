"""The course's worked backpropagation example, reproduced to the printed digits.

A 2-2-2 network, sigmoid everywhere, inputs i1 = 0.05, i2 = 0.10, targets 0.01 and 0.99:

    h1 = sigmoid(w1 i1 + w2 i2 + b1)      o1 = sigmoid(w5 out_h1 + w6 out_h2 + b2)
    h2 = sigmoid(w3 i1 + w4 i2 + b1)      o2 = sigmoid(w7 out_h1 + w8 out_h2 + b2)

w1..w8 = 0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55; b1 = 0.35, b2 = 0.60; the error is
E = 1/2 sum (target - out)^2 (cydnn's 'sse' loss) and one step of gradient descent with lr 0.5.

In the Keras layout kernel[i, j] is the weight from input i to unit j, so the hidden kernel is
[[w1, w3], [w2, w4]] and the output kernel [[w5, w7], [w6, w8]]. The course updates only the w's;
cydnn also updates the biases, which changes no w after one step (every gradient of the step is
taken at the starting point), so all eight updated w's can be checked.
"""
import numpy as np
import pytest

import cydnn
from cydnn import layers

W = dict(w1=0.15, w2=0.20, w3=0.25, w4=0.30, w5=0.40, w6=0.45, w7=0.50, w8=0.55)
B1, B2 = 0.35, 0.60
X = np.array([[0.05, 0.10]])
T = np.array([[0.01, 0.99]])

# the course's printed values
OUT_H1 = 0.593269992
OUT_H2 = 0.596884378
OUT_O1 = 0.75136507
OUT_O2 = 0.772928465
E_O1 = 0.274811083
E_O2 = 0.023560026
E_TOTAL = 0.298371109
DE_DW5 = 0.082167041
DE_DW1 = 0.000438568
UPDATED = dict(w1=0.149780716, w2=0.19956143, w3=0.24975114, w4=0.29950229,
               w5=0.35891648, w6=0.408666186, w7=0.511301270, w8=0.561370121)


def _kernels(w):
    hidden = np.array([[w["w1"], w["w3"]], [w["w2"], w["w4"]]])
    output = np.array([[w["w5"], w["w7"]], [w["w6"], w["w8"]]])
    return hidden, output


def _ws(hidden, output):
    return dict(w1=hidden[0, 0], w2=hidden[1, 0], w3=hidden[0, 1], w4=hidden[1, 1],
                w5=output[0, 0], w6=output[1, 0], w7=output[0, 1], w8=output[1, 1])


@pytest.fixture
def model():
    cydnn.set_floatx("float64")
    m = cydnn.Sequential([layers.Dense(2, activation="sigmoid", input_shape=(2,)),
                          layers.Dense(2, activation="sigmoid")])
    hidden, output = _kernels(W)
    m.set_weights([hidden, np.full(2, B1), output, np.full(2, B2)])
    m.compile(optimizer=cydnn.optimizers.SGD(learning_rate=0.5), loss="sse")
    return m


def test_forward_pass(model):
    hidden_out = model.layers[0](X)
    np.testing.assert_allclose(hidden_out, [[OUT_H1, OUT_H2]], atol=1e-8)
    out = model.predict(X)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [[OUT_O1, OUT_O2]], atol=1e-8)
    errors = 0.5 * (T - out) ** 2
    np.testing.assert_allclose(errors, [[E_O1, E_O2]], atol=1e-8)
    np.testing.assert_allclose(model.evaluate(X, T), E_TOTAL, atol=1e-8)


def test_one_step_of_backpropagation(model):
    loss = model.train_on_batch(X, T)
    np.testing.assert_allclose(loss, E_TOTAL, atol=1e-8)  # the loss before the step
    # gradients of that step (kept by the layers after training)
    hidden, output = model.layers
    np.testing.assert_allclose(output.grads[0][0, 0], DE_DW5, atol=1e-9)   # dE/dw5
    np.testing.assert_allclose(hidden.grads[0][0, 0], DE_DW1, atol=1e-9)   # dE/dw1
    new = _ws(hidden.get_weights()[0], output.get_weights()[0])
    np.testing.assert_allclose(new["w5"], 0.35891648, atol=1e-8)
    for name, value in UPDATED.items():
        np.testing.assert_allclose(new[name], value, atol=1e-8, err_msg=name)


def test_by_hand_with_numpy():
    """The chain rule written out, as in the course: the same numbers from plain NumPy."""
    def sig(z):
        return 1 / (1 + np.exp(-z))
    hidden, output = _kernels(W)
    out_h = sig(X @ hidden + B1)
    out_o = sig(out_h @ output + B2)
    delta_o = (out_o - T) * out_o * (1 - out_o)            # dE/dnet_o
    delta_h = (delta_o @ output.T) * out_h * (1 - out_h)    # dE/dnet_h
    new = _ws(hidden - 0.5 * X.T @ delta_h, output - 0.5 * out_h.T @ delta_o)
    for name, value in UPDATED.items():
        np.testing.assert_allclose(new[name], value, atol=1e-8, err_msg=name)


def test_frozen_biases_give_the_course_step(model):
    """With the biases held fixed (as the course does) the step on the w's is the same, and the
    biases stay at 0.35 and 0.60."""
    for layer in model.layers:
        layer.params[1].trainable = False   # bias: not trainable
        layer.params[1].grad = None
    model.train_on_batch(X, T)
    hidden, output = model.layers
    np.testing.assert_array_equal(hidden.get_weights()[1], [B1, B1])
    np.testing.assert_array_equal(output.get_weights()[1], [B2, B2])
    new = _ws(hidden.get_weights()[0], output.get_weights()[0])
    for name, value in UPDATED.items():
        np.testing.assert_allclose(new[name], value, atol=1e-8, err_msg=name)
    # the error after the step went down. The course prints 0.291027924; its own rounded weights
    # give 0.2910277737 exactly, so that printed figure only holds to 2e-7.
    after = model.evaluate(X, T)
    assert after < E_TOTAL
    np.testing.assert_allclose(after, 0.2910277737, atol=1e-10)
    np.testing.assert_allclose(after, 0.291027924, atol=2e-7)
