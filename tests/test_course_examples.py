"""The course's classic examples: the perceptron (AND and OR learned, XOR impossible), XOR
learned by a two-layer network, logistic regression (its gradients equal the closed form) and a
ReLU network approximating y = x^3 + x^2 - x - 1 on [-2, 2]."""
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import linprog

import cydnn
from helpers import subprocess_env
from cydnn import layers

X_BOOL = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
TARGETS = {"and": np.array([0, 0, 0, 1]), "or": np.array([0, 1, 1, 1]), "xor": np.array([0, 1, 1, 0])}


# --------------------------------------------------------------------------- perceptron
@pytest.mark.parametrize("gate", ["and", "or"])
def test_perceptron_learns_linearly_separable_gates(gate):
    p = cydnn.Perceptron(learning_rate=1.0, max_epochs=50).fit(X_BOOL, TARGETS[gate])
    assert p.converged_
    assert p.errors_[-1] == 0 and len(p.errors_) < 50
    np.testing.assert_array_equal(p.predict(X_BOOL), TARGETS[gate])


def test_perceptron_follows_the_update_rule():
    """The same sweep written out: w += lr (t - o) x, b += lr (t - o), o = [w.x + b >= 0]."""
    lr = 0.5
    p = cydnn.Perceptron(learning_rate=lr, max_epochs=3).fit(X_BOOL, TARGETS["and"])
    w, b, errors = np.zeros(2), 0.0, []
    for _ in range(3):
        e = 0
        for x, t in zip(X_BOOL, TARGETS["and"]):
            o = int(x @ w + b >= 0)
            w, b, e = w + lr * (t - o) * x, b + lr * (t - o), e + (o != t)
        errors.append(e)
        if e == 0:
            break
    np.testing.assert_array_equal(p.weights, w)
    assert p.bias == b and p.errors_ == errors


def test_perceptron_fails_on_xor():
    p = cydnn.Perceptron(learning_rate=1.0, max_epochs=200).fit(X_BOOL, TARGETS["xor"])
    assert not p.converged_
    assert len(p.errors_) == 200 and min(p.errors_) > 0      # a mistake in every single epoch
    assert (p.predict(X_BOOL) == TARGETS["xor"]).sum() < 4   # never all four right
    for lr in (0.1, 0.01):                                   # whatever the learning rate
        assert min(cydnn.Perceptron(learning_rate=lr, max_epochs=100).fit(X_BOOL, TARGETS["xor"]).errors_) > 0


@pytest.mark.parametrize("gate,separable", [("and", True), ("or", True), ("xor", False)])
def test_no_line_separates_xor(gate, separable):
    """The textbook fact, checked as a linear program: are there w, b with
    (2t - 1)(w.x + b) >= 1 for all four points? Feasible for AND and OR, infeasible for XOR
    (b < 0, w1 + b > 0, w2 + b > 0 give w1 + w2 + b > -b > 0, contradicting w1 + w2 + b < 0)."""
    s = 2.0 * TARGETS[gate] - 1.0
    a_ub = -s[:, None] * np.hstack([X_BOOL, np.ones((4, 1))])  # -(s_i)(w.x_i + b) <= -1
    res = linprog(np.zeros(3), A_ub=a_ub, b_ub=-np.ones(4), bounds=[(None, None)] * 3, method="highs")
    assert res.status == (0 if separable else 2)  # 0: solved, 2: infeasible
    if separable:
        w, b = res.x[:2], res.x[2]
        np.testing.assert_array_equal((X_BOOL @ w + b >= 0).astype(int), TARGETS[gate])
    # and a grid search over 9261 lines finds none for XOR
    grid = np.linspace(-2, 2, 21)
    w1, w2, b = np.meshgrid(grid, grid, grid, indexing="ij")
    outs = (X_BOOL[:, 0, None, None, None] * w1 + X_BOOL[:, 1, None, None, None] * w2 + b >= 0)
    solves = np.all(outs == TARGETS[gate][:, None, None, None].astype(bool), axis=0)
    assert solves.any() == separable


# --------------------------------------------------------------------------- XOR with a hidden layer
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_layer_network_learns_xor(seed):
    cydnn.set_random_seed(seed)
    model = cydnn.Sequential([layers.Dense(4, activation="tanh", input_shape=(2,)),
                              layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=cydnn.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(X_BOOL, TARGETS["xor"], epochs=300, batch_size=4, verbose=0)
    loss, acc = model.evaluate(X_BOOL, TARGETS["xor"])
    assert acc == 1.0 and loss < 0.05
    np.testing.assert_array_equal((model.predict(X_BOOL)[:, 0] > 0.5).astype(int), TARGETS["xor"])


# --------------------------------------------------------------------------- logistic regression
def _blobs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 2)) + np.where(y[:, None] == 1, [2.0, 1.5], [-1.5, -2.0])
    return x, y


