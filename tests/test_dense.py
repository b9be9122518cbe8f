"""Core layers (Dense, Dropout, Flatten, Reshape): float64 finite-difference gradients of the
input and every weight, PyTorch parity on identical weights, the layer protocol's flags, and a
training step that allocates no array buffers once warmed up."""
import tracemalloc

import numpy as np
import pytest

import cydnn
from cydnn import layers
from helpers import check_layer_gradients

ACTIVATIONS = [("linear", None), ("sigmoid", None), ("tanh", None), ("arctan", None), ("relu", None),
               ("leaky_relu", 0.1), ("elu", 0.8), ("softplus", None), ("softmax", None), ("gelu", None),
               ("swish", None), ("selu", None), ("softsign", None), ("relu6", None), ("hard_sigmoid", None),
               ("exponential", None)]
ACT_IDS = [n for n, _ in ACTIVATIONS]
KINKS = {"relu": [0.0], "leaky_relu": [0.0], "elu": [0.0], "selu": [0.0], "softsign": [0.0],
         "relu6": [0.0, 6.0], "hard_sigmoid": [-3.0, 3.0]}


def _dense(name, alpha, units=4, in_dim=5, seed=0, **kw):
    """A float64 Dense layer with random weights and a bias, built for in_dim features."""
    act = cydnn.activations.Activation(name, alpha)
    layer = layers.Dense(units, activation=act, dtype="float64", **kw)
    layer.ensure_built((None, in_dim))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.standard_normal(w.shape) * 0.5 for w in layer.weights])
    return layer


def _inputs_away_from_kinks(layer, name, shape, seed=1):
    """Inputs whose pre-activations all lie >= 0.05 from the activation's kinks (redrawn until so),
    so central differences never straddle one."""
    rng = np.random.default_rng(seed)
    kinks = KINKS.get(name, [])
    for _ in range(1000):
        x = rng.standard_normal(shape) * 1.5
        if name == "relu6":
            x *= 3  # reach the upper kink too
        layer.forward(x, training=True)
        z = layer.logits
        if all(np.min(np.abs(z - k)) > 0.05 for k in kinks):
            return x
    raise AssertionError("no sample away from the kinks")


@pytest.mark.parametrize("name,alpha", ACTIVATIONS, ids=ACT_IDS)
def test_dense_gradients_each_activation(name, alpha):
    layer = _dense(name, alpha)
    x = _inputs_away_from_kinks(layer, name, (6, 5))
    dx, grads = check_layer_gradients(layer, x, rtol=1e-6, atol=1e-8)
    assert dx.shape == x.shape and [g.shape for g in grads] == [(5, 4), (4,)]


@pytest.mark.parametrize("name", ["heaviside", "sign"])
def test_dense_step_activations_pass_zero_gradient(name):
    layer = _dense(name, None)
    x = np.random.default_rng(0).standard_normal((3, 5))
    layer.forward(x, training=True)
    dx = layer.backward(np.ones((3, 4)))
    assert not dx.any() and not layer.grads[0].any() and not layer.grads[1].any()


