"""Activation functions: values against their textbook formulas, float64 finite-difference
derivatives (away from kinks), and PyTorch parity."""
import math

import numpy as np
import pytest

from cydnn import activations
from helpers import numeric_grad

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# name, alpha, reference f(x), points where f is not differentiable (kept away from)
CASES = [
    ("linear", None, lambda x, a: x, []),
    ("sigmoid", None, lambda x, a: _sigmoid(x), []),
    ("tanh", None, lambda x, a: np.tanh(x), []),
    ("arctan", None, lambda x, a: np.arctan(x), []),
    ("relu", None, lambda x, a: np.maximum(x, 0), [0.0]),
    ("leaky_relu", None, lambda x, a: np.where(x > 0, x, 0.2 * x), [0.0]),
    ("leaky_relu", 0.05, lambda x, a: np.where(x > 0, x, a * x), [0.0]),
    ("elu", None, lambda x, a: np.where(x > 0, x, np.exp(x) - 1), [0.0]),
    ("elu", 0.7, lambda x, a: np.where(x > 0, x, a * (np.exp(x) - 1)), [0.0]),
    ("softplus", None, lambda x, a: np.log1p(np.exp(x)), []),
    ("gelu", None, lambda x, a: 0.5 * x * (1 + _erf(x / np.sqrt(2))), []),
    ("swish", None, lambda x, a: x * _sigmoid(x), []),
    ("selu", None, lambda x, a: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1)), [0.0]),
    ("softsign", None, lambda x, a: x / (1 + np.abs(x)), [0.0]),
    ("relu6", None, lambda x, a: np.clip(x, 0, 6), [0.0, 6.0]),
    ("hard_sigmoid", None, lambda x, a: np.clip(x / 6 + 0.5, 0, 1), [-3.0, 3.0]),
    ("exponential", None, lambda x, a: np.exp(x), []),
]
IDS = [f"{n}" if a is None else f"{n}-{a}" for n, a, _, _ in CASES]


