"""Core layers: Dense, Activation, Dropout, Flatten, Reshape, InputLayer."""
import math

import numpy as np

from .. import activations, backend, initializers, regularizers, threads
from .._kernels import dense as _dense
from .._validation import check_fraction, check_positive_int, check_shape, describe
from .base import Layer


class Dense(Layer):
    """Fully connected layer: ``y = activation(x @ kernel + bias)`` over the last axis.

    Args:
        units: output features.
        activation: name or Activation ('relu', 'softmax', ...); None is linear.
        use_bias: add a learned bias.
        kernel_initializer, bias_initializer: names or initializers ('glorot_uniform', 'zeros').
        kernel_regularizer, bias_regularizer: L1/L2 penalties.

    Shape: input (batch, ..., in) -> output (batch, ..., units).
    Weights: kernel (in, units), bias (units,).

    The GEMM, bias and activation run in one compiled kernel per block of rows.
    """

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, describe(self), "units")
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def validate_input_shape(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(f"{describe(self)}: expected input of rank >= 2 with a known last dimension, "
                             f"received shape {tuple(input_shape)}")

    def build(self, input_shape):
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, self.bias_regularizer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    @property
    def kernel(self):
        return self._params[0].value

    @property
    def bias(self):
        return self._params[1].value if self.use_bias else None

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        ctx.x_shape = x.shape
        x2 = x.reshape(-1, x.shape[-1])
        rows = x2.shape[0]
        z = ctx.buffer("z", (rows, self.units), self.dtype)
        y = z if self.activation.code == activations.LINEAR_CODE else ctx.buffer("y", (rows, self.units), self.dtype)
        _dense.dense_forward(x2, self.kernel, self.bias, z, y, self.activation.code,
                             self.activation.alpha, threads.get_num_threads())
        ctx.x, ctx.z, ctx.y = x2, z, y
        ctx.logits = z  # the pre-activation, for losses fused with softmax/sigmoid
        return y.reshape(ctx.x_shape[:-1] + (self.units,))

    def backward(self, dy, ctx=None):
        return self._backward(self.context(ctx), np.ascontiguousarray(dy).reshape(-1, self.units),
                              self.activation.code)

    def backward_preactivation(self, dz, ctx=None):
        """Backward from dL/dz (the gradient before the activation), as fused losses provide."""
        return self._backward(self.context(ctx), dz.reshape(-1, self.units), activations.LINEAR_CODE)

    def _backward(self, ctx, dy, act):
        dz = dy if act == activations.LINEAR_CODE else ctx.buffer("dz", dy.shape, self.dtype)
        dx = ctx.buffer("dx", ctx.x.shape, self.dtype) if ctx.need_input_grad else None
        train = self.trainable
        _dense.dense_backward(ctx.x, self.kernel, ctx.z, ctx.y, dy, dz,
                              self._params[0].grad if train else None,
                              self._params[1].grad if (train and self.use_bias) else None,
                              dx, act, self.activation.alpha, ctx.accumulate,
                              threads.get_num_threads())
        return None if dx is None else dx.reshape(ctx.x_shape)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}