def test_dense_without_bias_and_on_sequences():
    layer = layers.Dense(4, activation="tanh", use_bias=False, dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 3, 5))
    assert layer(x).shape == (2, 3, 4)  # builds for (batch, time, features)
    assert layer.weight_names == ["kernel"] and layer.bias is None
    check_layer_gradients(layer, x, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(layer(x), np.tanh(x @ layer.kernel), rtol=1e-13)


def test_dense_built_by_call_in_float64_floatx():
    cydnn.set_floatx("float64")
    layer = layers.Dense(3, activation="sigmoid")
    x = np.random.default_rng(0).standard_normal((4, 2))
    check_layer_gradients(layer, x, rtol=1e-6, atol=1e-9)
    assert layer.kernel.dtype == np.float64 and layer.kernel.shape == (2, 3)


def test_dense_accumulate_grads_and_need_input_grad():
    layer = _dense("tanh", None)
    x = np.random.default_rng(0).standard_normal((4, 5))
    dy = np.random.default_rng(1).standard_normal((4, 4))
    layer.forward(x, training=True)
    layer.backward(dy)
    once = [g.copy() for g in layer.grads]
    layer.accumulate_grads = True
    layer.forward(x, training=True)
    layer.backward(dy)
    for g, g1 in zip(layer.grads, once):
        np.testing.assert_allclose(g, 2 * g1, rtol=1e-14)
    layer.accumulate_grads = False
    layer.need_input_grad = False
    layer.forward(x, training=True)
    assert layer.backward(dy) is None
    for g, g1 in zip(layer.grads, once):
        np.testing.assert_allclose(g, g1, rtol=1e-14)


def test_dense_shapes_names_and_config():
    layer = layers.Dense(7, activation="relu", name="hidden")
    layer(np.zeros((2, 3), dtype=np.float32))
    assert layer.kernel.shape == (3, 7) and layer.bias.shape == (7,) and layer.count_params() == 28
    assert layer.kernel.dtype == np.float32
    cfg = layer.get_config()
    assert cfg["units"] == 7 and cfg["activation"] == "relu" and cfg["name"] == "hidden"
    clone = layers.Dense.from_config(cfg)
    assert clone.units == 7 and clone.activation == layer.activation


# --------------------------------------------------------------------------- Dropout, Flatten, Reshape
def test_dropout_gradients_with_a_fixed_mask():
    layer = layers.Dropout(0.4, seed=3, dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 6))

    def forward(inp):  # the same mask on every call: reseed the layer's generator
        layer._rng = np.random.default_rng(3)
        return layer.forward(inp, training=True)

    layer(x, training=True)
    check_layer_gradients(layer, x, forward_fn=forward, rtol=1e-6, atol=1e-8)
    dx, _ = check_layer_gradients(layer, x, forward_fn=forward, dy=np.ones_like(x), rtol=1e-6, atol=1e-8)
    y = forward(x)
    kept = y != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(y[kept], x[kept] / 0.6, rtol=1e-15)
    np.testing.assert_allclose(dx, kept / 0.6, rtol=1e-12)  # dy = 1: dx is the scaled mask
    assert layer.forward(x, training=False) is x


def test_dropout_rate_statistics_and_noise_shape():
    layer = layers.Dropout(0.25, seed=0, dtype="float64")
    x = np.ones((200, 50))
    y = layer.forward(x, training=True)
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(y.mean(), 1.0, atol=0.03)  # inverted dropout keeps the expectation
    shared = layers.Dropout(0.5, noise_shape=(None, 1, 4), seed=1, dtype="float64")
    y = shared.forward(np.ones((3, 5, 4)), training=True)
    assert (y == y[:, :1, :]).all()  # one mask along axis 1


def test_flatten_and_reshape_gradients():
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 2))
    flat = layers.Flatten(dtype="float64")
    assert flat(x).shape == (3, 16)
    check_layer_gradients(flat, x, rtol=1e-6, atol=1e-8)
    resh = layers.Reshape((4, -1), dtype="float64")
    assert resh(x).shape == (3, 4, 4)
    check_layer_gradients(resh, x, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(resh(x), x.reshape(3, 4, 4))


def test_dense_after_flatten_in_a_model_matches_numpy():
    cydnn.set_floatx("float64")
    model = cydnn.Sequential([layers.Flatten(), layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).standard_normal((4, 2, 5))
    y = model.predict(x)
    k, b = model.layers[1].get_weights()
    z = x.reshape(4, 10) @ k + b
    ref = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(y, ref / ref.sum(1, keepdims=True), rtol=1e-12)


# --------------------------------------------------------------------------- PyTorch parity
def _torch_act(torch, name, alpha):
    F = torch.nn.functional
    return {"linear": lambda t: t, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "arctan": torch.atan,
            "relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, alpha), "elu": lambda t: F.elu(t, alpha),
            "softplus": F.softplus, "softmax": lambda t: torch.softmax(t, -1), "gelu": F.gelu, "swish": F.silu,
            "selu": F.selu, "softsign": F.softsign, "relu6": F.relu6, "hard_sigmoid": F.hardsigmoid,
            "exponential": torch.exp}[name]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,alpha", ACTIVATIONS, ids=ACT_IDS)
def test_dense_torch_parity(name, alpha, dtype):
    torch = pytest.importorskip("torch")
    tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 12))
    dy = rng.standard_normal((16, 8))
    lin = torch.nn.Linear(12, 8, dtype=tdtype)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(rng.standard_normal((8, 12)) * 0.4))
        lin.bias.copy_(torch.tensor(rng.standard_normal(8) * 0.2))
    act = cydnn.activations.Activation(name, alpha)
    layer = layers.Dense(8, activation=act, dtype=dtype)
    layer.ensure_built((None, 12))
    layer.set_weights([lin.weight.detach().numpy().T, lin.bias.detach().numpy()])  # kernel = W^T

    xt = torch.tensor(x, dtype=tdtype, requires_grad=True)
    yt = _torch_act(torch, name, act.alpha)(lin(xt))
    (yt * torch.tensor(dy, dtype=tdtype)).sum().backward()
    y = layer.forward(x.astype(dtype), training=True)
    dx = layer.backward(dy.astype(dtype))
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    if name == "hard_sigmoid" and dtype == "float64":
        tol = dict(rtol=1e-7, atol=1e-12)  # torch's backward uses a float32 1/6
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads[0], lin.weight.grad.numpy().T, **tol)
    np.testing.assert_allclose(layer.grads[1], lin.bias.grad.numpy(), **tol)


