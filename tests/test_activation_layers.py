"""Activation layers: Activation (every function), PReLU (per feature and with shared_axes),
Maxout, and the configurable ReLU / LeakyReLU / ELU / Softmax layers. Float64 finite-difference
gradients, reference values, PyTorch parity where torch has the layer."""
import numpy as np
import pytest

import cydnn
from cydnn import layers
from helpers import check_layer_gradients

SMOOTH = ["linear", "sigmoid", "tanh", "arctan", "softplus", "gelu", "swish", "softmax", "exponential"]
KINKED = {"relu": [0.0], "leaky_relu": [0.0], "elu": [0.0], "selu": [0.0], "softsign": [0.0],
          "relu6": [0.0, 6.0], "hard_sigmoid": [-3.0, 3.0]}


def _away_from(x, kinks, gap=0.1):
    for k in kinks:
        close = np.abs(x - k) < gap
        x[close] = k + np.where(x[close] >= k, gap, -gap)
    return x


@pytest.mark.parametrize("name", SMOOTH + list(KINKED))
def test_activation_layer_gradients(name):
    span = 3.0 if name == "exponential" else 7.0  # e^7 terms would swamp the differences' roundoff
    x = _away_from(np.random.default_rng(0).uniform(-span, span, (4, 3, 5)), KINKED.get(name, []))
    layer = layers.Activation(name, dtype="float64")
    y = layer(x)
    np.testing.assert_allclose(y, cydnn.activations.get(name)(x), rtol=1e-15)
    check_layer_gradients(layer, x, rtol=1e-6, atol=1e-8)


