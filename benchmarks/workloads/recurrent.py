"""Recurrent models: sequence 50, 32 input features, 128 units, the last output into Dense(1), MSE.

* training steps (forward + backward + SGD update), batch 64, for an LSTM and a GRU;
* inference latency of the LSTM model on one sequence (batch 1);
* the layers alone (forward + backward, no input gradient), to separate the layer from the model.

PyTorch runs the same model: nn.LSTM / nn.GRU (batch_first) + nn.Linear, SGD, MSE. Its LSTM on
CPU goes through oneDNN (mkldnn_rnn), its GRU through ATen's per-step ops.
"""
import numpy as np

from . import Workload

BATCH, STEPS, FEATURES, UNITS, LR = 64, 50, 32, 128, 0.01
GATES = {"LSTM": 4, "GRU": 3}


def _flops(kind, batch, backward=True):
    """Multiply-adds x 2 of the GEMMs: input projection and recurrent product forward; backward:
    dh (recurrent), d recurrent_kernel, d kernel (no input gradient: the first layer)."""
    g = GATES[kind] * UNITS
    fwd = 2 * batch * STEPS * (FEATURES * g + UNITS * g)
    bwd = 2 * batch * STEPS * (2 * UNITS * g + FEATURES * g)
    return fwd + (bwd if backward else 0)


def _data(batch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, STEPS, FEATURES)).astype(np.float32)
    y = rng.standard_normal((batch, 1)).astype(np.float32)
    return x, y


def _cydnn_model(kind):
    import cydnn
    from cydnn import layers
    model = cydnn.Sequential([layers.InputLayer(shape=(STEPS, FEATURES)), getattr(layers, kind)(UNITS),
                              layers.Dense(1)])
    model.compile(optimizer=cydnn.optimizers.SGD(LR), loss="mse")
    return model


def _torch_model(kind):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(FEATURES, UNITS, batch_first=True)
            self.head = torch.nn.Linear(UNITS, 1)

        def forward(self, x):
            seq, _ = self.rnn(x)
            return self.head(seq[:, -1])
    return Net()


def cydnn_train(kind):
    def make():
        x, y = _data(BATCH)
        model = _cydnn_model(kind)
        return lambda: model.train_on_batch(x, y)
    return make


def torch_train(kind):
    def make():
        import torch
        x, y = (torch.from_numpy(a) for a in _data(BATCH))
        model = _torch_model(kind)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        loss_fn = torch.nn.MSELoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        return step
    return make


def cydnn_infer(kind):
    def make():
        x, _ = _data(1)
        model = _cydnn_model(kind)
        model(x)
        return lambda: model(x)
    return make


def torch_infer(kind):
    def make():
        import torch
        x = torch.from_numpy(_data(1)[0])
        model = _torch_model(kind).eval()

        def step():
            with torch.no_grad():
                model(x)
        return step
    return make


def cydnn_layer(kind):
    def make():
        from cydnn import layers
        x, _ = _data(BATCH)
        layer = getattr(layers, kind)(UNITS)
        layer(x[:2])
        layer.need_input_grad = False
        dy = np.random.default_rng(1).standard_normal((BATCH, UNITS)).astype(np.float32)

        def step():
            layer.forward(x, training=True)
            layer.backward(dy)
        return step
    return make


def torch_layer(kind):
    def make():
        import torch
        x = torch.from_numpy(_data(BATCH)[0])
        rnn = getattr(torch.nn, kind)(FEATURES, UNITS, batch_first=True)
        dy = torch.from_numpy(np.random.default_rng(1).standard_normal((BATCH, UNITS)).astype(np.float32))

        def step():
            for p in rnn.parameters():
                p.grad = None
            seq, _ = rnn(x)
            seq[:, -1].backward(dy)
        return step
    return make


WORKLOADS = [
    Workload(f"lstm s{STEPS} i{FEATURES} h{UNITS} b{BATCH} train step", cydnn_train("LSTM"), torch_train("LSTM"),
             target=0.7, flops=_flops("LSTM", BATCH)),
    Workload(f"gru s{STEPS} i{FEATURES} h{UNITS} b{BATCH} train step", cydnn_train("GRU"), torch_train("GRU"),
             target=0.7, flops=_flops("GRU", BATCH)),
    Workload(f"lstm s{STEPS} i{FEATURES} h{UNITS} b1 inference", cydnn_infer("LSTM"), torch_infer("LSTM"),
             target=0.5, flops=_flops("LSTM", 1, backward=False)),
    Workload(f"lstm layer s{STEPS} i{FEATURES} h{UNITS} b{BATCH} fwd+bwd", cydnn_layer("LSTM"), torch_layer("LSTM"),
             flops=_flops("LSTM", BATCH)),
    Workload(f"gru layer s{STEPS} i{FEATURES} h{UNITS} b{BATCH} fwd+bwd", cydnn_layer("GRU"), torch_layer("GRU"),
             flops=_flops("GRU", BATCH)),
]
