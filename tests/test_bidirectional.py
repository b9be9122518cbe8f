"""Bidirectional: PyTorch parity (bidirectional=True), every merge mode, finite-difference gradients
(float64) with masks, states and initial states, weights and configs, errors, models."""
import numpy as np
import pytest

import cydnn
from cydnn import layers
from helpers import check_layer_gradients, numeric_grad

KINDS = ["SimpleRNN", "LSTM", "GRU"]
N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}
MERGES = ["concat", "sum", "mul", "ave", None]


def make(kind, units=2, merge_mode="concat", dtype="float64", **kw):
    return layers.Bidirectional(getattr(layers, kind)(units, **kw), merge_mode=merge_mode, dtype=dtype)


def built(kind, x, rng, **kw):
    bi = make(kind, **kw)
    bi(x)
    bi.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in bi.get_weights()])
    return bi


def _torch_weights(torch, kind, mod, ws, sfx):
    """Copy one direction's Keras weights into a torch module (see test_recurrent for the maps)."""
    w, u, b = ws
    n = u.shape[0]
    if kind == "GRU":
        perm = np.r_[np.arange(n, 2 * n), np.arange(n), np.arange(2 * n, 3 * n)]
        vals = [w[:, perm].T, u[:, perm].T, b[0][perm], b[1][perm]]
    else:
        perm = np.arange(w.shape[1])
        vals = [w.T, u.T, b, np.zeros_like(b)]
    with torch.no_grad():
        for name, v in zip(["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"], vals):
            getattr(mod, name + sfx).copy_(torch.tensor(np.ascontiguousarray(v)))
    return perm


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("dtype,rtol,atol", [("float64", 1e-10, 1e-12), ("float32", 2e-4, 2e-5)])
def test_matches_torch_bidirectional(kind, return_sequences, dtype, rtol, atol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    batch, steps, nin, units = 4, 7, 3, 5
    x = rng.standard_normal((batch, steps, nin))
    bi = make(kind, units=units, dtype=dtype, return_sequences=return_sequences, return_state=True)
    bi(x)
    bi.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in bi.get_weights()])
    ws = [np.asarray(w, np.float64) for w in bi.get_weights()]
    mod = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind](
        nin, units, batch_first=True, bidirectional=True).double()
    perm = _torch_weights(torch, kind, mod, ws[:3], "")
    _torch_weights(torch, kind, mod, ws[3:], "_reverse")

    out, *states = bi.forward(x.astype(dtype))
    xt = torch.tensor(x, requires_grad=True)
    seq, fin = mod(xt)
    fin = list(fin) if kind == "LSTM" else [fin]
    # PyTorch: seq[..., :u] forward, seq[..., u:] backward (in time order); final states (2, batch, u)
    t_out = seq if return_sequences else torch.cat([seq[:, -1, :units], seq[:, 0, units:]], -1)
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=rtol, atol=atol)
    n = N_STATES[kind]
    t_states = [f[0] for f in fin] + [f[1] for f in fin]   # forward h(, c), then backward h(, c)
    for s, t in zip(states, t_states):
        np.testing.assert_allclose(s, t.detach().numpy(), rtol=rtol, atol=atol)
    assert len(states) == 2 * n

    d_out = rng.standard_normal(out.shape)
    d_states = [rng.standard_normal(s.shape) for s in states]
    loss = (t_out * torch.tensor(d_out)).sum() + sum((t * torch.tensor(d)).sum() for t, d in zip(t_states, d_states))
    loss.backward()
    dx = bi.backward([d_out.astype(dtype)] + [d.astype(dtype) for d in d_states])
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=rtol, atol=atol)
    g = bi.grads
    for k, sfx in ((0, ""), (3, "_reverse")):
        np.testing.assert_allclose(g[k][:, perm], getattr(mod, "weight_ih_l0" + sfx).grad.numpy().T, rtol=rtol, atol=atol)
        np.testing.assert_allclose(g[k + 1][:, perm], getattr(mod, "weight_hh_l0" + sfx).grad.numpy().T,
                                   rtol=rtol, atol=atol)
        bias_grad = g[k + 2][0] if kind == "GRU" else g[k + 2]
        np.testing.assert_allclose(bias_grad[perm], getattr(mod, "bias_ih_l0" + sfx).grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("merge_mode", MERGES)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_merge_modes_combine_the_two_directions(merge_mode, return_sequences):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 2))
    bi = built("GRU", x, rng, units=4, merge_mode=merge_mode, return_sequences=return_sequences)
    fwd = layers.GRU(4, return_sequences=return_sequences, dtype="float64")
    bwd = layers.GRU(4, return_sequences=return_sequences, go_backwards=True, dtype="float64")
    fwd(x), bwd(x)
    fwd.set_weights(bi.get_weights()[:3])
    bwd.set_weights(bi.get_weights()[3:])
    f, b = fwd(x), bwd(x)
    if return_sequences:
        b = b[:, ::-1]
    expected = {"concat": np.concatenate([f, b], -1), "sum": f + b, "mul": f * b, "ave": (f + b) / 2, None: [f, b]}
    y = bi(x)
    if merge_mode is None:
        assert isinstance(y, list) and len(y) == 2
        for a, e in zip(y, expected[None]):
            np.testing.assert_allclose(a, e, rtol=1e-12)
    else:
        np.testing.assert_allclose(y, expected[merge_mode], rtol=1e-12, atol=1e-15)
    shape = bi.compute_output_shape((None, 5, 2))
    steps = (5,) if return_sequences else ()
    width = 8 if merge_mode == "concat" else 4
    assert shape == ([(None,) + steps + (4,)] * 2 if merge_mode is None else (None,) + steps + (width,))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("merge_mode", MERGES)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_gradients_finite_differences(kind, merge_mode, return_sequences):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 2))
    bi = built(kind, x, rng, merge_mode=merge_mode, return_sequences=return_sequences)
    check_layer_gradients(bi, x, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_gradients_with_mask_states_and_initial_states(kind, return_sequences):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5, 2))
    mask = rng.random((4, 5)) > 0.3
    mask[0] = False
    mask[1, :2] = False
    bi = built(kind, x, rng, return_sequences=return_sequences, return_state=True)
    init = [rng.standard_normal((4, 2)) for _ in range(2 * N_STATES[kind])]
    check_layer_gradients(bi, x, rtol=1e-6, atol=1e-8,
                          forward_fn=lambda inp: bi.forward(inp, mask=mask, initial_state=init))
    y = bi.forward(x, mask=mask, initial_state=init)
    dys = [rng.standard_normal(a.shape) for a in y]
    bi.backward(dys)
    ctx = bi.context(None)   # each direction's call state is a child of the wrapper's
    analytic = ctx.child("forward_layer").initial_state_grads + ctx.child("backward_layer").initial_state_grads

    def loss():
        return sum(np.sum(a * d) for a, d in zip(bi.forward(x, mask=mask, initial_state=init), dys))

    for s, g in zip(init, analytic):
        np.testing.assert_allclose(g, numeric_grad(loss, s), rtol=1e-6, atol=1e-8)