def test_activation_layer_step_functions_zero_gradient():
    layer = layers.Activation("heaviside", dtype="float64")
    x = np.array([[-1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(layer(x), [[0.0, 1.0, 1.0]])
    assert not layer.backward(np.ones_like(x)).any()


@pytest.mark.parametrize("make,ref", [
    (lambda: layers.ReLU(), lambda x: np.maximum(x, 0)),
    (lambda: layers.LeakyReLU(), lambda x: np.where(x > 0, x, 0.3 * x)),
    (lambda: layers.LeakyReLU(negative_slope=0.05), lambda x: np.where(x > 0, x, 0.05 * x)),
    (lambda: layers.ELU(alpha=0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    (lambda: layers.Softmax(), lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
], ids=["relu", "leaky_default", "leaky_0.05", "elu_0.5", "softmax"])
def test_configurable_activation_layers(make, ref):
    cydnn.set_floatx("float64")
    layer = make()
    x = _away_from(np.random.default_rng(1).standard_normal((3, 6)), [0.0])
    np.testing.assert_allclose(layer(x), ref(x), rtol=1e-13)
    check_layer_gradients(layer, x, rtol=1e-6, atol=1e-9)
    clone = type(layer).from_config(layer.get_config())
    np.testing.assert_allclose(clone(x), ref(x), rtol=1e-13)


# --------------------------------------------------------------------------- PReLU
def _prelu(x, alpha):
    return np.where(x > 0, x, alpha * x)


@pytest.mark.parametrize("shape,shared_axes,alpha_shape", [
    ((4, 6), None, (6,)),
    ((3, 5, 4), None, (5, 4)),
    ((3, 5, 4), [1], (1, 4)),
    ((2, 3, 4, 5), [1, 2], (1, 1, 5)),   # one slope per channel of an NHWC image
    ((2, 3, 4, 5), [1, 2, 3], (1, 1, 1)),
])
def test_prelu_gradients_and_shared_axes(shape, shared_axes, alpha_shape):
    rng = np.random.default_rng(0)
    x = _away_from(rng.standard_normal(shape), [0.0], gap=0.05)
    layer = layers.PReLU(shared_axes=shared_axes, dtype="float64")
    layer.ensure_built(x.shape)
    assert layer.weights[0].shape == alpha_shape
    layer.set_weights([rng.uniform(0.05, 0.5, alpha_shape)])
    np.testing.assert_allclose(layer(x), _prelu(x, layer.weights[0]), rtol=1e-15)
    check_layer_gradients(layer, x, rtol=1e-6, atol=1e-9)


def test_prelu_defaults_to_relu_and_accumulates():
    layer = layers.PReLU(dtype="float64")
    x = np.array([[-2.0, 3.0], [1.0, -1.0]])
    np.testing.assert_array_equal(layer(x), [[0.0, 3.0], [1.0, 0.0]])  # alpha_initializer="zeros"
    layer.forward(x, training=True)
    layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(layer.grads[0], [-2.0, -1.0])
    layer.accumulate_grads = True
    layer.forward(x, training=True)
    layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(layer.grads[0], [-4.0, -2.0])


def test_prelu_torch_parity_per_channel():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3, 5))          # NHWC
    dy = rng.standard_normal(x.shape)
    alpha = rng.uniform(0.05, 0.4, 5)
    layer = layers.PReLU(shared_axes=[1, 2], dtype="float64")
    layer.ensure_built(x.shape)
    layer.set_weights([alpha.reshape(1, 1, 5)])
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    tp = torch.nn.PReLU(num_parameters=5, dtype=torch.float64)   # NCHW, one slope per channel
    with torch.no_grad():
        tp.weight.copy_(torch.tensor(alpha))
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    yt = tp(xt)
    (yt * torch.tensor(dy.transpose(0, 3, 1, 2).copy())).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-14)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-13)
    np.testing.assert_allclose(layer.grads[0].reshape(-1), tp.weight.grad.numpy(), rtol=1e-12)


# --------------------------------------------------------------------------- Maxout
def _maxout_ref(x, kernel, bias, units, pieces):
    z = (x @ kernel + bias).reshape(len(x), units, pieces)
    return z.max(axis=2)


def test_maxout_values_and_gradients():
    rng = np.random.default_rng(0)
    layer = layers.Maxout(3, pieces=4, dtype="float64")
    x = rng.standard_normal((5, 6))
    layer.ensure_built(x.shape)
    assert [w.shape for w in layer.weights] == [(6, 12), (12,)]
    layer.set_weights([rng.standard_normal((6, 12)), rng.standard_normal(12)])
    y = layer(x)
    np.testing.assert_allclose(y, _maxout_ref(x, *layer.get_weights(), 3, 4), rtol=1e-13)
    z = x @ layer.weights[0] + layer.weights[1]
    top2 = np.sort(z.reshape(5, 3, 4), axis=2)[..., -2:]
    assert np.min(top2[..., 1] - top2[..., 0]) > 1e-4  # no ties: the max is differentiable here
    dx, grads = check_layer_gradients(layer, x, rtol=1e-6, atol=1e-9)
    # only the winning piece of each unit gets a bias gradient
    winners = np.zeros(12, dtype=bool)
    winners[(np.arange(3) * 4)[None, :] + z.reshape(5, 3, 4).argmax(2)] = True
    assert not grads[1][~winners].any()


def test_maxout_without_bias_and_one_piece_is_linear():
    rng = np.random.default_rng(1)
    layer = layers.Maxout(4, pieces=1, use_bias=False, dtype="float64")
    x = rng.standard_normal((3, 2))
    layer.ensure_built(x.shape)
    np.testing.assert_allclose(layer(x), x @ layer.weights[0], rtol=1e-13)
    check_layer_gradients(layer, x, rtol=1e-6, atol=1e-9)


def test_activation_layers_in_a_model_train():
    cydnn.set_random_seed(0)
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.float32)
    model = cydnn.Sequential([layers.Dense(16, input_shape=(4,)), layers.PReLU(alpha_initializer="zeros"),
                              layers.Maxout(8, pieces=2), layers.LeakyReLU(0.1),
                              layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=cydnn.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    before = model.evaluate(x, y)[0]
    model.fit(x, y, epochs=60, batch_size=16, verbose=0)
    loss, acc = model.evaluate(x, y)
    assert loss < 0.5 * before and acc >= 0.9
