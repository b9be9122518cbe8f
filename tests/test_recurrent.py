"""SimpleRNN, LSTM, GRU: Keras shapes and semantics, finite-difference gradients (float64), a NumPy
reference for masking / go_backwards / initial states, PyTorch parity, thread-count independence,
errors, configs, and training inside models."""
import numpy as np
import pytest

import cydnn
from cydnn import layers
from cydnn._kernels import recurrent as _k
from helpers import check_layer_gradients, numeric_grad

KINDS = ["SimpleRNN", "LSTM", "GRU"]                  # the cells PyTorch has too
ALL_KINDS = KINDS + ["GRU_reset_before"]              # + Keras' GRU(reset_after=False)
N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1, "GRU_reset_before": 1}


def make(kind, units=2, dtype="float64", **kw):
    if kind == "GRU_reset_before":
        return layers.GRU(units, dtype=dtype, reset_after=False, **kw)
    return getattr(layers, kind)(units, dtype=dtype, **kw)


def randomize(layer, rng, scale=0.6):
    """Random weights (biases too, so every bias gradient is exercised)."""
    layer.set_weights([rng.uniform(-scale, scale, w.shape) for w in layer.get_weights()])


def built(kind, x, rng, **kw):
    layer = make(kind, **kw)
    layer(x)
    randomize(layer, rng)
    return layer


# ---------------------------------------------------------------------------- NumPy reference
def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def ref_step(kind, weights, x_t, h, c):
    w, u = weights[0], weights[1]
    b = weights[2] if len(weights) > 2 else np.zeros((2, w.shape[1]) if kind == "GRU" else w.shape[1])
    n = u.shape[0]
    if kind == "GRU_reset_before":   # Keras reset_after=False: r multiplies h before U_h
        xp, hp = x_t @ w + b, h @ u[:, :2 * n]
        zg, r = sigmoid(xp[:, :n] + hp[:, :n]), sigmoid(xp[:, n:2 * n] + hp[:, n:])
        hh = np.tanh(xp[:, 2 * n:] + (r * h) @ u[:, 2 * n:])
        return zg * h + (1 - zg) * hh, c
    if kind == "SimpleRNN":
        return np.tanh(x_t @ w + h @ u + b), c
    if kind == "LSTM":
        z = x_t @ w + h @ u + b
        i, f, g, o = sigmoid(z[:, :n]), sigmoid(z[:, n:2 * n]), np.tanh(z[:, 2 * n:3 * n]), sigmoid(z[:, 3 * n:])
        c = f * c + i * g
        return o * np.tanh(c), c
    xp, hp = x_t @ w + b[0], h @ u + b[1]
    zg, r = sigmoid(xp[:, :n] + hp[:, :n]), sigmoid(xp[:, n:2 * n] + hp[:, n:2 * n])
    hh = np.tanh(xp[:, 2 * n:] + r * hp[:, 2 * n:])
    return zg * h + (1 - zg) * hh, c


def ref_rnn(kind, weights, x, mask=None, initial_state=None, go_backwards=False, zero_output=False):
    """Keras' loop (backend.rnn): masked steps keep the states; the output is the previous output
    (zeros at first), or zeros with zero_output_for_mask. Returns (sequence, last, h, c)."""
    batch, steps, _ = x.shape
    n = weights[1].shape[0]
    h = np.zeros((batch, n)) if initial_state is None else initial_state[0]
    c = np.zeros((batch, n)) if initial_state is None or len(initial_state) < 2 else initial_state[1]
    prev = np.zeros((batch, n))
    outs = []
    for t in (range(steps - 1, -1, -1) if go_backwards else range(steps)):
        hn, cn = ref_step(kind, weights, x[:, t], h, c)
        m = np.ones((batch, 1), bool) if mask is None else mask[:, t:t + 1]
        h, c = np.where(m, hn, h), np.where(m, cn, c)
        prev = np.where(m, hn, 0.0 if zero_output else prev)
        outs.append(prev)
    return np.stack(outs, 1), prev, h, c