class Activation(Layer):
    """Applies an activation function: ``Activation('relu')``; softmax is over the last axis."""

    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        y = ctx.buffer("y", x.shape, self.dtype)
        self.activation.forward(x, y)
        ctx.x, ctx.y = x, y
        ctx.logits = x
        return y

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        dy = np.ascontiguousarray(dy)
        if not ctx.need_input_grad:
            return None
        dx = ctx.buffer("dx", dy.shape, self.dtype)
        self.activation.backward(ctx.x, ctx.y, dy, dx)
        return dx

    def backward_preactivation(self, dz, ctx=None):
        return dz if self.context(ctx).need_input_grad else None

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Dropout(Layer):
    """Inverted dropout: in training, zero each input with probability ``rate`` and scale the
    rest by 1 / (1 - rate); the identity at inference.

    ``noise_shape`` (batch axis included, 1 where the mask is shared) as in Keras.
    """

    supports_masking = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_fraction(rate, describe(self), "rate")
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        ctx.active = training and self.rate > 0
        if not ctx.active:
            return x
        shape = x.shape if self.noise_shape is None else tuple(
            x.shape[i] if s is None else s for i, s in enumerate(self.noise_shape))
        mask = ctx.buffer("mask", shape, self.dtype)
        (self._rng or backend.rng()).random(dtype=mask.dtype, out=mask)
        # mask := (u >= rate) / (1 - rate), computed in place
        np.greater_equal(mask, self.rate, out=mask, casting="unsafe")
        mask *= 1.0 / (1.0 - self.rate)
        y = ctx.buffer("y", x.shape, self.dtype)
        np.multiply(x, mask, out=y)
        ctx.mask = mask
        return y

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        if not ctx.need_input_grad:
            return None
        if not ctx.active:
            return dy
        dx = ctx.buffer("dx", dy.shape, self.dtype)
        np.multiply(dy, ctx.mask, out=dx)
        return dx

    def get_config(self):
        return {**super().get_config(), "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape), "seed": self.seed}


class _View(Layer):
    """A layer whose output is its input viewed in another shape, ``_view_shape(x)`` (Flatten,
    Reshape): no copy, and the gradient is dy viewed back in the input's shape."""

    def check_input(self, x):
        check_shape(x, self.input_shape, describe(self))

    def forward(self, x, training=False, ctx=None):
        self.context(ctx).x_shape = x.shape
        return x.reshape(self._view_shape(x))

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        return dy.reshape(ctx.x_shape) if ctx.need_input_grad else None


class Flatten(_View):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...); a view, no copy."""

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if any(s is None for s in rest) else math.prod(rest))

    def _view_shape(self, x):
        return (x.shape[0], -1)


class Reshape(_View):
    """Reshape each sample to ``target_shape`` (batch axis excluded; one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(s) for s in target_shape)
        if sum(s == -1 for s in self.target_shape) > 1 or any(s == 0 or s < -1 for s in self.target_shape):
            raise ValueError(f"{describe(self)}: expected positive sizes with at most one -1, "
                             f"received target_shape={target_shape!r}")

    def compute_output_shape(self, input_shape):
        n = math.prod(input_shape[1:])
        known = math.prod(s for s in self.target_shape if s != -1)
        if -1 in self.target_shape:
            if n % known:
                raise ValueError(f"{describe(self)}: cannot reshape input of shape {tuple(input_shape)} "
                                 f"to target_shape {self.target_shape}")
            shape = tuple(n // known if s == -1 else s for s in self.target_shape)
        else:
            shape = self.target_shape
        if math.prod(shape) != n:
            raise ValueError(f"{describe(self)}: cannot reshape input of shape {tuple(input_shape)} "
                             f"({n} values per sample) to target_shape {self.target_shape}")
        return (input_shape[0],) + shape

    def _view_shape(self, x):
        return (x.shape[0],) + self.output_shape[1:]

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class InputLayer(Layer):
    """Declares the input shape of a Sequential model: ``InputLayer(shape=(784,))``."""

    def __init__(self, shape=None, batch_size=None, input_shape=None, **kwargs):
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ValueError("InputLayer: expected shape=(...) without the batch axis, received shape=None")
        super().__init__(input_shape=tuple(shape), **kwargs)
        self.shape = tuple(shape)
        self.batch_size = batch_size

    def check_input(self, x):
        check_shape(x, self._declared_input_shape, describe(self))

    def forward(self, x, training=False, ctx=None):
        return x

    def backward(self, dy, ctx=None):
        return dy if self.context(ctx).need_input_grad else None

    def get_config(self):
        config = super().get_config()
        config.pop("input_shape", None)
        return {**config, "shape": list(self.shape), "batch_size": self.batch_size}
