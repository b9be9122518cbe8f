"""Losses: values against formulas, float64 finite-difference gradients (with and without
sample_weight), PyTorch parity of values and gradients, and the fused softmax/sigmoid output path
of a model giving the same gradients as the unfused one."""
import numpy as np
import pytest

import cydnn
from cydnn import layers, losses
from helpers import numeric_grad

B, N = 6, 4


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _data(kind, seed=0):
    """(loss object, y_true, y_pred) in float64 for one loss kind."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((B, N)) * 2
    labels = rng.integers(0, N, B)
    onehot = np.eye(N)[labels]
    soft = _softmax(rng.standard_normal((B, N)))
    real_t, real_p = rng.standard_normal((B, N)), rng.standard_normal((B, N))
    bits = (rng.random((B, N)) < 0.5).astype(np.float64)
    return {
        "mse": (losses.MeanSquaredError(), real_t, real_p),
        "sse": (losses.SumSquaredError(), real_t, real_p),
        # |e| bounded away from 0 (MAE's kink) and from delta (Huber's)
        "mae": (losses.MeanAbsoluteError(), real_t, real_t + np.where(real_p > 0, 1, -1) * (0.2 + np.abs(real_p))),
        "huber": (losses.Huber(delta=1.0), real_t, real_t + np.where(np.abs(real_p) > 0.9, np.sign(real_p) * (1.2 + np.abs(real_p)), 0.8 * real_p)),
        "huber_delta": (losses.Huber(delta=0.5), real_t, real_t + real_p * 0.3 + np.where(np.abs(real_p) > 1, np.sign(real_p), 0)),
        "bce": (losses.BinaryCrossentropy(), bits, 0.05 + 0.9 * rng.random((B, N))),
        "bce_soft_targets": (losses.BinaryCrossentropy(), rng.random((B, N)), 0.05 + 0.9 * rng.random((B, N))),
        "bce_logits": (losses.BinaryCrossentropy(from_logits=True), bits, logits),
        "cce": (losses.CategoricalCrossentropy(), onehot, _softmax(logits)),
        "cce_soft_targets": (losses.CategoricalCrossentropy(), soft, _softmax(logits)),
        "cce_logits": (losses.CategoricalCrossentropy(from_logits=True), soft, logits),
        "sparse_cce": (losses.SparseCategoricalCrossentropy(), labels, _softmax(logits)),
        "sparse_cce_logits": (losses.SparseCategoricalCrossentropy(from_logits=True), labels, logits),
    }[kind]


KINDS = ["mse", "sse", "mae", "huber", "huber_delta", "bce", "bce_soft_targets", "bce_logits", "cce",
         "cce_soft_targets", "cce_logits", "sparse_cce", "sparse_cce_logits"]


def _value_and_grad(loss, y_true, y_pred, sw):
    """The loss value and its gradient through the same entry point models use."""
    t = loss.prepare_targets(y_true, y_pred.shape, np.float64)
    sw = loss.prepare_sample_weight(sw, y_pred.shape[0], np.float64)
    g = np.empty_like(y_pred)
    return loss.compute(t, y_pred, sw, g), g


def _reference(kind, loss, t, p, sw):
    """Per-sample losses from the textbook formulas, reduced as Keras: sum(w * l) / batch."""
    if kind.startswith("sparse"):
        t = np.eye(N)[t]
    e = p - t
    if kind == "mse":
        per = np.mean(e ** 2, axis=1)
    elif kind == "sse":
        per = 0.5 * np.sum(e ** 2, axis=1)
    elif kind == "mae":
        per = np.mean(np.abs(e), axis=1)
    elif kind.startswith("huber"):
        d = loss.delta
        per = np.mean(np.where(np.abs(e) <= d, 0.5 * e ** 2, d * (np.abs(e) - 0.5 * d)), axis=1)
    elif kind in ("bce", "bce_soft_targets"):
        per = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p), axis=1)
    elif kind == "bce_logits":
        q = 1 / (1 + np.exp(-p))
        per = -np.mean(t * np.log(q) + (1 - t) * np.log(1 - q), axis=1)
    elif kind in ("cce", "cce_soft_targets", "sparse_cce"):
        per = -np.sum(t * np.log(p), axis=1)
    else:  # from logits
        per = -np.sum(t * np.log(_softmax(p)), axis=1)
    w = np.ones(B) if sw is None else sw
    return float(np.sum(w * per) / B)


WEIGHTS = {"unweighted": None, "weighted": np.array([0.5, 2.0, 0.0, 1.0, 3.0, 0.25])}


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("kind", KINDS)
def test_value_matches_formula(kind, weights):
    loss, t, p = _data(kind)
    sw = WEIGHTS[weights]
    value, _ = _value_and_grad(loss, t, p, sw)
    np.testing.assert_allclose(value, _reference(kind, loss, t, p, sw), rtol=1e-12)
    np.testing.assert_allclose(loss(t, p, sample_weight=sw), value, rtol=1e-15)


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("kind", KINDS)
def test_gradient_finite_differences(kind, weights):
    loss, t, p = _data(kind)
    sw = WEIGHTS[weights]
    _, g = _value_and_grad(loss, t, p, sw)
    num = numeric_grad(lambda: _value_and_grad(loss, t, p, sw)[0], p, eps=1e-6)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


def test_losses_by_name_and_defaults():
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    assert isinstance(losses.get("MSE"), losses.MeanSquaredError)
    assert isinstance(losses.get("sparse_categorical_crossentropy"), losses.SparseCategoricalCrossentropy)
    assert losses.get(losses.serialize(losses.Huber(delta=2.0))).delta == 2.0
    assert losses.get(losses.serialize(losses.BinaryCrossentropy(from_logits=True))).from_logits


def test_sse_is_the_course_error():
    # E_total = 1/2 * sum (target - out)^2 for one sample (the worked backprop example)
    out, target = np.array([[0.75136507, 0.772928465]]), np.array([[0.01, 0.99]])
    np.testing.assert_allclose(losses.SumSquaredError()(target, out), 0.298371109, rtol=1e-8)


def test_probability_losses_clip_like_keras():
    # p = 0 or 1 would be log(0): probabilities are clipped to [1e-7, 1 - 1e-7]
    t = np.array([[1.0, 0.0]])
    p = np.array([[0.0, 1.0]])
    assert np.isfinite(losses.BinaryCrossentropy()(t, p))
    np.testing.assert_allclose(losses.BinaryCrossentropy()(t, p), -np.log(1e-7), rtol=1e-6)
    np.testing.assert_allclose(losses.CategoricalCrossentropy()(t, p), -np.log(1e-7), rtol=1e-6)


def test_sparse_labels_accept_column_and_float_integers():
    loss, labels, p = _data("sparse_cce")
    v = loss(labels, p)
    assert loss(labels.reshape(-1, 1), p) == v
    assert loss(labels.astype(np.float64), p) == v


def test_float32_predictions_give_float32_gradients():
    loss, t, p = _data("cce_logits")
    p32 = p.astype(np.float32)
    g = np.empty_like(p32)
    v = loss.compute(t.astype(np.float32), p32, None, g)
    ref, gref = _value_and_grad(loss, t, p, None)
    np.testing.assert_allclose(v, ref, rtol=1e-6)
    np.testing.assert_allclose(g, gref, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- PyTorch parity
def _torch_value(torch, kind, loss, t, p, sw):
    """The same reduction in torch: per-sample loss, weighted, summed, divided by the batch."""
    F = torch.nn.functional
    if kind == "mse":
        per = F.mse_loss(p, t, reduction="none").mean(1)
    elif kind == "sse":
        per = 0.5 * F.mse_loss(p, t, reduction="none").sum(1)
    elif kind == "mae":
        per = F.l1_loss(p, t, reduction="none").mean(1)
    elif kind.startswith("huber"):
        per = F.huber_loss(p, t, reduction="none", delta=loss.delta).mean(1)
    elif kind in ("bce", "bce_soft_targets"):
        per = F.binary_cross_entropy(p, t, reduction="none").mean(1)
    elif kind == "bce_logits":
        per = F.binary_cross_entropy_with_logits(p, t, reduction="none").mean(1)
    elif kind in ("cce", "cce_soft_targets"):
        per = -(t * torch.log(p)).sum(1)
    elif kind == "cce_logits":
        per = F.cross_entropy(p, t, reduction="none")          # class-probability targets
    elif kind == "sparse_cce":
        per = F.nll_loss(torch.log(p), t, reduction="none")
    else:  # sparse_cce_logits
        per = F.cross_entropy(p, t, reduction="none")
    if sw is None:
        return per.mean()
    return (per * sw).sum() / p.shape[0]


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("kind", KINDS)
def test_torch_parity(kind, weights):
    torch = pytest.importorskip("torch")
    loss, t, p = _data(kind)
    sw = WEIGHTS[weights]
    value, g = _value_and_grad(loss, t, p, sw)
    pt = torch.tensor(p, requires_grad=True)
    tt = torch.tensor(t) if not kind.startswith("sparse") else torch.tensor(t, dtype=torch.long)
    swt = None if sw is None else torch.tensor(sw)
    vt = _torch_value(torch, kind, loss, tt, pt, swt)
    vt.backward()
    np.testing.assert_allclose(value, vt.item(), rtol=1e-12)
    np.testing.assert_allclose(g, pt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_torch_mean_reductions_directly():
    """The unweighted losses equal torch's default 'mean' reductions (sse: half the sum / batch)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    _, t, p = _data("mse")
    tt, pt = torch.tensor(t), torch.tensor(p)
    np.testing.assert_allclose(losses.MeanSquaredError()(t, p), F.mse_loss(pt, tt).item(), rtol=1e-12)
    np.testing.assert_allclose(losses.SumSquaredError()(t, p), 0.5 * F.mse_loss(pt, tt, reduction="sum").item() / B,
                               rtol=1e-12)
    np.testing.assert_allclose(losses.MeanAbsoluteError()(t, p), F.l1_loss(pt, tt).item(), rtol=1e-12)
    np.testing.assert_allclose(losses.Huber()(t, p), F.huber_loss(pt, tt).item(), rtol=1e-12)
    _, labels, logits = _data("sparse_cce_logits")
    np.testing.assert_allclose(losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits),
                               F.cross_entropy(torch.tensor(logits), torch.tensor(labels)).item(), rtol=1e-12)