# ---------------------------------------------------------------------------- shapes and weights
@pytest.mark.parametrize("kind,gates", [("SimpleRNN", 1), ("LSTM", 4), ("GRU", 3)])
def test_weight_shapes_and_names_follow_keras(kind, gates):
    layer = make(kind, units=5, dtype="float32")
    layer(np.zeros((2, 3, 7), np.float32))
    assert layer.weight_names == ["kernel", "recurrent_kernel", "bias"]
    bias_shape = (2, 3 * 5) if kind == "GRU" else (gates * 5,)
    assert [w.shape for w in layer.weights] == [(7, gates * 5), (5, gates * 5), bias_shape]
    assert layer.count_params() == 7 * gates * 5 + 5 * gates * 5 + int(np.prod(bias_shape))
    no_bias = make(kind, units=5, use_bias=False)
    no_bias(np.zeros((2, 3, 7)))
    assert no_bias.weight_names == ["kernel", "recurrent_kernel"]
    if kind == "GRU":   # reset_after=False: one bias, added to the input projection
        gru = layers.GRU(5, reset_after=False)
        gru(np.zeros((2, 3, 7), np.float32))
        assert [w.shape for w in gru.weights] == [(7, 15), (5, 15), (15,)]


def test_lstm_unit_forget_bias_and_orthogonal_recurrent_kernel():
    layer = layers.LSTM(4)
    layer(np.zeros((1, 2, 3), np.float32))
    np.testing.assert_array_equal(layer.bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    u = layer.recurrent_kernel.astype(np.float64)
    np.testing.assert_allclose(u @ u.T, np.eye(4), atol=1e-5)  # (4, 16): orthonormal rows
    plain = layers.LSTM(4, unit_forget_bias=False)
    plain(np.zeros((1, 2, 3), np.float32))
    assert not plain.bias.any()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
def test_output_shapes_and_masks(kind, return_sequences, return_state):
    layer = make(kind, units=4, dtype="float32", return_sequences=return_sequences, return_state=return_state)
    x = np.zeros((3, 6, 2), np.float32)
    y = layer(x)
    out_shape = (3, 6, 4) if return_sequences else (3, 4)
    expected = layer.compute_output_shape((None, 6, 2))
    mask = np.ones((3, 6), bool)
    if return_state:
        assert isinstance(y, list) and len(y) == 1 + N_STATES[kind]
        assert [a.shape for a in y] == [out_shape] + [(3, 4)] * N_STATES[kind]
        assert expected == [(None,) + out_shape[1:]] + [(None, 4)] * N_STATES[kind]
        m = layer.compute_mask(x, mask)
        assert (m[0] is mask) == return_sequences and m[1:] == [None] * N_STATES[kind]
    else:
        assert y.shape == out_shape and expected == (None,) + out_shape[1:]
        assert (layer.compute_mask(x, mask) is mask) == return_sequences
        assert layer.compute_mask(x, None) is None


# ---------------------------------------------------------------------------- forward semantics
OPTIONS = [
    dict(),
    dict(return_sequences=True),
    dict(go_backwards=True, return_sequences=True),
    dict(go_backwards=True),
    dict(zero_output_for_mask=True, return_sequences=True),
]


def _mask(rng, batch, steps):
    mask = rng.random((batch, steps)) > 0.35
    mask[0] = False            # a row with no real step: zero outputs, initial state kept
    mask[1, :2] = False        # leading masked steps: zero outputs before the first real step
    mask[2] = True
    return mask


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_forward_matches_the_keras_loop(kind, opts, masked, with_state):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 6, 3))
    layer = built(kind, x, rng, units=3, return_state=True, **opts)
    mask = _mask(rng, 5, 6) if masked else None
    init = [rng.standard_normal((5, 3)) for _ in range(N_STATES[kind])] if with_state else None
    out, *states = layer(x, mask=mask, initial_state=init)
    seq, last, h, c = ref_rnn(kind, layer.get_weights(), x, mask, init, opts.get("go_backwards", False),
                              opts.get("zero_output_for_mask", False))
    np.testing.assert_allclose(out, seq if opts.get("return_sequences") else last, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(states[0], h, rtol=1e-12, atol=1e-14)
    if kind == "LSTM":
        np.testing.assert_allclose(states[1], c, rtol=1e-12, atol=1e-14)


def test_initial_state_as_a_bare_array_and_states_attribute():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    gru = built("GRU", x, rng, units=3)
    h0 = rng.standard_normal((2, 3))
    y = gru(x, initial_state=h0)
    np.testing.assert_allclose(y, ref_rnn("GRU", gru.get_weights(), x, initial_state=[h0])[1], rtol=1e-12)
    np.testing.assert_array_equal(gru.states[0], y)  # no mask: the last output is the final h


# ---------------------------------------------------------------------------- gradients (float64)
GRAD_CASES = [
    dict(),
    dict(return_sequences=True),
    dict(return_state=True),
    dict(return_sequences=True, return_state=True),
    dict(go_backwards=True),
    dict(go_backwards=True, return_sequences=True, return_state=True),
    dict(use_bias=False, return_sequences=True),
]


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("opts", GRAD_CASES)
def test_gradients_finite_differences(kind, opts):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 3))
    layer = built(kind, x, rng, units=2, **opts)
    check_layer_gradients(layer, x, rtol=1e-6, atol=1e-8)


