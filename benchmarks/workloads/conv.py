"""Convolutional workloads: LeNet-5 and a small ConvNet (one SGD-momentum training step each), and
the ConvNet's big convolution alone (forward + backward) to read its GFLOP/s.

    LeNet-5  28x28x1, batch 64: conv 5x5x6 "same", max-pool 2, conv 5x5x16 "valid", max-pool 2,
             flatten, dense 120-84-10 (ReLU), softmax cross-entropy.         target <= 0.6x torch
    ConvNet  28x28x1, batch 128: conv 3x3x32, conv 3x3x64, max-pool 2, flatten, dense 128, dense 10
             (ReLU), softmax cross-entropy.                                  target <= 0.7x torch

FLOPs count 2 per multiply-add: the forward pass, plus dW and dx for every layer but the first
(whose dx nobody needs).

LeNet's convolutions run cydnn's direct kernels (AVX-512 here, chosen at run time; see
csrc/core/_conv_direct.h), the ConvNet's second one im2col + sgemm, whose speed is the BLAS's: SciPy's
OpenBLAS runs its AVX2 (Haswell) kernels when OPENBLAS_CORETYPE=Haswell is set (~100 GFLOP/s per
core here) and its AVX-512 (SkylakeX) kernels otherwise (~150-200); the dense layers too. PyTorch's
oneDNN uses AVX-512 either way.
"""
import numpy as np

from . import Workload

LENET_BATCH, CONVNET_BATCH = 64, 128


def _macs_conv(batch, out_hw, k, c_in, c_out):
    return batch * out_hw[0] * out_hw[1] * k * k * c_in * c_out


def _step_flops(first, rest):
    """first: multiply-adds of the first layer (forward + dW); rest: of every other layer (+ dx)."""
    return 2 * (2 * first + 3 * rest)


_LENET_DENSE = 400 * 120 + 120 * 84 + 84 * 10
LENET_FLOPS = _step_flops(_macs_conv(LENET_BATCH, (28, 28), 5, 1, 6),
                          _macs_conv(LENET_BATCH, (10, 10), 5, 6, 16) + LENET_BATCH * _LENET_DENSE)
CONVNET_FLOPS = _step_flops(_macs_conv(CONVNET_BATCH, (26, 26), 3, 1, 32),
                            _macs_conv(CONVNET_BATCH, (24, 24), 3, 32, 64) + CONVNET_BATCH * (9216 * 128 + 128 * 10))
CONV2_FLOPS = 3 * 2 * _macs_conv(CONVNET_BATCH, (24, 24), 3, 32, 64)


def _data(batch, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((batch, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, batch)


def _cydnn_step(build, batch):
    import cydnn
    x, y = _data(batch)
    model = cydnn.Sequential(build())
    model.compile(optimizer=cydnn.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
    return lambda: model.train_on_batch(x, y)


def _torch_step(build, batch):
    import torch
    x, y = _data(batch)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(y)
    model = build(torch.nn)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return step


# --------------------------------------------------------------------------------- LeNet-5
def lenet_cydnn():
    from cydnn import layers
    return [layers.InputLayer(shape=(28, 28, 1)),
            layers.Conv2D(6, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu"),
            layers.Dense(10, activation="softmax")]


def lenet_torch(nn):
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


# --------------------------------------------------------------------------------- ConvNet
def convnet_cydnn():
    from cydnn import layers
    return [layers.InputLayer(shape=(28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax")]


def convnet_torch(nn):
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))


# ------------------------------------------------------------------- the ConvNet's conv2 alone
def conv2_cydnn():
    from cydnn import layers
    x = np.random.default_rng(0).random((CONVNET_BATCH, 26, 26, 32), dtype=np.float32)
    layer = layers.Conv2D(64, 3, activation="relu")
    y = layer(x)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)

    def step():
        layer.forward(x, training=True)
        layer.backward(dy)
    return step


def conv2_torch():
    import torch
    x = torch.rand(CONVNET_BATCH, 32, 26, 26, requires_grad=True)
    conv = torch.nn.Conv2d(32, 64, 3)
    dy = torch.randn(CONVNET_BATCH, 64, 24, 24)

    def step():
        x.grad = None
        conv.zero_grad(set_to_none=True)
        torch.relu(conv(x)).backward(dy)
    return step


WORKLOADS = [
    Workload("lenet5 28x28 b64 sgd-momentum", lambda: _cydnn_step(lenet_cydnn, LENET_BATCH),
             lambda: _torch_step(lenet_torch, LENET_BATCH), target=0.6, flops=LENET_FLOPS),
    Workload("convnet 32-64-128 28x28 b128 sgd-momentum", lambda: _cydnn_step(convnet_cydnn, CONVNET_BATCH),
             lambda: _torch_step(convnet_torch, CONVNET_BATCH), target=0.7, flops=CONVNET_FLOPS),
    Workload("conv2d 3x3 32->64 26x26 b128 fwd+bwd", conv2_cydnn, conv2_torch, flops=CONV2_FLOPS,
             notes="the ConvNet's second convolution alone: forward, dW and dx"),
]