def test_logistic_regression_gradients_are_the_closed_form():
    """For a = sigmoid(x w + b) and binary cross-entropy: dz = a - y, dw = x^T dz / m,
    db = mean(dz). Read from the layer after a step with learning rate 0."""
    cydnn.set_floatx("float64")
    x, y = _blobs(64)
    rng = np.random.default_rng(1)
    model = cydnn.Sequential([layers.Dense(1, activation="sigmoid", input_shape=(2,))])
    model.set_weights([rng.standard_normal((2, 1)), rng.standard_normal(1)])
    model.compile(optimizer=cydnn.optimizers.SGD(learning_rate=0.0), loss="binary_crossentropy")
    w, b = model.get_weights()
    loss = model.train_on_batch(x, y)
    a = 1 / (1 + np.exp(-(x @ w + b)))[:, 0]
    dz = a - y
    layer = model.layers[0]
    np.testing.assert_allclose(layer.grads[0][:, 0], x.T @ dz / len(y), rtol=1e-12)
    np.testing.assert_allclose(layer.grads[1], [dz.mean()], rtol=1e-12)
    np.testing.assert_allclose(loss, -np.mean(y * np.log(a) + (1 - y) * np.log(1 - a)), rtol=1e-12)
    # the same through the layer's own forward/backward and the loss on probabilities (unfused)
    bce = cydnn.losses.BinaryCrossentropy()
    out = layer.forward(x, training=True)
    g = np.empty_like(out)
    bce.compute(bce.prepare_targets(y, out.shape, np.float64), out, None, g)
    layer.zero_grads()
    layer.backward(g)
    np.testing.assert_allclose(layer.grads[0][:, 0], x.T @ dz / len(y), rtol=1e-10)
    np.testing.assert_allclose(layer.grads[1], [dz.mean()], rtol=1e-10)


def test_logistic_regression_separates_two_classes():
    cydnn.set_random_seed(0)
    x, y = _blobs(400)
    xt, yt = _blobs(200, seed=1)
    model = cydnn.Sequential([layers.Dense(1, activation="sigmoid", input_shape=(2,))])
    model.compile(optimizer=cydnn.optimizers.SGD(0.1), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    _, acc = model.evaluate(xt, yt)
    assert acc >= 0.97
    w, b = model.get_weights()
    assert w[0, 0] > 0 and w[1, 0] > 0  # class 1 lies up and to the right


# --------------------------------------------------------------------------- universal approximation
def _cubic(x):
    return x ** 3 + x ** 2 - x - 1


def test_relu_network_fits_a_cubic():
    """Two hidden ReLU layers fit y = x^3 + x^2 - x - 1 on [-2, 2] (y spans [-3, 9]) to a held-out
    grid MSE below 1e-3."""
    cydnn.set_random_seed(0)
    x = np.random.default_rng(0).uniform(-2, 2, (512, 1)).astype(np.float32)
    model = cydnn.Sequential([layers.Dense(64, activation="relu", input_shape=(1,)),
                              layers.Dense(64, activation="relu"), layers.Dense(1)])
    model.compile(optimizer=cydnn.optimizers.Adam(lambda step: 0.01 * 0.5 ** (step / 800)), loss="mse")
    model.fit(x, _cubic(x), epochs=150, batch_size=32, verbose=0)
    grid = np.linspace(-2, 2, 401, dtype=np.float32)[:, None]
    mse = model.evaluate(grid, _cubic(grid))
    assert mse < 1e-3, mse
    assert np.max(np.abs(model.predict(grid) - _cubic(grid))) < 0.15


# --------------------------------------------------------------------------- the runnable examples
EXAMPLES = {
    "xor.py": ["accuracy 100%  (XOR learned)"],
    "perceptron.py": ["AND: ", "converged", "NOT converged after 20 epochs", "at most 3"],
    "worked_backprop.py": ["out_h1 = 0.593269992", "out_o1 = 0.751365070", "E_o1 = 0.274811083",
                           "E_total = 0.298371109", "dE/dw5 = 0.082167041", "w5 = 0.358916480",
                           "w6 = 0.408666186", "w1 = 0.149780716"],
    "logistic_regression.py": ["closed form", "test accuracy"],
    "universal_approximation.py": ["epoch  150: held-out MSE 0.0000"],
    "digits_mlp.py": ["test accuracy 9", "confusion matrix"],
}


@pytest.mark.parametrize("script", EXAMPLES)
def test_example_runs_and_shows_its_point(script):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(root, "examples", script)], env=subprocess_env(), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for needle in EXAMPLES[script]:
        assert needle in out.stdout, f"{script}: expected {needle!r} in its output:\n{out.stdout}"