# --------------------------------------------------------------------------- fused output path
def _grads_fused_and_unfused(output_layers, loss_name, y, seed=0):
    """Weight gradients of a model step (where the model fuses a softmax/sigmoid output with
    cross-entropy and works on logits), and of the unfused chain on the same weights: the loss
    gradient with respect to the probabilities, then every layer's own backward."""
    cydnn.set_floatx("float64")
    cydnn.set_random_seed(seed)
    x = np.random.default_rng(seed).standard_normal((8, 5))
    model = cydnn.Sequential([layers.Dense(6, activation="tanh")] + output_layers())
    model.compile(optimizer=cydnn.optimizers.SGD(learning_rate=0.0), loss=loss_name)
    model.train_on_batch(x, y)
    assert model._fused[0] is not None, "the model should fuse this output with its loss"
    fused = [g.copy() for layer in model.layers for g in layer.grads]

    loss = losses.get(loss_name)
    out = x
    for layer in model.layers:
        out = layer.forward(out, training=True)
    t = loss.prepare_targets(y, out.shape, np.float64)
    g = np.empty_like(out)
    loss.compute(t, out, None, g)  # the kernel on probabilities (no logits code)
    for layer in reversed(model.layers):
        layer.zero_grads()
        layer.need_input_grad = True
        g = layer.backward(g)
    unfused = [g.copy() for layer in model.layers for g in layer.grads]
    return fused, unfused


