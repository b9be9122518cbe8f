"""Attention, AdditiveAttention and AttentionPooling: NumPy reference forward, float64 gradient
checks of every input and weight, PyTorch parity, masks, thread-count independence, errors."""
import numpy as np
import pytest

import cydnn
from cydnn import layers
from helpers import check_layer_gradients


def _softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _reference(q, v, k=None, mode="dot", scale=1.0, w=None, outer=1.0, vmask=None, qmask=None, causal=False):
    """Keras' formulas in NumPy: scores, masked softmax (minus 1e9), weighted sum, query mask."""
    k = v if k is None else k
    if mode == "dot":
        s = scale * q @ k.transpose(0, 2, 1)
    else:
        t = np.tanh(scale * (q[:, :, None, :] + k[:, None, :, :]))
        s = outer * np.sum((1.0 if w is None else w) * t, axis=-1)
    keep = np.ones(s.shape, dtype=bool)
    if vmask is not None:
        keep &= vmask[:, None, :]
    if causal:
        keep &= np.tril(np.ones(s.shape[1:], dtype=bool))[None]
    a = _softmax(s - 1e9 * ~keep)
    out = a @ v
    if qmask is not None:
        out = out * qmask[:, :, None]
    return out, a


def _data(b=2, tq=3, tv=4, d=5, dv=None, seed=0):
    rng = np.random.default_rng(seed)
    dv = d if dv is None else dv
    return rng.standard_normal((b, tq, d)), rng.standard_normal((b, tv, dv)), rng.standard_normal((b, tv, d))


def _built(layer, xs):
    layer(xs)
    return layer


# ---------------------------------------------------------------- forward
@pytest.mark.parametrize("with_key", [False, True])
def test_dot_attention_matches_reference(with_key):
    q, v, k = _data(dv=5)
    xs = [q, v, k] if with_key else [q, v]
    out = layers.Attention(dtype="float64")(xs)
    ref, _ = _reference(q, v, k if with_key else None)
    assert out.shape == (2, 3, 5)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_value_dim_may_differ_from_key_dim():
    q, _, k = _data(d=4)
    v = np.random.default_rng(1).standard_normal((2, 4, 7))
    layer = layers.Attention(dtype="float64")
    out = layer([q, v, k])
    assert out.shape == (2, 3, 7)
    assert layer.compute_output_shape([(None, 3, 4), (None, 4, 7), (None, 4, 4)]) == (None, 3, 7)
    np.testing.assert_allclose(out, _reference(q, v, k)[0], rtol=1e-12, atol=1e-12)


def test_scaled_and_concat_scores_match_reference():
    q, v, k = _data()
    layer = layers.Attention(use_scale=True, dtype="float64")
    layer([q, v])
    layer.set_weights([np.array(0.7)])
    np.testing.assert_allclose(layer([q, v]), _reference(q, v, scale=0.7)[0], rtol=1e-12, atol=1e-12)

    concat = layers.Attention(use_scale=True, score_mode="concat", dtype="float64")
    concat([q, v, k])
    assert concat.weight_names == ["scale", "concat_score_weight"]
    concat.set_weights([np.array(0.6), np.array(1.3)])
    ref, _ = _reference(q, v, k, mode="additive", scale=0.6, outer=1.3)
    np.testing.assert_allclose(concat([q, v, k]), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("use_scale", [True, False])
def test_additive_attention_matches_reference(use_scale):
    q, v, k = _data()
    layer = layers.AdditiveAttention(use_scale=use_scale, dtype="float64")
    out = layer([q, v, k])
    assert [w.shape for w in layer.weights] == ([(5,)] if use_scale else [])
    w = layer.scale if use_scale else None
    np.testing.assert_allclose(out, _reference(q, v, k, mode="additive", w=w)[0], rtol=1e-12, atol=1e-12)


def test_masks_and_causal_mask_match_keras_semantics():
    q, v, _ = _data(tq=4, tv=4)
    vmask = np.array([[True, True, False, True], [True, False, False, False]])
    qmask = np.array([[True, False, True, True], [True, True, True, False]])
    layer = layers.Attention(dtype="float64")
    out, scores = layer([q, v], mask=[qmask, vmask], return_attention_scores=True, use_causal_mask=True)
    ref, ref_a = _reference(q, v, vmask=vmask, qmask=qmask, causal=True)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scores, ref_a, rtol=1e-12, atol=1e-12)
    assert np.all(scores[0, :, 2] == 0)                     # a masked value step gets no weight
    assert np.all(np.triu(scores[1], k=1) == 0)             # causal: no weight on later steps
    assert np.all(out[0, 1] == 0) and np.all(out[1, 3] == 0)  # masked query steps output 0
    np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-12)
    # the per-call keywords did not stick
    assert not isinstance(layer([q, v]), list)
    assert layer.compute_mask([q, v], [qmask, vmask]) is qmask


