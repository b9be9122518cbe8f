"""Activation layers: the parametric ones (PReLU with a learned slope, Maxout with its own
kernel) and Keras' configurable ReLU, LeakyReLU, ELU and Softmax layers."""
import numpy as np

from .. import activations, initializers, regularizers, threads
from .._kernels import dense as _dense
from .._validation import check_positive_int, describe
from .base import Layer
from .core import Activation


class PReLU(Layer):
    """Parametric ReLU: ``y = x if x > 0 else alpha * x`` with a learned ``alpha`` per feature.

    ``alpha`` has the input's shape without the batch axis, with size 1 along ``shared_axes``
    (1-based, as in Keras; e.g. shared_axes=[1, 2] shares one slope per channel of an image).
    """

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        if shared_axes is None:
            self.shared_axes = ()
        else:
            self.shared_axes = tuple(int(a) for a in (shared_axes if hasattr(shared_axes, "__iter__") else [shared_axes]))

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes:
            if not 1 <= a < len(input_shape):
                raise ValueError(f"{describe(self)}: expected shared_axes between 1 and {len(input_shape) - 1}, "
                                 f"received shared_axes={self.shared_axes}")
            shape[a - 1] = 1
        if any(s is None for s in shape):
            raise ValueError(f"{describe(self)}: expected known sizes on unshared axes, received shape {input_shape}")
        self.add_weight("alpha", shape, self.alpha_initializer, self.alpha_regularizer)
        self._reduce_axes = (0,) + tuple(self.shared_axes)

    def check_input(self, x):
        from .._validation import check_shape
        check_shape(x, self.input_shape, describe(self))

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        ctx.x = x
        y = ctx.buffer("y", x.shape, self.dtype)
        np.multiply(x, self._params[0].value, out=y)
        np.copyto(y, x, where=x > 0)
        return y

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        x, alpha = ctx.x, self._params[0].value
        neg = x <= 0
        if self.trainable:
            contrib = np.where(neg, dy * x, 0)
            g = contrib.sum(axis=self._reduce_axes, keepdims=True)[0]
            self._params[0].set_grad(g, ctx.accumulate)
        if not ctx.need_input_grad:
            return None
        dx = ctx.buffer("dx", dy.shape, self.dtype)
        np.multiply(dy, alpha, out=dx)
        np.copyto(dx, dy, where=~neg)
        return dx

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
                "shared_axes": list(self.shared_axes) or None}


class Maxout(Layer):
    """Maxout unit (Goodfellow et al. 2013): ``units`` outputs, each the maximum of ``pieces``
    affine functions of the input.

    Weights: kernel (in, units * pieces), bias (units * pieces,); column ``u * pieces + p`` is
    piece p of unit u. Input (batch, in) -> output (batch, units).
    """

    def __init__(self, units, pieces=2, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, describe(self), "units")
        self.pieces = check_positive_int(pieces, describe(self), "pieces")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)

    def validate_input_shape(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"{describe(self)}: expected input of shape (batch, features), received {tuple(input_shape)}")

    def build(self, input_shape):
        n = self.units * self.pieces
        self.add_weight("kernel", (input_shape[-1], n), self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (n,), self.bias_initializer)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        rows, n = x.shape[0], self.units * self.pieces
        z = ctx.buffer("z", (rows, n), self.dtype)
        _dense.dense_forward(x, self._params[0].value, self._params[1].value if self.use_bias else None, z, z,
                             activations.LINEAR_CODE, 0.0, threads.get_num_threads())
        z3 = z.reshape(rows, self.units, self.pieces)
        ctx.x = x
        ctx.arg = np.argmax(z3, axis=2)[..., None]
        return np.take_along_axis(z3, ctx.arg, axis=2)[..., 0]

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        rows = dy.shape[0]
        dz = ctx.buffer("dz", (rows, self.units * self.pieces), self.dtype)
        dz.fill(0)
        np.put_along_axis(dz.reshape(rows, self.units, self.pieces), ctx.arg, np.asarray(dy)[..., None], axis=2)
        dx = ctx.buffer("dx", ctx.x.shape, self.dtype) if ctx.need_input_grad else None
        train = self.trainable
        _dense.dense_backward(ctx.x, self._params[0].value, dz, dz, dz, dz,
                              self._params[0].grad if train else None,
                              self._params[1].grad if (train and self.use_bias) else None,
                              dx, activations.LINEAR_CODE, 0.0, ctx.accumulate,
                              threads.get_num_threads())
        return dx

    def get_config(self):
        return {**super().get_config(), "units": self.units, "pieces": self.pieces, "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer)}


class _FixedActivation(Activation):
    """An Activation layer whose function the class fixes: its config holds the function's
    arguments (the subclass adds them), never ``activation``."""

    def get_config(self):
        config = super().get_config()
        config.pop("activation")
        return config


class ReLU(_FixedActivation):
    def __init__(self, **kwargs):
        super().__init__("relu", **kwargs)


class LeakyReLU(_FixedActivation):
    """``y = x if x > 0 else negative_slope * x`` (Keras default slope 0.3)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        super().__init__(activations.Activation("leaky_relu", negative_slope), **kwargs)
        self.negative_slope = float(negative_slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(_FixedActivation):
    """``y = x if x > 0 else alpha * (exp(x) - 1)``."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(activations.Activation("elu", alpha), **kwargs)
        self.alpha = float(alpha)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class Softmax(_FixedActivation):
    """Softmax over the last axis."""

    def __init__(self, **kwargs):
        super().__init__("softmax", **kwargs)
