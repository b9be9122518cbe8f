"""MLP 784-512-512-10 (ReLU, softmax cross-entropy), batch 128: one SGD-momentum training step."""
import numpy as np

from . import Workload

BATCH, SIZES = 128, (784, 512, 512, 10)
FLOPS = 3 * 2 * BATCH * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # forward + 2 backward GEMMs


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((BATCH, SIZES[0])).astype(np.float32), rng.integers(0, 10, BATCH)


def make_cydnn():
    import cydnn
    from cydnn import layers
    x, y = _data()
    model = cydnn.Sequential([layers.InputLayer(shape=(SIZES[0],))] +
                             [layers.Dense(n, activation="relu") for n in SIZES[1:-1]] +
                             [layers.Dense(SIZES[-1], activation="softmax")])
    model.compile(optimizer=cydnn.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
    return lambda: model.train_on_batch(x, y)


def make_torch():
    import torch
    x, y = _data()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    mods = []
    for a, b in zip(SIZES[:-2], SIZES[1:-1]):
        mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*mods, torch.nn.Linear(SIZES[-2], SIZES[-1]))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return step


WORKLOADS = [Workload("mlp 784-512-512-10 b128 sgd-momentum", make_cydnn, make_torch, target=0.9, flops=FLOPS)]