def test_dropout_only_in_training_and_reproducible():
    q, v, _ = _data(tq=6, tv=8)
    layer = layers.Attention(dropout=0.5, seed=3, dtype="float64")
    inference = layer([q, v])
    np.testing.assert_allclose(inference, _reference(q, v)[0], rtol=1e-12, atol=1e-12)
    _, a = layer([q, v], training=True, return_attention_scores=True)
    out = layer([q, v], training=True)
    assert not np.allclose(out, inference)
    drop = layer.context(None).drop
    assert set(np.unique(drop)) <= {0.0, 2.0}
    np.testing.assert_allclose(out, (a * drop) @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [layers.Attention, layers.AdditiveAttention])
def test_dropout_trains_in_float32(cls):
    """The dropout mask is drawn in the layer's own dtype (float32 used to raise a TypeError)."""
    q, v, _ = _data(tq=6, tv=8)
    layer = cls(dropout=0.5, seed=3, dtype="float32")
    out = layer([q.astype(np.float32), v.astype(np.float32)], training=True)
    assert out.dtype == np.float32
    drop = layer.context(None).drop
    assert drop.dtype == np.float32 and set(np.unique(drop)) <= {0.0, 2.0}


# ---------------------------------------------------------------- gradients
def test_dot_attention_gradients_query_value_key_scale():
    q, v, k = _data(dv=3)
    layer = _built(layers.Attention(use_scale=True, dtype="float64"), [q, v, k])
    layer.set_weights([np.array(0.8)])
    dx, grads = check_layer_gradients(layer, [q, v, k])
    assert len(dx) == 3 and grads[0].shape == ()


def test_dot_attention_gradients_without_key():
    q, v, _ = _data()
    layer = _built(layers.Attention(dtype="float64"), [q, v])
    dx, _ = check_layer_gradients(layer, [q, v])
    assert len(dx) == 2  # the value's gradient includes its part as the key


def test_concat_attention_gradients():
    q, v, k = _data(d=3, dv=2)
    layer = _built(layers.Attention(use_scale=True, score_mode="concat", dtype="float64"), [q, v, k])
    layer.set_weights([np.array(0.9), np.array(1.2)])
    check_layer_gradients(layer, [q, v, k])


@pytest.mark.parametrize("use_scale", [True, False])
def test_additive_attention_gradients(use_scale):
    q, v, k = _data(d=4, dv=3)
    layer = _built(layers.AdditiveAttention(use_scale=use_scale, dtype="float64"), [q, v, k])
    check_layer_gradients(layer, [q, v, k])
    layer2 = _built(layers.AdditiveAttention(use_scale=use_scale, dtype="float64"), [q, k])
    check_layer_gradients(layer2, [q, k])