# --------------------------------------------------------------------------- steady-state allocations
STEP_ALLOC_LIMIT = 4096  # bytes; the smallest array a step could need is a 64x10 float32 gradient (2.5 KB)


def _mlp(optimizer):
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.Dense(128, activation="relu", input_shape=(64,)),
                              layers.Dense(64, activation="tanh"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    # 250 samples in batches of 64: the last batch of each pass is shorter (58)
    return model, rng.standard_normal((250, 64)).astype(np.float32), rng.integers(0, 10, 250).astype(np.intp)


def _kept(snap0, snap1):
    grew = [s for s in snap1.compare_to(snap0, "traceback") if s.size_diff > STEP_ALLOC_LIMIT]
    return "\n".join(f"{s.size_diff} bytes kept, allocated at\n" + "\n".join(s.traceback.format()) for s in grew[:3])


OPTIMIZERS = {"sgd_momentum": lambda: cydnn.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
              "adam": lambda: cydnn.optimizers.Adam(1e-3, amsgrad=True),
              "rmsprop": lambda: cydnn.optimizers.RMSprop(1e-3, momentum=0.5, centered=True),
              "adagrad": lambda: cydnn.optimizers.Adagrad(1e-2, clipnorm=1.0)}


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_train_on_batch_allocates_no_buffers_in_steady_state(opt):
    """After warm-up, a training step (forward, fused loss, backward, optimizer, metric) allocates
    no NumPy buffer bigger than 4 KB, even temporarily: every array it needs lives in a layer,
    loss or model buffer. Measured with tracemalloc (NumPy reports its data buffers to it): the
    peak of traced memory during the step over its start. A failure shows the allocations a step
    kept, with tracebacks."""
    model, x, y = _mlp(OPTIMIZERS[opt]())
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 250, 64)]
    for xb, yb in batches:  # warm-up: buffers, optimizer slots, parameter packing
        model.train_on_batch(xb, yb)
    tracemalloc.start(25)
    try:
        peaks = []
        for xb, yb in batches * 2:
            snap0 = tracemalloc.take_snapshot()
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            model.train_on_batch(xb, yb)
            _, peak = tracemalloc.get_traced_memory()
            kept = _kept(snap0, tracemalloc.take_snapshot())
            assert not kept, "a training step kept new allocations:\n" + kept
            peaks.append(peak - before)
    finally:
        tracemalloc.stop()
    assert max(peaks) <= STEP_ALLOC_LIMIT, f"per-step temporaries peaked at {peaks} bytes"


def test_fit_steps_allocate_no_buffers_in_steady_state():
    """The same inside fit: from on_train_batch_begin to on_train_batch_end (gathering the
    shuffled batch, the step, the logs), after the first epoch has sized every buffer, including
    the epoch's shorter last batch."""
    model, x, y = _mlp(cydnn.optimizers.SGD(0.01, momentum=0.9))

    class StepPeaks(cydnn.callbacks.Callback):
        peaks = []

        def on_train_batch_begin(self, batch, logs=None):
            self.before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()

        def on_train_batch_end(self, batch, logs=None):
            self.peaks.append(tracemalloc.get_traced_memory()[1] - self.before)

    model.fit(x, y, batch_size=64, epochs=1, verbose=0)  # warm-up
    cb = StepPeaks()
    tracemalloc.start()
    try:
        model.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[cb])
    finally:
        tracemalloc.stop()
    assert len(cb.peaks) == 8
    assert max(cb.peaks) <= STEP_ALLOC_LIMIT, f"per-step temporaries peaked at {cb.peaks} bytes"