# from this batch the LSTM and SimpleRNN fold the input projection into each step's product (below
# it they project all steps first)
FOLD_MIN_BATCH = _k.fold_min_batch


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM"])
@pytest.mark.parametrize("opts", [dict(return_sequences=True), dict(go_backwards=True, return_sequences=True),
                                  dict(use_bias=False)])
def test_gradients_finite_differences_with_the_projection_folded_into_the_steps(kind, opts):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((FOLD_MIN_BATCH + 1, 3, 2))
    layer = built(kind, x, rng, units=2, return_state=True, **opts)
    check_layer_gradients(layer, x, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("masked,with_state,backwards", [(False, False, False), (True, True, False),
                                                         (True, False, True)])
def test_folded_and_projected_inputs_give_the_same_bits(kind, dtype, masked, with_state, backwards):
    """A batch of 10 folds the projection into the steps, its parts of fewer than FOLD_MIN_BATCH
    rows project first: every row's outputs and states are the same bits either way (one running
    sum per entry, bias then x then h), and so is every row's input gradient."""
    rng = np.random.default_rng(4)
    batch = 10
    assert batch >= FOLD_MIN_BATCH > 1
    x = rng.standard_normal((batch, 10, 6)).astype(dtype)
    mask = rng.random((batch, 10)) > 0.3 if masked else None
    init = [rng.standard_normal((batch, 16)).astype(dtype) for _ in range(N_STATES[kind])] if with_state else None
    layer = make(kind, units=16, dtype=dtype, return_sequences=True, return_state=True, go_backwards=backwards)
    layer(x)
    randomize(layer, rng, 0.4)
    dys = [rng.standard_normal(s).astype(dtype) for s in [(batch, 10, 16)] + [(batch, 16)] * N_STATES[kind]]

    def run(rows):
        out = [a.copy() for a in layer.forward(x[rows], mask=None if mask is None else mask[rows],
                                               initial_state=None if init is None else [i[rows] for i in init])]
        return out + [layer.backward([d[rows] for d in dys]).copy()]
    whole = run(slice(0, batch))
    step = FOLD_MIN_BATCH - 1
    parts = [run(slice(i, min(i + step, batch))) for i in range(0, batch, step)]
    for w, *p in zip(whole, *parts):
        np.testing.assert_array_equal(w, np.concatenate(p))


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("opts", [dict(), dict(return_sequences=True, return_state=True),
                                  dict(go_backwards=True, return_sequences=True),
                                  dict(zero_output_for_mask=True, return_sequences=True, go_backwards=True),
                                  dict(return_state=True, go_backwards=True)])
def test_gradients_with_mask(kind, opts):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5, 2))
    mask = _mask(rng, 4, 5)
    layer = built(kind, x, rng, units=2, **opts)
    check_layer_gradients(layer, x, rtol=1e-6, atol=1e-8,
                          forward_fn=lambda inp: layer.forward(inp, training=True, mask=mask))
    # a masked step has no effect on anything: its input gets no gradient
    dx, _ = check_layer_gradients(layer, x, rtol=1e-6, atol=1e-8,
                                  forward_fn=lambda inp: layer.forward(inp, mask=mask))
    assert not dx[~mask].any()


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("opts", [dict(), dict(return_sequences=True, return_state=True),
                                  dict(go_backwards=True, return_state=True)])