@pytest.mark.parametrize("cls", [layers.Attention, layers.AdditiveAttention])
@pytest.mark.parametrize("return_scores", [False, True])
def test_gradients_with_masks_causal_and_returned_scores(cls, return_scores):
    q, v, k = _data(tq=4, tv=4)
    vmask = np.array([[True, False, True, True], [True, True, False, False]])
    qmask = np.array([[True, True, False, True], [False, True, True, True]])
    layer = _built(cls(use_scale=True, use_causal_mask=True, return_attention_scores=return_scores,
                       dtype="float64"), [q, v, k])
    dx, _ = check_layer_gradients(layer, [q, v, k],
                                  forward_fn=lambda xs: layer.forward(xs, training=True, mask=[qmask, vmask]))
    if not return_scores:  # (the returned scores are not masked by the query mask, as in Keras)
        assert np.all(dx[0][0, 2] == 0)  # a masked query step gets no gradient
    assert np.all(dx[1][0, 1] == 0) and np.all(dx[1][1, 2:] == 0)  # nor do masked value steps


def test_dropout_gradients_with_a_fixed_mask():
    q, v, k = _data(tq=4, tv=5)
    layer = _built(layers.Attention(use_scale=True, dropout=0.3, dtype="float64"), [q, v, k])

    def forward(xs):
        layer._rng = np.random.default_rng(7)  # the same dropout mask on every call
        return layer.forward(xs, training=True)

    check_layer_gradients(layer, [q, v, k], forward_fn=forward)


@pytest.mark.parametrize("cls", [layers.Attention, layers.AdditiveAttention])
def test_results_do_not_depend_on_the_thread_count(cls):
    # large enough that the kernels use every thread they are given (they keep small problems
    # on one thread): 8 x 32 x (32 x 64 + 64) values of work
    q, v, k = (a.astype(np.float32) for a in _data(b=8, tq=32, tv=32, d=64))
    dy = np.random.default_rng(5).standard_normal((8, 32, 64)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        cydnn.set_num_threads(n)
        layer = cls(use_scale=True, dtype="float32")
        layer([q, v, k])
        layer.set_weights([np.linspace(0.5, 1.5, w.size).reshape(w.shape) for w in layer.weights])
        out = layer.forward([q, v, k], training=True)
        dx = layer.backward(dy)
        results.append([out.copy()] + [d.copy() for d in dx] + [g.copy() for g in layer.grads])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- PyTorch parity
def test_dot_attention_matches_torch_forward_and_gradients():
    torch = pytest.importorskip("torch")
    q, v, k = (a.astype(np.float32) for a in _data(b=4, tq=6, tv=7, d=8, dv=5))
    layer = layers.Attention(use_scale=True, dtype="float32")
    layer([q, v, k])
    layer.set_weights([np.array(0.5, dtype=np.float32)])
    out = layer.forward([q, v, k], training=True)
    dy = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    dq, dv, dk = layer.backward(dy)

    tq, tv, tk = (torch.tensor(a, requires_grad=True) for a in (q, v, k))
    ts = torch.tensor(0.5, requires_grad=True)
    tout = torch.softmax(ts * tq @ tk.transpose(1, 2), dim=-1) @ tv
    tout.backward(torch.tensor(dy))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-5, atol=1e-6)
    for ours, theirs in ((dq, tq), (dv, tv), (dk, tk)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.grads[0], ts.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_masked_attention_matches_torch_sdpa():
    torch = pytest.importorskip("torch")
    q, v, k = (a.astype(np.float64) for a in _data(b=3, tq=5, tv=5, d=4))
    vmask = np.random.default_rng(2).random((3, 5)) > 0.3
    vmask[:, 0] = True
    layer = layers.Attention(dtype="float64")
    out = layer([q, v, k], mask=[None, vmask], use_causal_mask=True)
    keep = torch.tensor(vmask)[:, None, :] & torch.ones(5, 5, dtype=torch.bool).tril()
    ref = torch.nn.functional.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(v),
                                                           attn_mask=keep, scale=1.0)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-10, atol=1e-12)


