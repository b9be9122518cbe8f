"""Normalization layers alone: one training-mode forward + backward (input and weight gradients),
and one inference forward, for BatchNormalization (dense and NHWC) and LayerNormalization.

PyTorch runs the same step on the same data: NHWC batch norm as BatchNorm2d on a channels_last
tensor (PyTorch's fast path for that layout), layer norm as nn.LayerNorm.
"""
import numpy as np

from . import Workload


def _arrays(shape):
    rng = np.random.default_rng(0)
    return rng.normal(1.0, 2.0, shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


def _cydnn_step(layer_fn, shape, training, backward=True):
    def make():
        layer = layer_fn()
        x, dy = _arrays(shape)
        layer(x[:2])

        def step():
            layer.forward(x, training=training)
            if backward:
                layer.backward(dy)
        return step
    return make


def _torch_step(module_fn, shape, training, backward=True, nhwc=False):
    def make():
        import torch
        x, dy = _arrays(shape)
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        if nhwc:  # same memory as cydnn's NHWC array, seen as (N, C, H, W) channels_last
            xt, dyt = xt.permute(0, 3, 1, 2), dyt.permute(0, 3, 1, 2)
        module = module_fn()
        module.train(training)
        xt = xt.detach().requires_grad_(backward)

        def step():
            if backward:
                xt.grad = None
                for p in module.parameters():
                    p.grad = None
                module(xt).backward(dyt)
            else:
                with torch.no_grad():
                    module(xt)
        return step
    return make


def _bn_torch(c, cls_name):
    def make():
        import torch
        return getattr(torch.nn, cls_name)(c, eps=1e-3, momentum=0.01)
    return make


def _ln_torch(d):
    def make():
        import torch
        return torch.nn.LayerNorm(d, eps=1e-3)
    return make


def _bn():
    from cydnn.layers import BatchNormalization
    return BatchNormalization()


def _ln():
    from cydnn.layers import LayerNormalization
    return LayerNormalization()


DENSE, NHWC, SEQ = (128, 512), (32, 28, 28, 32), (32, 128, 256)

WORKLOADS = [
    Workload("batchnorm dense 128x512 train fwd+bwd", _cydnn_step(_bn, DENSE, True),
             _torch_step(_bn_torch(512, "BatchNorm1d"), DENSE, True)),
    Workload("batchnorm nhwc 32x28x28x32 train fwd+bwd", _cydnn_step(_bn, NHWC, True),
             _torch_step(_bn_torch(32, "BatchNorm2d"), NHWC, True, nhwc=True)),
    Workload("batchnorm nhwc 32x28x28x32 inference fwd", _cydnn_step(_bn, NHWC, False, backward=False),
             _torch_step(_bn_torch(32, "BatchNorm2d"), NHWC, False, backward=False, nhwc=True)),
    Workload("layernorm 32x128x256 fwd+bwd", _cydnn_step(_ln, SEQ, True),
             _torch_step(_ln_torch(256), SEQ, True)),
]
