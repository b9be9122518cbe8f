"""The functional API (cydnn.Input, cydnn.Model): graph forward against hand computation,
float64 finite-difference gradients of whole graphs (a diamond where one tensor feeds several
branches that merge again, a shared layer called twice, a tensor that is both an output and an
input of other layers), the training path with fused softmax outputs and loss weights, shared
layers under gradient accumulation, equality with the same Sequential model, masks along edges,
multi-output layers, nested models, get_config/from_config, and the error messages."""
import json

import numpy as np
import pytest

import cydnn
from cydnn import layers
from helpers import numeric_grad


def _randomize(model, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape) * scale for w in model.get_weights()])


def _graph_gradients(model, xs, seed=0):
    """Backward of L = sum_k sum(out_k * r_k) through the model's graph; returns the weight
    gradients {(layer name, weight index): array} and the loss function for finite differences."""
    model._fused = [None] * len(model.outputs)
    ctxs = model._training_contexts()
    outs = model._forward(xs, True, ctxs)
    rng = np.random.default_rng(seed)
    rs = [rng.standard_normal(o.shape) for o in outs]

    def loss():
        return sum(float(np.sum(o * r)) for o, r in zip(model._forward(xs, True, model._new_contexts()), rs))

    model._forward(xs, True, ctxs)
    for ctx in ctxs:
        ctx.accumulate = False
    model._backward([r.copy() for r in rs], ctxs)
    grads = {(layer.name, i): g.copy() for layer in model.layers for i, g in enumerate(layer.grads) if g is not None}
    return grads, loss


def _check_graph_gradients(model, xs, rtol=1e-6, atol=1e-8):
    grads, loss = _graph_gradients(model, xs)
    assert grads, "the model has no trainable weights to check"
    for layer in model.layers:
        for i, (name, w) in enumerate(zip(layer.weight_names, layer.weights)):
            if (layer.name, i) in grads:
                np.testing.assert_allclose(grads[(layer.name, i)], numeric_grad(loss, w), rtol=rtol, atol=atol,
                                           err_msg=f"gradient of {layer.name}/{name}")
    return grads


def _diamond_model():
    """x -> a; a feeds b1 and b2 (and twice an Add, and the concatenation); a shared Dense runs
    on b1 and then on its own output; b2 is an output and also feeds a Multiply."""
    x = cydnn.Input(shape=(5,), name="x")
    a = layers.Dense(4, activation="tanh", name="a")(x)
    b1 = layers.Dense(4, activation="tanh", name="b1")(a)
    b2 = layers.Dense(4, activation="sigmoid", name="b2")(a)
    shared = layers.Dense(4, activation="tanh", name="shared")
    s1 = shared(b1)
    s2 = shared(s1)
    m = layers.Multiply(name="mul")([s2, b2])
    c = layers.Concatenate(name="cat")([m, layers.Add(name="a_plus_a")([a, a]), s1])
    out = layers.Dense(3, name="out")(c)
    return cydnn.Model(x, [out, b2], name="diamond")


# ============================================================ forward
def test_two_input_two_output_forward_matches_hand_computation():
    a = cydnn.Input(shape=(4,), name="a")
    b = cydnn.Input(shape=(3,), name="b")
    h = layers.Dense(5, activation="relu", name="h")(a)
    cat = layers.Concatenate(name="cat")([h, b])
    cls = layers.Dense(2, activation="softmax", name="cls")(cat)
    summed = layers.Add(name="sum")([layers.Dense(1, name="ha")(h), layers.Dense(1, name="hb")(b)])
    reg = layers.Dense(1, name="reg")(summed)
    model = cydnn.Model([a, b], [cls, reg])
    _randomize(model)
    rng = np.random.default_rng(1)
    xa, xb = rng.standard_normal((7, 4)).astype(np.float32), rng.standard_normal((7, 3)).astype(np.float32)

    W = {layer.name: layer.get_weights() for layer in model.layers}
    hh = np.maximum(xa @ W["h"][0] + W["h"][1], 0)
    z = np.concatenate([hh, xb], axis=1) @ W["cls"][0] + W["cls"][1]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    s = (hh @ W["ha"][0] + W["ha"][1]) + (xb @ W["hb"][0] + W["hb"][1])
    r = s @ W["reg"][0] + W["reg"][1]

    out_cls, out_reg = model.predict([xa, xb], batch_size=3)
    np.testing.assert_allclose(out_cls, p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_reg, r, rtol=1e-5, atol=1e-6)
    assert model.input_shapes == [(None, 4), (None, 3)] and model.output_shapes == [(None, 2), (None, 1)]
    assert [layer.name for layer in model.layers] == ["a", "b", "h", "cat", "cls", "ha", "hb", "sum", "reg"]
    # calling the model on arrays gives the same
    out2 = model([xa, xb])
    np.testing.assert_allclose(out2[0], out_cls, rtol=1e-6)