def test_additive_attention_matches_torch_gradients():
    torch = pytest.importorskip("torch")
    q, v, k = _data(b=3, tq=4, tv=5, d=6, dv=3)
    layer = layers.AdditiveAttention(dtype="float64")
    layer([q, v, k])
    out = layer.forward([q, v, k], training=True)
    dy = np.random.default_rng(1).standard_normal(out.shape)
    dq, dv, dk = layer.backward(dy)
    tq, tv, tk = (torch.tensor(a, requires_grad=True) for a in (q, v, k))
    tw = torch.tensor(layer.scale.copy(), requires_grad=True)
    scores = (tw * torch.tanh(tq[:, :, None, :] + tk[:, None, :, :])).sum(-1)
    tout = torch.softmax(scores, dim=-1) @ tv
    tout.backward(torch.tensor(dy))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    for ours, theirs in ((dq, tq), (dv, tv), (dk, tk), (layer.grads[0], tw)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------- AttentionPooling
@pytest.mark.parametrize("units, activation", [(None, "tanh"), (4, "tanh"), (4, "sigmoid")])
def test_attention_pooling_gradients(units, activation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 6))
    layer = layers.AttentionPooling(units=units, activation=activation, query_initializer="glorot_uniform",
                                    bias_initializer="random_normal")
    dx, grads = check_layer_gradients(layer, x)
    assert [g.shape for g in grads] == ([(6,)] if units is None else [(6, 4), (4,), (4,)])


def test_attention_pooling_gradients_with_a_mask():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 4))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=bool)
    layer = layers.AttentionPooling(units=3, query_initializer="glorot_uniform")
    layer.dtype = np.dtype(np.float64)
    layer(x)
    dx, _ = check_layer_gradients(layer, x, forward_fn=lambda a: layer.forward(a, training=True, mask=mask))
    assert np.all(dx[~mask] == 0)  # masked steps neither contribute nor receive gradient


def test_attention_pooling_forward_matches_reference():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6, 3))
    mask = rng.random((4, 6)) > 0.4
    mask[:, 0] = True
    layer = layers.AttentionPooling(units=5, query_initializer="glorot_uniform", dtype="float64")
    layer(x)
    kernel, bias, query = layer.get_weights()
    out = layer.forward(x, mask=mask)
    u = np.tanh(x @ kernel + bias)
    a = _softmax(np.where(mask, u @ query, -np.inf))
    np.testing.assert_allclose(out, np.einsum("bt,btf->bf", a, x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.last_attention_scores, a, rtol=1e-12, atol=1e-15)
    # a zero query starts as an average over the steps
    fresh = layers.AttentionPooling(units=5, dtype="float64")
    np.testing.assert_allclose(fresh(x), x.mean(axis=1), rtol=1e-12)


def test_attention_pooling_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 7, 5)).astype(np.float32)
    layer = layers.AttentionPooling(units=6, query_initializer="glorot_uniform", dtype="float32")
    layer(x)
    out = layer.forward(x, training=True)
    dy = rng.standard_normal(out.shape).astype(np.float32)
    dx = layer.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    tk, tb, tq = (torch.tensor(w, requires_grad=True) for w in layer.get_weights())
    a = torch.softmax(torch.tanh(tx @ tk + tb) @ tq, dim=1)
    tout = (a[:, :, None] * tx).sum(1)
    tout.backward(torch.tensor(dy))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for g, t in zip(layer.grads, (tk, tb, tq)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_attention_pooling_in_a_sequential_model_receives_the_embedding_mask():
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.Embedding(10, 4, mask_zero=True, input_shape=(None,)),
                              layers.AttentionPooling(units=3, query_initializer="glorot_uniform"),
                              layers.Dense(2)])
    ids = np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 7]])
    model.predict(ids)
    pool = model.layers[1]
    np.testing.assert_array_equal(pool.last_attention_scores[0, 2:], 0)
    # padding does not change the result: the same sequence without its padding
    np.testing.assert_allclose(model.predict(ids[:1, :2]), model.predict(ids)[:1], rtol=1e-6)


