"""Micro-benchmarks of the elementwise kernels: activations, fused losses, optimizer updates
(pytest-benchmark; not part of the test suite).

    pytest benchmarks/test_bench_elementwise.py --benchmark-group-by=func

Sizes are those of the MLP workload (batch 128, 512 features, 670K parameters), where these
kernels run next to the GEMMs in every step.
"""
import numpy as np
import pytest

import cydnn
from cydnn import activations, losses, optimizers

ROWS, COLS, N_PARAMS = 128, 512, 669_706


@pytest.fixture(params=[1, 2], ids=["1thr", "2thr"])
def threads(request):
    cydnn.set_num_threads(request.param)
    return request.param


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "gelu", "softmax"])
def test_activation_forward_backward(benchmark, threads, name):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    y, dz = np.empty_like(z), np.empty_like(z)
    dy = rng.standard_normal(z.shape).astype(np.float32)
    act = activations.get(name)

    def step():
        act.forward(z, y)
        act.backward(z, y, dy, dz)
    benchmark(step)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse", "binary_crossentropy"])
def test_loss_value_and_gradient(benchmark, threads, loss):
    rng = np.random.default_rng(0)
    fn = losses.get(loss)
    pred = rng.random((ROWS, 10), dtype=np.float32) * 0.98 + 0.01
    if fn.sparse:
        target = fn.prepare_targets(rng.integers(0, 10, ROWS), pred.shape, np.float32)
    else:
        target = (rng.random(pred.shape) > 0.5).astype(np.float32)
    grad = np.empty_like(pred)
    benchmark(lambda: fn.compute(target, pred, None, grad))


@pytest.mark.parametrize("make", [lambda: optimizers.SGD(0.01, momentum=0.9), lambda: optimizers.Adam(),
                                  lambda: optimizers.RMSprop(), lambda: optimizers.SGD(0.01, global_clipnorm=1.0)],
                         ids=["sgd-momentum", "adam", "rmsprop", "sgd-global-clipnorm"])
def test_optimizer_step(benchmark, threads, make):
    rng = np.random.default_rng(0)
    params = rng.standard_normal(N_PARAMS).astype(np.float32)
    grads = rng.standard_normal(N_PARAMS).astype(np.float32) * 1e-3
    opt = make()
    benchmark(lambda: opt.apply(params, grads))