def test_two_input_two_output_model_trains():
    cydnn.set_random_seed(0)
    rng = np.random.default_rng(0)
    xa, xb = rng.standard_normal((256, 4)), rng.standard_normal((256, 3))
    y_cls = (xa[:, 0] + xb[:, 1] > 0).astype(np.int64)
    y_reg = (xa[:, :2].sum(1) - xb[:, 2])[:, None]
    a = cydnn.Input(shape=(4,), name="a")
    b = cydnn.Input(shape=(3,), name="b")
    h = layers.Dense(16, activation="relu")(layers.Concatenate()([a, b]))
    cls = layers.Dense(2, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    model = cydnn.Model([a, b], [cls, reg])
    model.compile(cydnn.optimizers.Adam(0.01), loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                  loss_weights=[1.0, 0.5], metrics={"cls": ["accuracy"]})
    assert model._fused[0] is not None and model._fused[1] is None  # softmax fused with its loss
    hist = model.fit([xa, xb], [y_cls, y_reg], epochs=30, batch_size=32, verbose=0)
    losses = hist.history["loss"]
    assert losses[-1] < 0.1 * losses[0]
    assert hist.history["cls_accuracy"][-1] > 0.95
    # dicts keyed by input / output layer names work too
    logs = model.evaluate({"a": xa, "b": xb}, {"reg": y_reg, "cls": y_cls}, return_dict=True)
    assert logs["loss"] < 0.2 * losses[0] and logs["cls_accuracy"] > 0.95


# ============================================================ gradients (float64, finite differences)
def test_diamond_graph_with_shared_layer_gradients_match_finite_differences():
    cydnn.set_floatx("float64")
    model = _diamond_model()
    _randomize(model, seed=3)
    x = np.random.default_rng(4).standard_normal((6, 5))
    grads = _check_graph_gradients(model, [x])
    assert ("shared", 0) in grads and ("a", 0) in grads


def test_diamond_graph_gradients_with_first_layers_skipping_dx():
    cydnn.set_floatx("float64")
    model = _diamond_model()
    _randomize(model, seed=5)
    flags = {step.layer.name: flag for step, flag in zip(model._steps, model._input_grad_flags())}
    assert [name for name, flag in flags.items() if not flag] == ["a"]
    assert flags["a"] is False and flags["shared"]
    _check_graph_gradients(model, [np.random.default_rng(6).standard_normal((4, 5))])


def test_siamese_shared_encoder_gradients_match_finite_differences():
    """One Dense encodes both inputs (a shared input consumer); the codes meet in Subtract and Dot."""
    cydnn.set_floatx("float64")
    x1, x2 = cydnn.Input(shape=(3,)), cydnn.Input(shape=(3,))
    enc = layers.Dense(4, activation="tanh", name="enc")
    e1, e2 = enc(x1), enc(x2)
    feats = layers.Concatenate()([layers.Subtract()([e1, e2]), layers.Dot(axes=1)([e1, e2])])
    out = layers.Dense(2, activation="softplus", name="head")(feats)
    model = cydnn.Model([x1, x2], out)
    _randomize(model, seed=7)
    flags = [flag for step, flag in zip(model._steps, model._input_grad_flags()) if step.layer.name == "enc"]
    assert flags == [False, False]  # both of its calls read model inputs
    rng = np.random.default_rng(8)
    _check_graph_gradients(model, [rng.standard_normal((5, 3)), rng.standard_normal((5, 3))])


def test_shared_bidirectional_gradients_match_finite_differences():
    """A Bidirectional LSTM called on two inputs: each call's backward reads that call's own
    state, down to the two direction layers inside the wrapper (their state once came from the
    wrapper's last call, which made the first call's gradients wrong)."""
    cydnn.set_floatx("float64")
    x1, x2 = cydnn.Input(shape=(4, 3)), cydnn.Input(shape=(4, 3))
    bi = layers.Bidirectional(layers.LSTM(3, return_sequences=True), name="bi")
    merged = layers.Concatenate()([bi(x1), bi(x2)])
    model = cydnn.Model([x1, x2], layers.Dense(2, name="head")(layers.GlobalAveragePooling1D()(merged)))
    _randomize(model, seed=21)
    rng = np.random.default_rng(22)
    grads = _check_graph_gradients(model, [rng.standard_normal((3, 4, 3)), rng.standard_normal((3, 4, 3))])
    assert ("bi", 0) in grads


def test_training_path_gradients_with_fused_softmax_and_loss_weights():
    """Gradients from a training step (fused softmax cross-entropy on one output, mse on another,
    loss weights, a shared layer) equal finite differences of the evaluated loss."""
    cydnn.set_floatx("float64")
    x = cydnn.Input(shape=(4,))
    h = layers.Dense(5, activation="tanh", name="h")(x)
    shared = layers.Dense(5, activation="tanh", name="shared")
    h2 = shared(h)
    h3 = shared(h2)
    cls = layers.Dense(3, activation="softmax", name="cls")(layers.Add()([h2, h3]))
    reg = layers.Dense(2, name="reg")(h3)
    model = cydnn.Model(x, [cls, reg])
    _randomize(model, seed=9)
    model.compile(cydnn.optimizers.SGD(learning_rate=0.0), loss=["sparse_categorical_crossentropy", "mse"],
                  loss_weights=[0.7, 1.3])
    rng = np.random.default_rng(10)
    xs, y_cls, y_reg = rng.standard_normal((8, 4)), rng.integers(0, 3, 8), rng.standard_normal((8, 2))
    model.train_on_batch(xs, [y_cls, y_reg])
    assert model._fused == [model._fused[0], None] and model._fused[0] is not None
    grads = {(layer.name, i): g.copy() for layer in model.layers for i, g in enumerate(layer.grads) if g is not None}

    def loss():
        return model.evaluate(xs, [y_cls, y_reg], batch_size=8)

    for layer in model.layers:
        for i, w in enumerate(layer.weights):
            if (layer.name, i) in grads:
                np.testing.assert_allclose(grads[(layer.name, i)], numeric_grad(loss, w), rtol=1e-6, atol=1e-8,
                                           err_msg=f"gradient of {layer.name}/{layer.weight_names[i]}")


def test_output_also_consumed_elsewhere_is_not_fused():
    x = cydnn.Input(shape=(4,))
    p = layers.Dense(3, activation="softmax", name="p")(x)
    q = layers.Dense(3, activation="softmax", name="q")(layers.Dense(3, name="after_p")(p))
    model = cydnn.Model(x, [p, q])
    model.compile("sgd", loss="categorical_crossentropy")
    assert model._fused[0] is None and model._fused[1] is not None


def test_shared_layer_sums_gradients_under_gradient_accumulation():
    """Two accumulated half batches take the same SGD step as the whole batch, with a layer
    called twice per step (its calls add to each other and to the previous batch)."""
    cydnn.set_floatx("float64")

    def build():
        x = cydnn.Input(shape=(3,))
        shared = layers.Dense(3, activation="tanh", name="shared")
        out = layers.Dense(1, name="out")(shared(shared(x)))
        model = cydnn.Model(x, out)
        _randomize(model, seed=11)
        model.compile(cydnn.optimizers.SGD(learning_rate=0.1), loss="mse")
        return model

    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 1))
    whole, halves = build(), build()
    whole.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    halves.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, gradient_accumulation_steps=2)
    for a, b in zip(whole.get_weights(), halves.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_backward_restores_each_calls_accumulate_flag():
    x = cydnn.Input(shape=(3,))
    shared = layers.Dense(3, name="shared")
    model = cydnn.Model(x, layers.Dense(1, name="out")(shared(shared(x))))
    model._fused = [None]
    xv = np.ones((2, 3), dtype=np.float32)
    ctxs = model._new_contexts()
    for outer in (False, True):
        for ctx in ctxs:
            ctx.accumulate = outer
        model._forward([xv], True, ctxs)
        model._backward([np.ones((2, 1), dtype=np.float32)], ctxs)
        assert all(ctx.accumulate is outer for ctx in ctxs)


def test_shared_dropout_keeps_each_calls_mask_for_backward():
    """A Dropout layer called on two branches: each call's backward uses that call's own mask
    (re-running forward would draw new masks)."""
    cydnn.set_floatx("float64")
    x1, x2 = cydnn.Input(shape=(6,)), cydnn.Input(shape=(6,))
    da, db = layers.Dense(6, name="da"), layers.Dense(6, name="db")
    drop = layers.Dropout(0.5, seed=0)
    model = cydnn.Model([x1, x2], [drop(da(x1)), drop(db(x2))])
    _randomize(model, seed=13)
    rng = np.random.default_rng(14)
    xs = [rng.standard_normal((5, 6)), rng.standard_normal((5, 6))]
    model._fused = [None, None]
    ctxs = model._new_contexts()
    o1, o2 = [o.copy() for o in model._forward(xs, True, ctxs)]
    assert not np.array_equal(o1 != 0, o2 != 0)  # the two calls drew different masks
    ones = [np.ones_like(o1), np.ones_like(o2)]
    model._backward(ones, ctxs)
    # dL/dW_a = x1^T (mask1 * 2) where the mask is read off the outputs
    np.testing.assert_allclose(model.get_layer("da").grads[0], xs[0].T @ ((o1 != 0) * 2.0), rtol=1e-12)
    np.testing.assert_allclose(model.get_layer("db").grads[0], xs[1].T @ ((o2 != 0) * 2.0), rtol=1e-12)


def test_shared_layer_outputs_are_not_overwritten_by_its_next_call():
    x = cydnn.Input(shape=(3,))
    shared = layers.Dense(3, activation="tanh")
    s1 = shared(x)
    s2 = shared(s1)
    model = cydnn.Model(x, [s1, s2])
    _randomize(model, seed=15)
    xv = np.random.default_rng(16).standard_normal((4, 3)).astype(np.float32)
    k, b = shared.get_weights()
    y1 = np.tanh(xv @ k + b)
    out1, out2 = model.predict(xv)
    np.testing.assert_allclose(out1, y1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out2, np.tanh(y1 @ k + b), rtol=1e-5, atol=1e-6)


# ============================================================ Sequential equivalence
def test_functional_model_equals_sequential_model():
    cydnn.set_floatx("float64")
    seq = cydnn.Sequential([layers.InputLayer(shape=(6,)), layers.Dense(8, activation="relu"),
                            layers.Dense(4, activation="tanh"), layers.Dense(3, activation="softmax")])
    x = cydnn.Input(shape=(6,))
    h = layers.Dense(8, activation="relu")(x)
    h = layers.Dense(4, activation="tanh")(h)
    func = cydnn.Model(x, layers.Dense(3, activation="softmax")(h))
    _randomize(seq, seed=17)
    func.set_weights(seq.get_weights())
    rng = np.random.default_rng(18)
    xv, yv = rng.standard_normal((20, 6)), rng.integers(0, 3, 20)
    np.testing.assert_allclose(func.predict(xv), seq.predict(xv), rtol=1e-12, atol=1e-14)
    for m in (seq, func):
        m.compile(cydnn.optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
        m.fit(xv, yv, batch_size=20, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(func.get_weights(), seq.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert func.count_params() == seq.count_params()


# ============================================================ masks, multi-output layers, nesting
class _MaskedMean(layers.Layer):
    """Mean over the time steps the mask keeps; records the mask it was given."""

    accepts_mask = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def forward(self, x, training=False, mask=None, ctx=None):
        ctx = self.context(ctx)
        self.seen_mask = None if mask is None else np.array(mask)  # what the test observes
        w = np.ones(x.shape[:2]) if mask is None else np.asarray(mask, dtype=x.dtype)
        ctx.w = w / np.maximum(w.sum(1, keepdims=True), 1)
        return np.einsum("bt,btf->bf", ctx.w, x)

    def backward(self, dy, ctx=None):
        return self.context(ctx).w[:, :, None] * dy[:, None, :]


class _EmbedWithMask(layers.Layer):
    """(batch, time) ids -> (batch, time, 3) features, emitting the mask ids != 0 (as
    Embedding(mask_zero=True) does)."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (3,)

    def forward(self, x, training=False, ctx=None):
        return np.repeat(x[:, :, None], 3, axis=2)

    def backward(self, dy, ctx=None):
        return dy.sum(axis=2)

    def compute_mask(self, x, mask=None):
        return x != 0


def test_masks_flow_along_edges_and_merge_by_and():
    ids_a, ids_b = cydnn.Input(shape=(4,)), cydnn.Input(shape=(4,))
    emb = _EmbedWithMask()
    summed = layers.Add()([emb(ids_a), emb(ids_b)])  # a shared mask-making layer, masks ANDed by Add
    pool = _MaskedMean()
    model = cydnn.Model([ids_a, ids_b], pool(layers.Dense(2)(summed)))  # Dense passes the mask on
    a = np.array([[1, 2, 0, 0], [3, 4, 5, 0]])
    b = np.array([[1, 2, 3, 0], [3, 0, 5, 6]])
    model.predict([a, b])
    np.testing.assert_array_equal(pool.seen_mask, (a != 0) & (b != 0))
    model.predict([a, np.ones_like(b)])
    np.testing.assert_array_equal(pool.seen_mask, a != 0)


class _Split(layers.Layer):
    """Two outputs: the first k features and the rest (a multi-output layer)."""

    def __init__(self, k, **kwargs):
        super().__init__(**kwargs)
        self.k = k

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], self.k), (input_shape[0], input_shape[1] - self.k)]

    def forward(self, x, training=False, ctx=None):
        return [x[:, :self.k].copy(), x[:, self.k:].copy()]

    def backward(self, dys, ctx=None):
        return np.concatenate(dys, axis=1)


def test_multi_output_layer_in_graph_gradients():
    cydnn.set_floatx("float64")
    x = cydnn.Input(shape=(4,))
    h = layers.Dense(5, activation="tanh", name="h")(x)
    left, right = _Split(2, name="split")(h)
    out = layers.Dense(2, name="out")(left)  # the right part gets no gradient: zeros flow back
    model = cydnn.Model(x, [out, layers.Dense(1, name="r")(layers.Multiply()([right, right]))])
    _randomize(model, seed=19)
    _check_graph_gradients(model, [np.random.default_rng(20).standard_normal((3, 4))])
    only_left = cydnn.Model(x, out)
    _check_graph_gradients(only_left, [np.random.default_rng(21).standard_normal((3, 4))])
    assert "split" in [layer.name for layer in only_left.layers]


def test_lstm_return_state_outputs_in_graph_gradients():
    """LSTM(return_state=True) gives three tensors; the final h and c feed a head, the sequence is
    a second output (or unused: zeros flow back for it)."""
    cydnn.set_floatx("float64")
    x = cydnn.Input(shape=(5, 3))
    seq, h, c = layers.LSTM(4, return_sequences=True, return_state=True, name="lstm")(x)
    assert (seq.shape, h.shape, c.shape) == ((None, 5, 4), (None, 4), (None, 4))
    y = layers.Dense(2, name="head")(layers.Concatenate()([h, c]))
    xv = np.random.default_rng(27).standard_normal((2, 5, 3))
    both = cydnn.Model(x, [y, seq])
    _randomize(both, seed=28)
    _check_graph_gradients(both, [xv])
    _check_graph_gradients(cydnn.Model(x, y), [xv])


def test_nested_model_is_inlined_with_shared_weights():
    cydnn.set_floatx("float64")
    xi = cydnn.Input(shape=(3,))
    encoder = cydnn.Model(xi, layers.Dense(2, activation="tanh", name="code")(layers.Dense(4, activation="tanh",
                                                                                          name="hid")(xi)), name="enc")
    a, b = cydnn.Input(shape=(3,)), cydnn.Input(shape=(3,))
    outer = cydnn.Model([a, b], layers.Dense(1, name="score")(layers.Concatenate()([encoder(a), encoder(b)])))
    _randomize(outer, seed=22)
    rng = np.random.default_rng(23)
    xa, xb = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    ca, cb = encoder.predict(xa), encoder.predict(xb)  # the encoder sees the outer model's weights
    k, bias = outer.get_layer("score").get_weights()
    np.testing.assert_allclose(outer.predict([xa, xb]), np.concatenate([ca, cb], 1) @ k + bias, rtol=1e-12)
    _check_graph_gradients(outer, [xa, xb])


# ============================================================ config
def test_get_config_from_config_rebuilds_an_identical_graph():
    model = _diamond_model()
    _randomize(model, seed=24)
    config = model.get_config()
    json.dumps(config)  # plain JSON types only
    shared = next(e for e in config["layers"] if e["name"] == "shared")
    assert shared["inbound_nodes"] == [[["b1", 0, 0]], [["shared", 0, 0]]]
    rebuilt = cydnn.Model.from_config(json.loads(json.dumps(config)))
    assert rebuilt.get_config() == config
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
    rebuilt.set_weights(model.get_weights())
    x = np.random.default_rng(25).standard_normal((6, 5))
    for p, q in zip(model.predict(x), rebuilt.predict(x)):
        np.testing.assert_array_equal(p, q)


def test_from_config_of_multi_input_multi_output_model_with_dict_structures():
    a, b = cydnn.Input(shape=(2,), name="a"), cydnn.Input(shape=(3,), name="b")
    h = layers.Dense(4, name="h")(layers.Concatenate()([a, b]))
    outputs = {"y": layers.Dense(1, name="y")(h), "z": layers.Dense(2, name="z")(h)}
    model = cydnn.Model({"first": a, "second": b}, outputs)
    rebuilt = cydnn.Model.from_config(model.get_config())
    assert rebuilt.get_config() == model.get_config()
    rebuilt.set_weights(model.get_weights())
    rng = np.random.default_rng(26)
    data = {"first": rng.standard_normal((3, 2)), "second": rng.standard_normal((3, 3))}
    for p, q in zip(model.predict(data), rebuilt.predict(data)):
        np.testing.assert_array_equal(p, q)


def test_layers_adopt_the_dtype_of_their_inputs():
    x = cydnn.Input(shape=(3,), dtype="float64")
    h = layers.Dropout(0.5)(layers.Dense(4)(x))
    out = layers.Add()([layers.Dense(4)(h), h])
    model = cydnn.Model(x, out)
    assert {layer.dtype for layer in model.layers} == {np.dtype(np.float64)}
    assert model.predict(np.ones((2, 3))).dtype == np.float64
    model.compile("sgd", loss="mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 4)), verbose=0)


def test_sequential_accepts_an_input_tensor():
    model = cydnn.Sequential([cydnn.Input(shape=(4,)), layers.Dense(2)])
    assert model.built and model.input_shape == (None, 4)


# ============================================================ errors
def test_error_inputs_not_reaching_outputs():
    a, b = cydnn.Input(shape=(4,), name="used"), cydnn.Input(shape=(3,), name="unused")
    out = layers.Dense(2)(a)
    with pytest.raises(ValueError, match=r"Model 'lonely'.*every input to reach an output.*unused \(None, 3\)"):
        cydnn.Model([a, b], out, name="lonely")


def test_error_graph_disconnected_from_inputs():
    a, b = cydnn.Input(shape=(4,), name="given"), cydnn.Input(shape=(4,), name="forgotten")
    out = layers.Add()([a, b])
    with pytest.raises(ValueError, match=r"Model 'm'.*Input 'forgotten' \(None, 4\).*not among the model's inputs "
                                         r"\['given'\]"):
        cydnn.Model(a, out, name="m")


def test_error_inputs_must_be_input_tensors():
    a = cydnn.Input(shape=(4,))
    h = layers.Dense(3, name="mid")(a)
    with pytest.raises(ValueError, match=r"Model 'm': expected inputs created by cydnn.Input.*Dense 'mid' \(None, 3\)"):
        cydnn.Model(h, layers.Dense(1)(h), name="m")
    with pytest.raises(TypeError, match=r"Model 'm2': expected outputs to be symbolic tensors.*ndarray"):
        cydnn.Model(a, np.zeros(3), name="m2")


def test_error_wrong_number_of_input_arrays():
    a, b = cydnn.Input(shape=(4,), name="left"), cydnn.Input(shape=(3,), name="right")
    model = cydnn.Model([a, b], layers.Dense(1)(layers.Concatenate()([a, b])), name="pair")
    x = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"predict: Model 'pair': expected 2 input arrays \(one per input: 'left' "
                                         r"\(None, 4\), 'right' \(None, 3\)\), received 1"):
        model.predict([x])
    with pytest.raises(ValueError, match=r"Model 'pair': expected 2 input arrays.*received a single ndarray"):
        model.predict(x)
    model.compile("sgd", loss="mse")
    with pytest.raises(ValueError, match=r"fit: Model 'pair': expected 2 input arrays.*received 3"):
        model.fit([x, x, x], np.zeros((2, 1)), verbose=0)


def test_error_wrong_input_shape_names_the_input_layer():
    a = cydnn.Input(shape=(4,), name="feats")
    model = cydnn.Model(a, layers.Dense(1)(a))
    with pytest.raises(ValueError, match=r"InputLayer 'feats': expected input with last dimension 4, "
                                         r"received shape \(2, 5\)"):
        model.predict(np.zeros((2, 5)))


def test_error_mismatched_merge_shapes_in_graph():
    a, b = cydnn.Input(shape=(4,)), cydnn.Input(shape=(5,))
    with pytest.raises(ValueError, match=r"Add 'bad_add': expected inputs of the same shape.*received shapes "
                                         r"\[\(None, 4\), \(None, 5\)\]"):
        layers.Add(name="bad_add")([a, b])


def test_error_shared_layer_called_on_incompatible_input():
    a, b = cydnn.Input(shape=(4,)), cydnn.Input(shape=(5,))
    dense = layers.Dense(2, name="tied")
    dense(a)
    with pytest.raises(ValueError, match=r"Dense 'tied': expected input with last dimension 4"):
        dense(b)


def test_error_single_input_layer_called_on_a_list():
    a, b = cydnn.Input(shape=(4,)), cydnn.Input(shape=(4,))
    with pytest.raises(TypeError, match=r"is symbolic.*multi-input layers such as Add take a list"):
        layers.Dense(2, name="d")([a, b])


def test_error_symbolic_tensor_has_no_values():
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(cydnn.Input(shape=(2,)))


def test_error_duplicate_layer_names():
    a = cydnn.Input(shape=(2,))
    out = layers.Dense(2, name="same")(layers.Dense(2, name="same")(a))
    with pytest.raises(ValueError, match=r"layer names must be unique in a model; \['same'\]"):
        cydnn.Model(a, out)


def test_functional_training_step_allocates_no_buffers_in_steady_state():
    """After warm-up, a training step of a graph (shared layer, merges, two outputs) allocates no
    NumPy buffer, even temporarily: per-call buffers of shared layers, merge outputs and
    gradients, and the model's gradient sums are all kept between steps. Every array such a step
    could need here is at least 16 KB (128 rows of >= 32 float32); the peak of traced memory
    during a step stays under that (the rest is the graph walk's small Python objects)."""
    import tracemalloc
    cydnn.set_random_seed(0)
    a, b = cydnn.Input(shape=(32,)), cydnn.Input(shape=(32,))
    shared = layers.Dense(64, activation="relu")
    sa, sb = shared(a), shared(b)
    mixed = layers.Concatenate()([layers.Add()([sa, sb]), layers.Multiply()([sa, sb]), layers.Maximum()([sa, sb]),
                                  layers.Subtract()([sa, sb]), layers.Average()([sa, sb, sa])])
    h = layers.Dense(64, activation="tanh")(mixed)
    model = cydnn.Model([a, b], [layers.Dense(32, activation="softmax")(h), layers.Dense(32)(layers.Add()([h, sa]))])
    model.compile(cydnn.optimizers.Adam(1e-3), loss=["sparse_categorical_crossentropy", "mse"])
    rng = np.random.default_rng(0)
    xa, xb = rng.standard_normal((512, 32)).astype(np.float32), rng.standard_normal((512, 32)).astype(np.float32)
    y1, y2 = rng.integers(0, 32, 512).astype(np.intp), rng.standard_normal((512, 32)).astype(np.float32)
    batches = [([xa[i:i + 128], xb[i:i + 128]], [y1[i:i + 128], y2[i:i + 128]]) for i in range(0, 512, 128)]
    for xs, ys in batches:
        model.train_on_batch(xs, ys)
    tracemalloc.start()
    try:
        peaks = []
        for xs, ys in batches * 2:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            model.train_on_batch(xs, ys)
            _, peak = tracemalloc.get_traced_memory()
            peaks.append(peak - before)
    finally:
        tracemalloc.stop()
    assert max(peaks) < 16384, f"per-step temporaries peaked at {peaks} bytes"