# ---------------------------------------------------------------- errors and config
def test_errors_name_the_layer_the_expectation_and_what_was_received():
    q, v, k = _data()
    layer = layers.Attention(name="att")
    with pytest.raises(ValueError, match=r"Attention 'att': expected a list of inputs \[query, value\] or "
                                         r"\[query, value, key\], received a single array of shape \(2, 3, 5\)"):
        layer(q)
    with pytest.raises(ValueError, match=r"Attention 'att': expected a list .*received 1 inputs"):
        layer([q])
    with pytest.raises(ValueError, match=r"Attention 'att': expected query of rank 3 \(batch, steps, dim\), "
                                         r"received shape \(2, 5\)"):
        layer([q[:, 0], v])
    with pytest.raises(ValueError, match=r"expected query and key with the same last dimension, received query "
                                         r"shape \(2, 3, 5\) and value \(the key\) shape \(2, 4, 6\)"):
        layer([q, np.zeros((2, 4, 6))])
    with pytest.raises(ValueError, match=r"expected value and key with the same number of steps, received value "
                                         r"shape \(2, 4, 5\) and key shape \(2, 6, 5\)"):
        layer([q, v, np.zeros((2, 6, 5))])
    with pytest.raises(ValueError, match=r"same batch size"):
        layer([q, v[:1]])
    layer([q, v])
    with pytest.raises(ValueError, match=r"expected a value mask of shape \(2, 4\) \(batch, steps\), "
                                         r"received shape \(2, 3\)"):
        layer([q, v], mask=[None, np.ones((2, 3), bool)])
    with pytest.raises(ValueError, match=r"Attention 'att': expected query with last dimension 5, received shape"):
        layer([np.zeros((2, 3, 4)), np.zeros((2, 4, 4))])
    with pytest.raises(ValueError, match=r"expected score_mode 'dot' or 'concat', received score_mode='general'"):
        layers.Attention(score_mode="general")
    with pytest.raises(ValueError, match=r"AttentionPooling 'pool': expected input of rank 3 \(batch, time, "
                                         r"features\) with known features, received shape \(2, 4\)"):
        layers.AttentionPooling(name="pool")(np.zeros((2, 4)))


def test_config_round_trip():
    for layer in (layers.Attention(use_scale=True, score_mode="concat", dropout=0.1, use_causal_mask=True),
                  layers.AdditiveAttention(use_scale=False, return_attention_scores=True),
                  layers.AttentionPooling(units=8, activation="relu")):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_masks_flow_through_a_functional_model_with_self_attention():
    """Embedding(mask_zero) -> LSTM(return_sequences) -> Attention([seq, seq]) -> AttentionPooling:
    the padding mask reaches both attention layers, so padding changes no prediction, and the
    model trains."""
    cydnn.set_random_seed(0)
    inputs = cydnn.Input(shape=(None,))
    seq = layers.LSTM(6, return_sequences=True)(layers.Embedding(10, 4, mask_zero=True)(inputs))
    attended = layers.Attention(use_scale=True)([seq, seq])
    outputs = layers.Dense(1, activation="sigmoid")(layers.AttentionPooling(units=4)(attended))
    model = cydnn.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    ids = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0], [6, 7, 8, 9, 1], [2, 0, 0, 0, 0]])
    history = model.fit(np.tile(ids, (8, 1)), np.tile([1, 0, 1, 0], 8), epochs=3, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    full = model.predict(ids)
    np.testing.assert_allclose(model.predict(ids[:2, :3]), full[:2], rtol=1e-6)
    np.testing.assert_allclose(model.predict(np.pad(ids, ((0, 0), (0, 4)))), full, rtol=1e-6)
    pool = next(layer for layer in model.layers if isinstance(layer, layers.AttentionPooling))
    model.predict(ids)
    np.testing.assert_array_equal(pool.last_attention_scores[1, 2:], 0)