def _points(kinks, shape=(5, 7), low=-8.0, high=8.0, seed=0):
    """Random float64 points, none closer than 0.05 to a kink (so central differences with
    eps = 1e-6 never straddle one)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, size=shape)
    for k in kinks:
        close = np.abs(x - k) < 0.05
        x[close] = k + np.where(x[close] >= k, 0.1, -0.1)
    assert all(np.min(np.abs(x - k)) >= 0.05 for k in kinks)
    return x


def _forward(act, x):
    y = np.empty_like(x)
    act.forward(x, y)
    return y


def _backward(act, x, dy):
    y = _forward(act, x)
    dx = np.empty_like(x)
    act.backward(x, y, dy, dx)
    return dx


@pytest.mark.parametrize("name,alpha,ref,kinks", CASES, ids=IDS)
def test_values_match_formula(name, alpha, ref, kinks):
    act = activations.Activation(name, alpha)
    x = _points(kinks)
    np.testing.assert_allclose(_forward(act, x), ref(x, act.alpha), rtol=1e-12, atol=1e-14)
    # float32 too (computed in double, rounded once)
    np.testing.assert_allclose(_forward(act, x.astype(np.float32)), ref(x, act.alpha).astype(np.float32),
                               rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name,alpha,ref,kinks", CASES, ids=IDS)
def test_derivative_finite_differences(name, alpha, ref, kinks):
    act = activations.Activation(name, alpha)
    x = _points(kinks, low=-7.0, high=7.0)
    dy = np.random.default_rng(1).standard_normal(x.shape)
    dx = _backward(act, x, dy)
    num = numeric_grad(lambda: float(np.sum(_forward(act, x) * dy)), x, eps=1e-6)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(num).max()))


def test_softmax_rows_and_jacobian_vector_product():
    act = activations.get("softmax")
    x = np.random.default_rng(2).standard_normal((4, 6)) * 3
    y = _forward(act, x)
    ref = np.exp(x - x.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(y, ref, rtol=1e-13)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-14)
    dy = np.random.default_rng(3).standard_normal(x.shape)
    num = numeric_grad(lambda: float(np.sum(_forward(act, x) * dy)), x)
    np.testing.assert_allclose(_backward(act, x, dy), num, rtol=1e-6, atol=1e-9)


def test_softmax_is_stable_for_huge_logits():
    y = activations.softmax(np.array([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1e4]]))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], atol=1e-300)


def test_sigmoid_softplus_are_stable_at_extremes():
    x = np.array([[-800.0, -50.0, 0.0, 50.0, 800.0]])
    s = activations.sigmoid(x)
    assert np.all(np.isfinite(s)) and s[0, 0] == 0.0 and s[0, -1] == 1.0 and s[0, 2] == 0.5
    sp = activations.softplus(x)
    assert np.all(np.isfinite(sp))
    np.testing.assert_allclose(sp[0, -1], 800.0)
    np.testing.assert_allclose(sp[0, 2], math.log(2.0))


@pytest.mark.parametrize("name", ["heaviside", "sign"])
def test_step_functions_have_zero_gradient(name):
    act = activations.get(name)
    x = np.array([[-2.0, -1e-9, 0.0, 1e-9, 3.0]])
    expected = {"heaviside": [0, 0, 1, 1, 1], "sign": [-1, -1, 0, 1, 1]}[name]
    np.testing.assert_array_equal(_forward(act, x), [expected])
    dx = _backward(act, x, np.ones_like(x))
    np.testing.assert_array_equal(dx, np.zeros_like(x))


def test_names_aliases_and_configs():
    assert activations.get(None).name == "linear"
    assert activations.get("silu") == activations.get("swish")
    assert activations.get("ReLU").name == "relu"
    assert activations.get("step").name == "heaviside"
    leaky = activations.get({"name": "leaky_relu", "alpha": 0.1})
    assert leaky.alpha == 0.1 and activations.serialize(leaky) == {"name": "leaky_relu", "alpha": 0.1}
    assert activations.serialize("tanh") == "tanh"
    assert activations.get(activations.serialize(leaky)) == leaky


def test_functional_forms_take_lists_and_ints():
    np.testing.assert_allclose(activations.relu([[-1, 2]]), [[0.0, 2.0]])
    np.testing.assert_allclose(activations.tanh(np.array([0.5], dtype=np.float32)), np.tanh([0.5]), rtol=1e-6)
    assert activations.relu(np.array([1.0], dtype=np.float32)).dtype == np.float32


# --------------------------------------------------------------------------- PyTorch parity
def _torch_fn(torch, name, alpha):
    F = torch.nn.functional
    return {
        "linear": lambda t: t, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "arctan": torch.atan,
        "relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, alpha), "elu": lambda t: F.elu(t, alpha),
        "softplus": F.softplus, "gelu": F.gelu, "swish": F.silu, "selu": F.selu, "softsign": F.softsign,
        "relu6": F.relu6, "hard_sigmoid": F.hardsigmoid, "exponential": torch.exp,
        "softmax": lambda t: torch.softmax(t, dim=-1),
    }[name]


@pytest.mark.parametrize("name,alpha,ref,kinks", CASES + [("softmax", None, None, [])], ids=IDS + ["softmax"])
def test_torch_parity(name, alpha, ref, kinks):
    torch = pytest.importorskip("torch")
    act = activations.Activation(name, alpha)
    x = _points(kinks, low=-5.0, high=5.0)
    dy = np.random.default_rng(4).standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = _torch_fn(torch, name, act.alpha)(xt)
    (yt * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(_forward(act, x), yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    # torch's hardsigmoid backward multiplies by a float32 1/6 even in float64 (rel. error 3e-8)
    rtol = 1e-7 if name == "hard_sigmoid" else 1e-11
    np.testing.assert_allclose(_backward(act, x, dy), xt.grad.numpy(), rtol=rtol, atol=1e-13)