@pytest.mark.parametrize("output_layers,loss_name,make_y", [
    (lambda: [layers.Dense(3, activation="softmax")], "categorical_crossentropy",
     lambda rng: np.eye(3)[rng.integers(0, 3, 8)]),
    (lambda: [layers.Dense(3, activation="softmax")], "sparse_categorical_crossentropy",
     lambda rng: rng.integers(0, 3, 8)),
    (lambda: [layers.Dense(2, activation="sigmoid")], "binary_crossentropy",
     lambda rng: (rng.random((8, 2)) < 0.5).astype(np.float64)),
    (lambda: [layers.Dense(3), layers.Activation("softmax")], "sparse_categorical_crossentropy",
     lambda rng: rng.integers(0, 3, 8)),
    (lambda: [layers.Dense(2), layers.Activation("sigmoid")], "binary_crossentropy",
     lambda rng: (rng.random((8, 2)) < 0.5).astype(np.float64)),
], ids=["dense_softmax_cce", "dense_softmax_sparse", "dense_sigmoid_bce", "activation_softmax", "activation_sigmoid"])
def test_fused_logits_path_equals_unfused(output_layers, loss_name, make_y):
    y = make_y(np.random.default_rng(7))
    fused, unfused = _grads_fused_and_unfused(output_layers, loss_name, y)
    assert len(fused) == 4
    for a, b in zip(fused, unfused):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