@pytest.mark.parametrize("masked", [False, True])
def test_gradients_of_initial_states(kind, opts, masked):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 2))
    mask = _mask(rng, 3, 4) if masked else None
    init = [rng.standard_normal((3, 2)) for _ in range(N_STATES[kind])]
    layer = built(kind, x, rng, units=2, **opts)
    check_layer_gradients(layer, x, rtol=1e-6, atol=1e-8,
                          forward_fn=lambda inp: layer.forward(inp, mask=mask, initial_state=init))
    y = layer.forward(x, mask=mask, initial_state=init)
    dys = [rng.standard_normal(a.shape) for a in (y if isinstance(y, list) else [y])]
    layer.backward(dys if isinstance(y, list) else dys[0])
    analytic = layer.initial_state_grads

    def loss():
        out = layer.forward(x, mask=mask, initial_state=init)
        return sum(np.sum(a * d) for a, d in zip(out if isinstance(out, list) else [out], dys))

    for s, g in zip(init, analytic):
        np.testing.assert_allclose(g, numeric_grad(loss, s), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_gradients_with_other_activations(kind):
    """The generic kernel path (any activation codes)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 2))
    kw = dict(activation="swish") if kind == "SimpleRNN" else dict(activation="softsign",
                                                                     recurrent_activation="hard_sigmoid")
    layer = built(kind, x, rng, units=2, return_sequences=True, **kw)
    check_layer_gradients(layer, x, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_gradients_with_input_dropout(kind):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 3))
    layer = built(kind, x, rng, units=2, dropout=0.4, return_sequences=True)

    def forward(inp):   # the same dropout mask on every call
        layer._rng = np.random.default_rng(7)
        return layer.forward(inp, training=True)
    dx, _ = check_layer_gradients(layer, x, rtol=1e-6, atol=1e-8, forward_fn=forward)
    dropped = layer.context(None).keep == 0
    assert dropped.any() and not dx.transpose(0, 2, 1)[dropped].any()


# ---------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_dropout_is_one_input_mask_per_sequence_and_training_only(kind):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 5, 4))
    layer = built(kind, x, rng, units=3, dropout=0.5, seed=1, return_sequences=True)
    plain = make(kind, units=3, return_sequences=True)
    plain(x)
    plain.set_weights(layer.get_weights())
    np.testing.assert_array_equal(layer(x), plain(x))          # inference: no dropout
    y = layer(x, training=True)
    keep = layer.context(None).keep
    assert keep.shape == (6, 4) and set(np.unique(keep)) <= {0.0, 2.0}
    np.testing.assert_allclose(y, plain(x * keep[:, None, :]), rtol=1e-12)


def test_recurrent_dropout_and_stateful_are_refused():
    with pytest.raises(ValueError, match="recurrent_dropout is not supported"):
        layers.LSTM(3, recurrent_dropout=0.2)
    with pytest.raises(ValueError, match="stateful=True is not supported"):
        layers.GRU(3, stateful=True)


# ---------------------------------------------------------------------------- float32 kernels
def test_fast_exp_and_tanh_are_accurate():
    z = np.linspace(-86, 86, 40001).astype(np.float32).astype(np.float64)   # exact float32 inputs
    e = np.array([_k.fast_exp(v) for v in z])
    np.testing.assert_allclose(e, np.exp(z), rtol=4e-7)
    z = np.concatenate([np.linspace(-20, 20, 40001), np.geomspace(1e-8, 1, 2000)])
    z = z.astype(np.float32).astype(np.float64)
    t = np.array([_k.fast_tanh(v) for v in z])
    np.testing.assert_allclose(t, np.tanh(z), rtol=4e-7, atol=6e-8)
    assert _k.fast_tanh(50.0) == 1.0 and _k.fast_tanh(-50.0) == -1.0 and _k.fast_exp(-200.0) < 1e-37


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("masked", [False, True])
def test_float32_vectorised_kernels_match_the_generic_path(kind, masked):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((13, 7, 5)).astype(np.float32)
    mask = _mask(rng, 13, 7) if masked else None
    fast = make(kind, units=6, dtype="float32", return_sequences=True, return_state=True)
    fast(x)
    randomize(fast, rng)
    slow = make(kind, units=6, dtype="float32", return_sequences=True, return_state=True)
    slow(x)
    slow.set_weights(fast.get_weights())
    slow._fast_math = False
    yf, ys = fast.forward(x, mask=mask), slow.forward(x, mask=mask)
    dys = [rng.standard_normal(a.shape).astype(np.float32) for a in yf]
    for a, b in zip(yf, ys):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    dxf, dxs = fast.backward(dys).copy(), slow.backward(dys)
    np.testing.assert_allclose(dxf, dxs, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast.grads, slow.grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- PyTorch parity
def _torch_module(torch, kind, layer, nin):
    """A torch RNN with the layer's weights; Keras' one bias is split at random between PyTorch's
    two (they only ever appear summed), except the GRU's, which maps one to one."""
    w, u = [np.asarray(a, np.float64) for a in layer.get_weights()[:2]]
    n = layer.units
    mod = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind](nin, n, batch_first=True)
    mod = mod.double()
    rng = np.random.default_rng(0)
    if kind == "GRU":   # Keras z, r, h -> PyTorch r, z, n
        perm = np.r_[np.arange(n, 2 * n), np.arange(n), np.arange(2 * n, 3 * n)]
        b = layer.get_weights()[2]
        params = [w[:, perm].T, u[:, perm].T, b[0][perm], b[1][perm]]
    else:              # LSTM: Keras i, f, c, o = PyTorch i, f, g, o
        perm = np.arange(w.shape[1])
        b = layer.get_weights()[2]
        b_hh = rng.uniform(-0.5, 0.5, b.shape)
        params = [w.T, u.T, b - b_hh, b_hh]
    with torch.no_grad():
        for p, v in zip([mod.weight_ih_l0, mod.weight_hh_l0, mod.bias_ih_l0, mod.bias_hh_l0], params):
            p.copy_(torch.tensor(np.ascontiguousarray(v)))
    return mod, perm


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("dtype,rtol,atol", [("float64", 1e-10, 1e-12), ("float32", 2e-4, 2e-5)])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_matches_torch(kind, return_sequences, dtype, rtol, atol, go_backwards):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    batch, steps, nin, units = 6, 9, 5, 7
    x = rng.standard_normal((batch, steps, nin))
    init = [rng.standard_normal((batch, units)) for _ in range(N_STATES[kind])]
    layer = make(kind, units=units, dtype=dtype, return_sequences=return_sequences, return_state=True,
                 go_backwards=go_backwards)
    layer(x)
    randomize(layer, rng)
    mod, perm = _torch_module(torch, kind, layer, nin)

    out, *states = layer.forward(x.astype(dtype), initial_state=init)
    xt = torch.tensor(x[:, ::-1].copy() if go_backwards else x, requires_grad=True)
    h0 = [torch.tensor(s[None], requires_grad=True) for s in init]
    seq, fin = mod(xt, tuple(h0) if kind == "LSTM" else h0[0])
    fin = list(fin) if kind == "LSTM" else [fin]
    t_out = seq if return_sequences else seq[:, -1]
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=rtol, atol=atol)
    for s, f in zip(states, fin):
        np.testing.assert_allclose(s, f[0].detach().numpy(), rtol=rtol, atol=atol)

    d_out = rng.standard_normal(out.shape)
    d_states = [rng.standard_normal(s.shape) for s in states]
    loss = (t_out * torch.tensor(d_out)).sum() + sum((f[0] * torch.tensor(d)).sum() for f, d in zip(fin, d_states))
    loss.backward()
    dx = layer.backward([d_out.astype(dtype)] + [d.astype(dtype) for d in d_states])
    t_dx = xt.grad.numpy()[:, ::-1] if go_backwards else xt.grad.numpy()
    np.testing.assert_allclose(dx, t_dx, rtol=rtol, atol=atol)
    for g, t in zip(layer.initial_state_grads, h0):
        np.testing.assert_allclose(g, t.grad.numpy()[0], rtol=rtol, atol=atol)
    gk, gr, gb = layer.grads
    np.testing.assert_allclose(gk[:, perm], mod.weight_ih_l0.grad.numpy().T, rtol=rtol, atol=atol)
    np.testing.assert_allclose(gr[:, perm], mod.weight_hh_l0.grad.numpy().T, rtol=rtol, atol=atol)
    if kind == "GRU":
        np.testing.assert_allclose(gb[0][perm], mod.bias_ih_l0.grad.numpy(), rtol=rtol, atol=atol)
        np.testing.assert_allclose(gb[1][perm], mod.bias_hh_l0.grad.numpy(), rtol=rtol, atol=atol)
    else:
        np.testing.assert_allclose(gb, mod.bias_ih_l0.grad.numpy(), rtol=rtol, atol=atol)
        np.testing.assert_allclose(gb, mod.bias_hh_l0.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("kind", KINDS)
def test_post_padding_mask_matches_torch_packed_sequences(kind):
    """A mask of trailing padding = PyTorch's packed sequences: same final states, same outputs at
    real steps; at padded steps the output repeats the last real output (Keras)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    batch, steps, nin, units = 5, 8, 3, 4
    lengths = np.array([8, 3, 5, 1, 6])
    x = rng.standard_normal((batch, steps, nin))
    x[np.arange(steps)[None] >= lengths[:, None]] = 99.0   # padding must not leak in
    mask = np.arange(steps)[None] < lengths[:, None]
    layer = make(kind, units=units, return_sequences=True, return_state=True)
    layer(x)
    randomize(layer, rng)
    mod, _ = _torch_module(torch, kind, layer, nin)
    out, *states = layer.forward(x, mask=mask)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    seq, fin = mod(packed)
    seq, _ = torch.nn.utils.rnn.pad_packed_sequence(seq, batch_first=True, total_length=steps)
    seq = seq.detach().numpy()
    fin = list(fin) if kind == "LSTM" else [fin]
    for s, f in zip(states, fin):
        np.testing.assert_allclose(s, f[0].detach().numpy(), rtol=1e-10, atol=1e-12)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(out[b, :n], seq[b, :n], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out[b, n:], np.broadcast_to(seq[b, n - 1], out[b, n:].shape), rtol=1e-10)


# ---------------------------------------------------------------------------- threads
@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 5, 13, 30, 64, 100])
def test_results_do_not_depend_on_the_thread_count(kind, dtype, batch):
    """The GEMMs over all steps run in blocks fixed by the shape or split by whole panels of
    columns; at 2 threads the weight gradients split from batch 5 on, dx from 30, the GRU's input
    projection from 64; the recurrence splits its batch in one block per thread (fixed-order packed
    products) from 5, the LSTM and SimpleRNN folding the input projection into it from
    FOLD_MIN_BATCH; below that the LSTM shares units (its own test, below)."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((batch, 30, 9)).astype(dtype)
    mask = rng.random((batch, 30)) > 0.2 if batch % 2 else None
    layer = make(kind, units=64, dtype=dtype, return_sequences=True, return_state=True)
    layer(x)
    randomize(layer, rng, 0.3)
    dys = None
    results = []
    for n in (1, 2):
        cydnn.set_num_threads(n)
        out = [a.copy() for a in layer.forward(x, mask=mask)]
        if dys is None:
            dys = [rng.standard_normal(a.shape).astype(dtype) for a in out]
        dx = layer.backward(dys).copy()
        results.append(out + [dx] + [g.copy() for g in layer.grads])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype,kw", [("float32", {}), ("float64", {}), ("float32", {"activation": "relu"})])
@pytest.mark.parametrize("batch,masked,with_state,backwards", [(1, False, False, False), (2, True, True, False),
                                                               (3, True, False, True)])
def test_a_small_batch_lstm_shares_units_across_threads_with_the_same_bits(dtype, kw, batch, masked,
                                                                           with_state, backwards):
    """Below FOLD_MIN_BATCH rows a forward pass with 128 units over 40 steps gives each thread
    whole panels of 32 units and meets after every step: the fast float32 cell, the generic one
    (float64, relu) and masking all give the bits of the one-thread pass, and so does the backward
    pass that reads what the forward stored."""
    assert _k.lstm_unit_threads(40, batch, 128, 2) == 2 and _k.lstm_unit_threads(40, batch, 128, 1) == 1
    rng = np.random.default_rng(21)
    x = rng.standard_normal((batch, 40, 7)).astype(dtype)
    mask = rng.random((batch, 40)) > 0.3 if masked else None
    init = [rng.standard_normal((batch, 128)).astype(dtype) for _ in range(2)] if with_state else None
    layer = make("LSTM", units=128, dtype=dtype, return_sequences=True, return_state=True,
                 go_backwards=backwards, **kw)
    layer(x)
    randomize(layer, rng, 0.2)
    dys = [rng.standard_normal(s).astype(dtype) for s in [(batch, 40, 128), (batch, 128), (batch, 128)]]
    results = []
    for n in (1, 2):
        cydnn.set_num_threads(n)
        out = [a.copy() for a in layer.forward(x, mask=mask, initial_state=init, training=True)]
        results.append(out + [layer.backward(dys).copy()] + [g.copy() for g in layer.grads])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    if not kw:   # and they are the LSTM's outputs (the NumPy reference in float64)
        weights = [w.astype(np.float64) for w in layer.get_weights()]
        seq, _, h, c = ref_rnn("LSTM", weights, x.astype(np.float64), mask,
                               None if init is None else [i.astype(np.float64) for i in init], backwards)
        tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-14)
        for got, want in zip(results[1], [seq, h, c]):
            np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_results_do_not_depend_on_the_thread_count_at_benchmark_size(kind):
    """Every parallel region splits at 2 threads: the GRU's projection and dx (12 blocks of 3200
    rows), the recurrence (a block of 32 rows per thread), the weight gradients (columns in whole
    panels of 32)."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((64, 50, 32)).astype(np.float32)
    layer = make(kind, units=128, dtype="float32")
    layer(x)
    dy = rng.standard_normal((64, 128)).astype(np.float32)
    results = []
    for n in (1, 2):
        cydnn.set_num_threads(n)
        y = layer.forward(x).copy()
        results.append([y, layer.backward(dy).copy()] + [g.copy() for g in layer.grads])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- errors
def test_bad_inputs_name_the_layer_expectation_and_received():
    lstm = layers.LSTM(4, name="enc")
    with pytest.raises(ValueError, match=r"LSTM 'enc': expected input of rank 3 \(batch, time, features\), "
                                         r"received shape \(2, 5\)"):
        lstm(np.zeros((2, 5)))
    lstm(np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"LSTM 'enc': expected input with 3 features .*received shape \(2, 5, 4\)"):
        lstm(np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match=r"LSTM 'enc': expected input of rank 3.*received shape \(2, 5, 3, 1\)"):
        lstm(np.zeros((2, 5, 3, 1)))
    with pytest.raises(ValueError, match=r"LSTM 'enc': expected initial_state as a list of 2 array\(s\) \[h, c\].*"
                                         r"received 1 array"):
        lstm(np.zeros((2, 5, 3)), initial_state=[np.zeros((2, 4))])
    with pytest.raises(ValueError, match=r"LSTM 'enc': expected initial state c of shape \(batch, units\) = "
                                         r"\(2, 4\), received shape \(2, 3\)"):
        lstm(np.zeros((2, 5, 3)), initial_state=[np.zeros((2, 4)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"LSTM 'enc': expected mask of shape \(batch, time\) = \(2, 5\), "
                                         r"received shape \(2, 4\)"):
        lstm(np.zeros((2, 5, 3)), mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"GRU 'g': expected initial state h of shape .*\(3, 2\), received shape \(2, 2\)"):
        layers.GRU(2, name="g")(np.zeros((3, 4, 1)), initial_state=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"SimpleRNN 's': expected at least one time step"):
        layers.SimpleRNN(2, name="s")(np.zeros((3, 0, 1)))
    lstm_s = layers.LSTM(4, return_state=True, name="st")
    lstm_s(np.zeros((2, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"LSTM 'st': expected 3 output gradient\(s\) \[output, h, c\], received 2"):
        lstm_s.backward([np.zeros((2, 4), np.float32)] * 2)
    with pytest.raises(ValueError, match=r"LSTM 'st': expected the gradient of state c of shape \(2, 4\)"):
        lstm_s.backward([np.zeros((2, 4), np.float32), None, np.zeros((2, 5), np.float32)])
    with pytest.raises(ValueError, match="expected units to be a positive int"):
        layers.LSTM(0)
    with pytest.raises(ValueError, match="expected an elementwise activation"):
        layers.SimpleRNN(3, activation="softmax")


# ---------------------------------------------------------------------------- config, models
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_config_round_trip(kind):
    layer = make(kind, units=3, dtype="float32", return_sequences=True, go_backwards=True, dropout=0.25,
                 kernel_regularizer="l2", name="rnn_x")
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.go_backwards and clone.return_sequences and clone.dropout == 0.25


def test_accumulate_grads_adds():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((3, 4, 2))
    layer = built("LSTM", x, rng, units=2)
    dy = rng.standard_normal((3, 2))
    layer.forward(x)
    layer.backward(dy)
    once = [g.copy() for g in layer.grads]
    layer.accumulate_grads = True
    layer.backward(dy)
    for g, o in zip(layer.grads, once):
        np.testing.assert_allclose(g, 2 * o, rtol=1e-12)


def _sequence_task(rng, n=256, steps=12):
    x = rng.standard_normal((n, steps, 3)).astype(np.float32)
    y = (x[:, :, 0].mean(1, keepdims=True) + 0.5 * x[:, -1, 1:2]).astype(np.float32)
    return x, y


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_learns_inside_a_sequential_model(kind):
    cydnn.set_random_seed(0)
    x, y = _sequence_task(np.random.default_rng(14))
    model = cydnn.Sequential([layers.InputLayer(shape=(12, 3)), make(kind, units=16, dtype="float32"),
                              layers.Dense(1)])
    model.compile(optimizer=cydnn.optimizers.Adam(0.01), loss="mse")
    first = model.evaluate(x, y)
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert model.evaluate(x, y) < 0.25 * first


def test_gradient_clipping_reaches_recurrent_weights():
    rng = np.random.default_rng(15)
    x, y = _sequence_task(rng, n=32)
    model = cydnn.Sequential([layers.InputLayer(shape=(12, 3)), layers.LSTM(8), layers.Dense(1)])
    model.compile(optimizer=cydnn.optimizers.SGD(1.0, clipvalue=1e-4), loss="mse")
    before = [w.copy() for w in model.layers[0].get_weights()]
    model.train_on_batch(x, y * 100)
    for b, a in zip(before, model.layers[0].get_weights()):
        assert 0 < np.abs(a - b).max() <= 1e-4 + 1e-7   # float32 rounding of w - lr * g


def test_masking_through_embedding_and_return_state_in_the_functional_api(tmp_path):
    rng = np.random.default_rng(16)
    ids = rng.integers(1, 9, (40, 10)).astype(np.float32)
    ids[np.arange(10)[None] >= rng.integers(2, 11, 40)[:, None]] = 0   # post-padding
    target = rng.standard_normal((40, 1)).astype(np.float32)
    inp = cydnn.Input(shape=(10,))
    emb = layers.Embedding(9, 4, mask_zero=True)(inp)
    seq, h, c = layers.LSTM(6, return_sequences=True, return_state=True)(emb)
    out = layers.Dense(1)(layers.Concatenate()([layers.GRU(3)(seq), h, c]))
    model = cydnn.Model(inp, out)
    model.compile("adam", "mse")
    model.fit(ids, target, epochs=2, batch_size=8, verbose=0)
    # padding changes nothing: the same sequences padded further give the same predictions
    longer = np.concatenate([ids, np.zeros((40, 5), np.float32)], 1)
    inp2 = cydnn.Input(shape=(15,))
    emb2 = model.layers[1](inp2)
    s2, h2, c2 = model.layers[2](emb2)
    model2 = cydnn.Model(inp2, model.layers[-1](model.layers[-2]([model.layers[3](s2), h2, c2])))
    np.testing.assert_allclose(model2.predict(longer), model.predict(ids), rtol=1e-5, atol=1e-6)
    path = tmp_path / "m.cydnn"
    model.save(path)
    np.testing.assert_array_equal(cydnn.load_model(path).predict(ids), model.predict(ids))


# ---------------------------------------------------------------------------- steady state
# A step calls kernels with ~25 typed-memoryview arguments: their Python objects (~5 KB) are the
# only temporaries. Every per-step array of the model below is >= 32 KB, so a peak under 16 KB
# means no array buffer was allocated, even temporarily; and no NumPy data buffer may be kept.
STEP_PEAK_LIMIT = 16384


@pytest.mark.parametrize("make_layers", [
    lambda: [layers.LSTM(32, return_sequences=True), layers.GRU(32, use_bias=False)],
    lambda: [layers.Bidirectional(layers.GRU(32, return_sequences=True)),
             layers.Bidirectional(layers.SimpleRNN(32), merge_mode="mul")],
    lambda: [layers.Bidirectional(layers.LSTM(32, dropout=0.3))],
], ids=["lstm-gru", "bidirectional", "bidirectional-dropout"])
def test_train_on_batch_allocates_no_buffers_in_steady_state(make_layers):
    import tracemalloc
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.InputLayer(shape=(16, 8))] + make_layers() + [layers.Dense(1)])
    model.compile(optimizer=cydnn.optimizers.SGD(0.01, momentum=0.9), loss="mse")
    rng = np.random.default_rng(18)
    x, y = rng.standard_normal((64, 16, 8)).astype(np.float32), rng.standard_normal((64, 1)).astype(np.float32)
    for _ in range(3):
        model.train_on_batch(x, y)
    numpy_buffers = tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)
    tracemalloc.start(25)
    try:
        peaks = []
        for _ in range(4):
            snap0 = tracemalloc.take_snapshot().filter_traces([numpy_buffers])
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            model.train_on_batch(x, y)
            peaks.append(tracemalloc.get_traced_memory()[1] - before)
            kept = [d for d in tracemalloc.take_snapshot().filter_traces([numpy_buffers]).compare_to(snap0, "traceback")
                    if d.size_diff > 0]
            assert not kept, "a step kept NumPy buffers:\n" + "\n".join(
                f"{d.size_diff} bytes at\n" + "\n".join(d.traceback.format()) for d in kept[:3])
    finally:
        tracemalloc.stop()
    assert max(peaks) <= STEP_PEAK_LIMIT, f"per-step temporaries peaked at {peaks} bytes"
