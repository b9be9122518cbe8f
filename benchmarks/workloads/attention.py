"""Embedding and attention layers: one forward + backward step each (the layer alone, no optimizer,
except the embedding model, which takes a full SGD training step).

* embedding model: Embedding(10000, 64) -> GlobalAveragePooling1D -> Dense(1), batch 64 x 100 ids.
* dot attention (Luong, learned scale) on [q, v, k] of (32, 64, 64).
* additive attention (Bahdanau) on [q, v, k] of (32, 32, 64): B*Tq*Tv*D tanh, forward and backward.
* attention pooling (units 64, tanh keys) over (64, 100, 64) sequences.
"""
import numpy as np

from . import Workload

V, D_EMB, B_EMB, T_EMB = 10000, 64, 64, 100


def _emb_data():
    rng = np.random.default_rng(0)
    return rng.integers(1, V, (B_EMB, T_EMB)), rng.standard_normal(B_EMB).astype(np.float32)


def make_embedding_cydnn():
    import cydnn
    from cydnn import layers
    ids, y = _emb_data()
    model = cydnn.Sequential([layers.Embedding(V, D_EMB, input_shape=(T_EMB,)), layers.GlobalAveragePooling1D(),
                              layers.Dense(1)])
    model.compile(optimizer=cydnn.optimizers.SGD(0.01), loss="mse")
    return lambda: model.train_on_batch(ids, y)


def make_embedding_torch():
    import torch
    ids, y = _emb_data()
    ids, y = torch.from_numpy(ids), torch.from_numpy(y)[:, None]
    emb, lin = torch.nn.Embedding(V, D_EMB), torch.nn.Linear(D_EMB, 1)
    opt = torch.optim.SGD(list(emb.parameters()) + list(lin.parameters()), lr=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(lin(emb(ids).mean(1)), y).backward()
        opt.step()
    return step


def _qvk(b, tq, tv, d):
    rng = np.random.default_rng(1)
    return [rng.standard_normal(s).astype(np.float32) for s in ((b, tq, d), (b, tv, d), (b, tv, d), (b, tq, d))]


def _make_layer_step(layer, xs, dy):
    layer([x for x in xs])
    def step():
        layer.forward(xs, training=True)
        layer.backward(dy)
    return step


def make_dot_cydnn(shape=(32, 64, 64, 64)):
    from cydnn import layers
    q, v, k, dy = _qvk(*shape)
    return _make_layer_step(layers.Attention(use_scale=True), [q, v, k], dy)


def make_dot_torch(shape=(32, 64, 64, 64)):
    import torch
    q, v, k, dy = (torch.from_numpy(a) for a in _qvk(*shape))
    for t in (q, v, k):
        t.requires_grad_(True)
    scale = torch.ones((), requires_grad=True)

    def step():
        for t in (q, v, k, scale):
            t.grad = None
        out = torch.softmax(scale * q @ k.transpose(1, 2), dim=-1) @ v
        out.backward(dy)
    return step


def make_additive_cydnn(shape=(32, 32, 32, 64)):
    from cydnn import layers
    q, v, k, dy = _qvk(*shape)
    return _make_layer_step(layers.AdditiveAttention(), [q, v, k], dy)


def make_additive_torch(shape=(32, 32, 32, 64)):
    import torch
    q, v, k, dy = (torch.from_numpy(a) for a in _qvk(*shape))
    for t in (q, v, k):
        t.requires_grad_(True)
    w = torch.full((shape[3],), 0.1, requires_grad=True)

    def step():
        for t in (q, v, k, w):
            t.grad = None
        scores = (w * torch.tanh(q[:, :, None, :] + k[:, None, :, :])).sum(-1)
        out = torch.softmax(scores, dim=-1) @ v
        out.backward(dy)
    return step


POOL = (64, 100, 64, 64)  # batch, time, features, units


def _pool_data():
    rng = np.random.default_rng(2)
    b, t, f, _ = POOL
    return rng.standard_normal((b, t, f)).astype(np.float32), rng.standard_normal((b, f)).astype(np.float32)


def make_pool_cydnn():
    from cydnn import layers
    x, dy = _pool_data()
    layer = layers.AttentionPooling(units=POOL[3], query_initializer="glorot_uniform")
    layer(x)

    def step():
        layer.forward(x, training=True)
        layer.backward(dy)
    return step


def make_pool_torch():
    import torch
    x, dy = (torch.from_numpy(a) for a in _pool_data())
    x.requires_grad_(True)
    proj = torch.nn.Linear(POOL[2], POOL[3])
    query = torch.randn(POOL[3], requires_grad=True)

    def step():
        x.grad = None
        proj.zero_grad(set_to_none=True)
        query.grad = None
        a = torch.softmax(torch.tanh(proj(x)) @ query, dim=1)
        (a[:, :, None] * x).sum(1).backward(dy)
    return step


def _attn_flops(b, tq, tv, d, additive=False):
    if additive:
        return b * tq * tv * d * 10  # ~ add, tanh, mul, sum forward; recompute + 4 terms backward
    return 2 * b * tq * tv * d * 2 * 3  # two GEMMs forward, four backward


WORKLOADS = [
    Workload("embedding 10000x64 b64 t100 + avgpool + dense, sgd", make_embedding_cydnn, make_embedding_torch),
    Workload("attention dot b32 tq64 tv64 d64 fwd+bwd", make_dot_cydnn, make_dot_torch,
             flops=_attn_flops(32, 64, 64, 64)),
    Workload("attention additive b32 tq32 tv32 d64 fwd+bwd", make_additive_cydnn, make_additive_torch),
    Workload("attention pooling b64 t100 f64 u64 fwd+bwd", make_pool_cydnn, make_pool_torch),
]
