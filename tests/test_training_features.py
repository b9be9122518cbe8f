"""Training-loop features on real fits, each against an independent computation (float64):
gradient accumulation, gradient clipping on every optimizer, class_weight and sample_weight,
L1/L2 penalties, Dropout only in training."""
import numpy as np
import pytest

import cydnn
from cydnn import layers, optimizers, regularizers


def _classification(n, seed=0, features=5, classes=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = rng.integers(0, classes, size=n)
    return x, y


def _mlp(seed=0, kernel_regularizer=None, features=5, classes=3):
    cydnn.set_random_seed(seed)
    return cydnn.Sequential([
        layers.Dense(7, activation="tanh", input_shape=(features,), dtype="float64",
                     kernel_regularizer=kernel_regularizer),
        layers.Dense(classes, activation="softmax", dtype="float64")])


def _assert_same_weights(a, b, rtol=1e-6, atol=1e-12):
    assert len(a) == len(b)
    for wa, wb in zip(a, b):
        np.testing.assert_allclose(wa, wb, rtol=rtol, atol=atol)


def _gradient(model, x, y, sample_weight=None):
    """The gradient of the training loss at model's weights: one SGD(1) step on a copy."""
    probe = cydnn.Sequential.from_config(model.get_config())
    probe.build((None,) + x.shape[1:])
    probe.set_weights(model.get_weights())
    probe.compile(optimizers.SGD(1.0), model._loss_spec)
    probe.train_on_batch(x, y, sample_weight=sample_weight)
    return [w0 - w1 for w0, w1 in zip(model.get_weights(), probe.get_weights())]


# ============================================================== gradient accumulation
@pytest.mark.parametrize("k, b, make_opt, reg", [
    (3, 8, lambda: optimizers.SGD(0.5), None),
    (4, 5, lambda: optimizers.SGD(0.5), None),
    (2, 12, lambda: optimizers.SGD(0.3, momentum=0.9), regularizers.L2(0.01)),
    (3, 4, lambda: optimizers.Adam(0.01), regularizers.L1L2(0.001, 0.01)),
])
def test_gradient_accumulation_equals_one_step_on_the_joined_batches(k, b, make_opt, reg):
    """k batches of b with accumulation take the step one batch of k*b takes (shuffle=False):
    one group of k batches per optimizer step, three groups per epoch, two epochs."""
    x, y = _classification(3 * k * b, seed=1)
    acc, big = _mlp(kernel_regularizer=reg), _mlp(seed=5, kernel_regularizer=reg)
    big.set_weights(acc.get_weights())
    acc.compile(make_opt(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    big.compile(make_opt(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    h_acc = acc.fit(x, y, batch_size=b, gradient_accumulation_steps=k, shuffle=False, epochs=2, verbose=0)
    h_big = big.fit(x, y, batch_size=k * b, shuffle=False, epochs=2, verbose=0)
    assert acc.optimizer.iterations == big.optimizer.iterations == 6
    _assert_same_weights(acc.get_weights(), big.get_weights())
    # the reported loss is the mean of the batch losses: the same number
    np.testing.assert_allclose(h_acc.history["loss"], h_big.history["loss"], rtol=1e-10)
    np.testing.assert_allclose(h_acc.history["accuracy"], h_big.history["accuracy"], rtol=1e-12)


def test_gradient_accumulation_steps_must_be_positive():
    x, y = _classification(8)
    model = _mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="gradient_accumulation_steps to be a positive int"):
        model.fit(x, y, gradient_accumulation_steps=0, verbose=0)


# ============================================================== gradient clipping
def _clip(grads, clipvalue=None, clipnorm=None, global_clipnorm=None):
    if clipvalue is not None:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    if clipnorm is not None:  # each variable on its own
        return [g * min(1.0, clipnorm / np.linalg.norm(g)) for g in grads]
    total = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
    return [g * min(1.0, global_clipnorm / total) for g in grads]


OPTIMIZERS = [
    lambda **kw: optimizers.SGD(0.1, momentum=0.9, **kw),
    lambda **kw: optimizers.SGD(0.1, momentum=0.9, nesterov=True, **kw),
    lambda **kw: optimizers.Adam(0.01, **kw),
    lambda **kw: optimizers.AdamW(0.01, **kw),
    lambda **kw: optimizers.RMSprop(0.01, momentum=0.5, **kw),
    lambda **kw: optimizers.Adagrad(0.1, **kw),
]


@pytest.mark.parametrize("clip", [{"clipvalue": 0.01}, {"clipnorm": 0.05}, {"global_clipnorm": 0.05}],
                         ids=lambda c: next(iter(c)))
@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=["sgd", "nesterov", "adam", "adamw", "rmsprop", "adagrad"])
def test_gradient_clipping_in_fit_on_every_optimizer(make_opt, clip):
    """Three full-batch fit steps with clipping equal three steps of the same optimizer (without
    clipping) fed gradients clipped in NumPy."""
    x, y = _classification(40, seed=2)
    model = _mlp()
    w0 = model.get_weights()
    model.compile(make_opt(**clip), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=40, epochs=3, shuffle=False, verbose=0)

    ref = [w.copy() for w in w0]
    ref_opt = make_opt()
    ref_model = _mlp(seed=9)
    ref_model.compile("sgd", "sparse_categorical_crossentropy")
    for _ in range(3):
        ref_model.set_weights(ref)
        g = _gradient(ref_model, x, y)
        clipped = _clip(g, **clip)
        assert any(not np.allclose(a, c) for a, c in zip(g, clipped)), "the clipping must be active"
        ref_opt.apply_gradients(zip(clipped, ref))
    _assert_same_weights(model.get_weights(), ref, rtol=1e-9)


# ============================================================== class_weight and sample_weight
def test_sample_weight_against_a_hand_computed_step():
    """Linear model, mse: loss = mean_i(w_i * mean_j r_ij^2), dL/dW = 2/(n*out) X^T (w * r)."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 4)), rng.normal(size=(12, 2))
    sw = rng.uniform(0.1, 3.0, size=12)
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.Dense(2, input_shape=(4,), dtype="float64")])
    model.compile(optimizers.SGD(0.1), "mse")
    W, b = model.get_weights()
    h = model.fit(x, y, sample_weight=sw, batch_size=12, epochs=1, verbose=0)
    r = x @ W + b - y
    assert h.history["loss"][0] == pytest.approx(np.mean(sw * np.mean(r ** 2, axis=1)), rel=1e-12)
    g = 2.0 / r.size * (sw[:, None] * r)
    _assert_same_weights(model.get_weights(), [W - 0.1 * x.T @ g, b - 0.1 * g.sum(axis=0)], rtol=1e-12)


@pytest.mark.parametrize("loss, one_hot", [("sparse_categorical_crossentropy", False),
                                           ("categorical_crossentropy", True)])
def test_class_weight_equals_the_matching_sample_weight(loss, one_hot):
    x, y = _classification(30, seed=4)
    targets = np.eye(3)[y] if one_hot else y
    cw = {0: 2.0, 2: 0.5}
    a, b = _mlp(), _mlp()
    for m in (a, b):
        m.compile(optimizers.SGD(0.2), loss)
    ha = a.fit(x, targets, class_weight=cw, batch_size=10, epochs=2, shuffle=False, verbose=0)
    sw = np.array([cw.get(int(c), 1.0) for c in y])
    hb = b.fit(x, targets, sample_weight=sw, batch_size=10, epochs=2, shuffle=False, verbose=0)
    _assert_same_weights(a.get_weights(), b.get_weights(), rtol=1e-12)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-12)
    # and the weighting really changed the step
    c = _mlp()
    c.compile(optimizers.SGD(0.2), loss)
    c.fit(x, targets, batch_size=10, epochs=2, shuffle=False, verbose=0)
    assert not np.allclose(c.get_weights()[0], a.get_weights()[0])


def test_class_weight_two_equals_duplicating_those_samples():
    """class_weight {0: 2} on n samples gives (1/n) sum_i w_i grad_i; duplicating the class-0
    samples gives (1/(n + n0)) times the same sum: the same step at rate lr * (n + n0) / n."""
    x, y = _classification(24, seed=6)
    n, n0 = len(y), int(np.sum(y == 0))
    assert n0 > 0
    a, b = _mlp(), _mlp()
    a.compile(optimizers.SGD(0.3), "sparse_categorical_crossentropy")
    b.compile(optimizers.SGD(0.3 * (n + n0) / n), "sparse_categorical_crossentropy")
    a.fit(x, y, class_weight={0: 2}, batch_size=n, epochs=1, verbose=0)
    xd, yd = np.concatenate([x, x[y == 0]]), np.concatenate([y, y[y == 0]])
    b.fit(xd, yd, batch_size=len(yd), epochs=1, verbose=0)
    _assert_same_weights(a.get_weights(), b.get_weights(), rtol=1e-10)


# ============================================================== L1 / L2 penalties
def test_weight_penalties_in_the_reported_loss_and_the_gradients():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 2))
    l1, l2, l2b = 0.01, 0.02, 0.03
    cydnn.set_random_seed(1)
    model = cydnn.Sequential([layers.Dense(2, input_shape=(3,), dtype="float64", bias_initializer="ones",
                                           kernel_regularizer=regularizers.L1L2(l1=l1, l2=l2),
                                           bias_regularizer=regularizers.L2(l2b))])
    model.compile(optimizers.SGD(0.1), "mse")
    W, b = model.get_weights()
    r = x @ W + b - y
    penalty = l1 * np.abs(W).sum() + l2 * (W ** 2).sum() + l2b * (b ** 2).sum()
    expected_loss = np.mean(r ** 2) + penalty
    assert model.evaluate(x, y, batch_size=16) == pytest.approx(expected_loss, rel=1e-12)
    h = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert h.history["loss"][0] == pytest.approx(expected_loss, rel=1e-12)
    g = 2.0 / r.size * r
    gW = x.T @ g + l1 * np.sign(W) + 2 * l2 * W
    gb = g.sum(axis=0) + 2 * l2b * b
    _assert_same_weights(model.get_weights(), [W - 0.1 * gW, b - 0.1 * gb], rtol=1e-12)


# ============================================================== Dropout
def test_dropout_is_active_only_in_training():
    x, y = _classification(64, seed=8, features=6)
    cydnn.set_floatx("float64")  # conftest restores the default
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.Dense(16, activation="relu", input_shape=(6,)), layers.Dropout(0.5),
                              layers.Dense(3, activation="softmax")])
    model.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")  # rate 0: weights stay put
    # inference: deterministic, and Dropout is the identity
    p1, p2 = model.predict(x), model.predict(x)
    np.testing.assert_array_equal(p1, p2)
    W1, b1, W2, b2 = model.get_weights()
    z = np.maximum(x @ W1 + b1, 0) @ W2 + b2
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p1, expected / expected.sum(axis=1, keepdims=True), rtol=1e-12)
    # training: each epoch draws new masks, so the same weights give different losses
    h = model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    losses = h.history["loss"]
    assert len(set(losses)) == 3
    assert all(abs(v - model.evaluate(x, y, batch_size=64)) > 1e-6 for v in losses)
    _assert_same_weights(model.get_weights(), [W1, b1, W2, b2], rtol=0, atol=0)
    # training=True in a direct call too: about half the hidden units zeroed, the rest scaled by 2
    hidden = model.layers[1](np.ones((200, 16)), training=True)
    assert set(np.unique(hidden)) == {0.0, 2.0} and 0.4 < np.mean(hidden == 0) < 0.6