def test_masked_steps_give_zero_outputs_with_return_sequences():
    """Keras forces zero_output_for_mask in both directions when returning sequences."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 6, 2))
    mask = np.ones((3, 6), bool)
    mask[0, 4:] = False   # post-padding
    mask[1, :3] = False   # pre-padding
    bi = built("LSTM", x, rng, units=3, return_sequences=True)
    y = bi(x, mask=mask)
    assert not y[~mask].any() and np.abs(y[mask]).min() > 0
    # trailing padding does not change the real steps: the same as the unpadded sequence
    np.testing.assert_allclose(y[0, :4], bi(x[:1, :4])[0], rtol=1e-12)
    assert bi.compute_mask(x, mask) is mask
    last = built("LSTM", x, rng, units=3)
    np.testing.assert_allclose(last(x, mask=mask)[0], last(x[:1, :4])[0], rtol=1e-12)
    assert last.compute_mask(x, mask) is None


def test_weights_follow_keras_order_and_names():
    bi = layers.Bidirectional(layers.LSTM(3, name="enc"))
    bi(np.zeros((2, 4, 5), np.float32))
    assert bi.name.startswith("bidirectional")
    assert bi.forward_layer.name == "forward_enc" and bi.backward_layer.name == "backward_enc"
    assert not bi.forward_layer.go_backwards and bi.backward_layer.go_backwards
    assert bi.weight_names == ["forward_enc/kernel", "forward_enc/recurrent_kernel", "forward_enc/bias",
                               "backward_enc/kernel", "backward_enc/recurrent_kernel", "backward_enc/bias"]
    assert [w.shape for w in bi.weights] == [(5, 12), (3, 12), (12,)] * 2
    assert bi.count_params() == 2 * (5 * 12 + 3 * 12 + 12)
    assert bi.forward_layer.weights[0] is bi.weights[0] and bi.backward_layer.weights[0] is bi.weights[3]


def test_custom_backward_layer_and_bad_arguments():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 3))
    back = layers.GRU(2, go_backwards=True, name="rev", dtype="float64")
    bi = layers.Bidirectional(layers.LSTM(2), backward_layer=back, merge_mode="concat", dtype="float64")
    y = bi(x)
    assert bi.backward_layer is back and y.shape == (2, 4)
    np.testing.assert_allclose(y[:, 2:], back(x), rtol=1e-12)
    with pytest.raises(ValueError, match="expected a recurrent layer"):
        layers.Bidirectional(layers.Dense(3))
    with pytest.raises(ValueError, match=r"expected merge_mode in .*received merge_mode='max'"):
        layers.Bidirectional(layers.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="go_backwards to be the opposite"):
        layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(2))
    with pytest.raises(ValueError, match="return_sequences"):
        layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(2, go_backwards=True, return_sequences=True))
    bi2 = layers.Bidirectional(layers.LSTM(2), name="bi")
    with pytest.raises(ValueError, match=r"expected input of rank 3 \(batch, time, features\), received shape \(2, 3\)"):
        bi2(np.zeros((2, 3)))
    bi2(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"expected input with 4 features"):
        bi2(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"Bidirectional 'bi': expected initial_state as 4 arrays"):
        bi2(np.zeros((2, 3, 4)), initial_state=[np.zeros((2, 2))] * 2)


def test_config_round_trip_and_saved_model(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 5, 3)).astype(np.float32)
    model = cydnn.Sequential([layers.InputLayer(shape=(5, 3)),
                              layers.Bidirectional(layers.LSTM(4, return_sequences=True), merge_mode="ave"),
                              layers.Bidirectional(layers.GRU(3), backward_layer=layers.SimpleRNN(3, go_backwards=True)),
                              layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, rng.standard_normal((8, 1)), epochs=1, verbose=0)
    path = tmp_path / "bi.cydnn"
    model.save(path)
    loaded = cydnn.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for layer, merge in zip(model.layers[:2], ["ave", "concat"]):
        cfg = layer.get_config()
        clone = layers.Bidirectional.from_config(cfg)
        assert clone.get_config() == cfg and clone.merge_mode == merge
    assert isinstance(loaded.layers[1].backward_layer, layers.SimpleRNN)


def test_learns_and_trains_both_directions_in_a_model():
    cydnn.set_random_seed(0)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((256, 10, 2)).astype(np.float32)
    y = (x[:, 0, :1] - x[:, -1, 1:]).astype(np.float32)   # needs the first and the last step
    model = cydnn.Sequential([layers.InputLayer(shape=(10, 2)), layers.Bidirectional(layers.GRU(12)),
                              layers.Dense(1)])
    model.compile(optimizer=cydnn.optimizers.Adam(0.01, clipnorm=1.0), loss="mse")
    bi = model.layers[0]
    before = [w.copy() for w in bi.get_weights()]
    first = model.evaluate(x, y)
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    assert model.evaluate(x, y) < 0.2 * first
    assert all(np.abs(a - b).max() > 0 for a, b in zip(bi.get_weights(), before))
    # the model trains views of its flat buffer: the copies inside the wrapper see them
    assert all(np.shares_memory(w, v) for w, v in zip(bi.weights, bi.forward_layer.weights + bi.backward_layer.weights))


@pytest.mark.parametrize("return_sequences", [False, True])
def test_gru_reset_before_both_directions_gradients(return_sequences):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 2))
    bi = layers.Bidirectional(layers.GRU(2, reset_after=False, return_sequences=return_sequences), dtype="float64")
    bi(x)
    bi.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in bi.get_weights()])
    assert [w.shape for w in bi.weights] == [(2, 6), (2, 6), (6,)] * 2
    assert not bi.backward_layer.reset_after
    check_layer_gradients(bi, x, rtol=1e-6, atol=1e-8)


def test_multi_output_forms_in_the_functional_api():
    """return_state gives [merged, forward h, c, backward h, c]; merge_mode=None two sequences;
    each flows on as its own tensor and states that feed nothing get zero gradients."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((32, 7, 3)).astype(np.float32)
    y = rng.standard_normal((32, 1)).astype(np.float32)
    inp = cydnn.Input(shape=(7, 3))
    out, hf, cf, hb, cb = layers.Bidirectional(layers.LSTM(4, return_state=True))(inp)
    a, b = layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode=None)(inp)
    z = layers.Dense(1)(layers.Concatenate()([out, hf, cb, layers.GRU(2)(layers.Add()([a, b]))]))
    model = cydnn.Model(inp, z)
    assert model.layers[1].compute_output_shape((None, 7, 3)) == [(None, 8)] + [(None, 4)] * 4
    model.compile(optimizer=cydnn.optimizers.Adam(0.01), loss="mse")
    first = model.evaluate(x, y)
    for _ in range(30):
        model.train_on_batch(x, y)
    assert model.evaluate(x, y) < 0.8 * first
