"""Convolution layers (channels last): Conv1D, Conv2D, DepthwiseConv2D, ZeroPadding1D/2D.

Shapes follow Keras: Conv2D maps (batch, height, width, channels) to (batch, out_h, out_w, filters)
with a kernel of shape (kh, kw, channels, filters); Conv1D maps (batch, width, channels) with a
kernel (k, channels, filters) and runs as a height-1 Conv2D. Along each spatial axis

    out = floor((in + pad_total - dilation * (k - 1) - 1) / stride) + 1

where padding "valid" adds nothing, "same" adds pad_total = max((ceil(in / stride) - 1) * stride
+ (k - 1) * dilation + 1 - in, 0) with the extra cell on the bottom/right (as TensorFlow), "causal"
(Conv1D) adds dilation * (k - 1) on the left, and explicit padding gives the cells per side.
"""

import numpy as np

from .. import activations, initializers, regularizers, threads
from .._kernels import conv as _conv
from .._validation import check_positive_int, describe
from .base import Layer

# How a convolution runs (patches or direct kernels, chunks, groups, scratch) is decided in the
# kernels module, once per input shape: _conv.ConvPlan, with the tuning constants next to it.


# ------------------------------------------------------------------------------ argument helpers
def normalize_tuple(value, n, who, name, allow_zero=False):
    """An int or a sequence of n ints (each positive, or >= 0 with allow_zero) as a tuple of n ints."""
    items = (value,) * n if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    kind = "non-negative" if allow_zero else "positive"
    if items is None or len(items) != n or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and (v >= 0 if allow_zero else v > 0)
            for v in items):
        shape = "an int" if n == 1 else f"an int or a tuple of {n} ints"
        raise ValueError(f"{who}: expected {name} to be {shape}, each {kind}, received {name}={value!r}")
    return tuple(int(v) for v in items)


def normalize_padding(padding, rank, who, allowed=("valid", "same")):
    """'valid' / 'same' (/ 'causal'), or explicit cells per side: an int, one int per axis, or one
    (before, after) pair per axis. Returns the lower-case string or a tuple of (before, after) pairs."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in allowed:
            raise ValueError(f"{who}: expected padding to be one of {', '.join(map(repr, allowed))} or explicit "
                             f"cells per side, received padding={padding!r}")
        return mode
    try:
        if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
            pairs = ((padding, padding),) * rank
        elif rank == 1 and len(padding) == 2 and all(isinstance(p, (int, np.integer)) for p in padding):
            pairs = (tuple(padding),)
        elif len(padding) == rank and all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in padding):
            pairs = tuple((p, p) for p in padding)
        else:
            pairs = tuple(tuple(p) for p in padding)
        ok = len(pairs) == rank and all(
            len(p) == 2 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in p)
            for p in pairs)
    except TypeError:
        ok = False
    if not ok:
        form = "(left, right)" if rank == 1 else "((top, bottom), (left, right))"
        raise ValueError(f"{who}: expected padding to be one of {', '.join(map(repr, allowed))}, a non-negative "
                         f"int or {form} of non-negative ints, received padding={padding!r}")
    return tuple((int(a), int(b)) for a, b in pairs)


def axis_padding(padding, axis, size, k, stride, dilation):
    """(before, after) cells of padding along one axis of length ``size``."""
    if not isinstance(padding, str):
        return padding[axis]
    if padding == "valid":
        return 0, 0
    eff = dilation * (k - 1) + 1
    if padding == "causal":
        return eff - 1, 0
    total = max((-(-size // stride) - 1) * stride + eff - size, 0)   # "same", as TensorFlow
    return total // 2, total - total // 2


def conv_output_length(size, k, stride, dilation, before, after):
    """floor((size + before + after - dilation * (k - 1) - 1) / stride) + 1, or None if size is unknown."""
    if size is None:
        return None
    return (size + before + after - dilation * (k - 1) - 1) // stride + 1


def check_window_fits(layer, input_shape, axes, padding, kernel, strides, dilations, what="kernel"):
    """Raise a ValueError naming the layer when a (dilated) window is larger than the padded input."""
    for a, (size, k, s, d) in enumerate(zip(axes, kernel, strides, dilations)):
        if size is None:
            continue
        before, after = axis_padding(padding, a, size, k, s, d)
        eff = d * (k - 1) + 1
        if size + before + after < eff:
            raise ValueError(f"{describe(layer)}: expected the padded input to be at least as large as the "
                             f"{what} along spatial axis {a + 1} ({eff} cells with dilation {d}), received input "
                             f"shape {tuple(input_shape)} with padding ({before}, {after})")


def check_rank_channels(layer, shape, rank, channels=None):
    """Input rank rank+2 (batch, *spatial, channels), a known channel count, and optionally that count."""
    spatial = ("width",) if rank == 1 else ("height", "width")
    layout = "(batch, " + ", ".join(spatial) + ", channels)"
    if len(shape) != rank + 2:
        raise ValueError(f"{describe(layer)}: expected input of rank {rank + 2} {layout}, "
                         f"received shape {tuple(shape)}")
    if shape[-1] is None or (channels is None and shape[-1] <= 0):
        raise ValueError(f"{describe(layer)}: expected input with a known, positive channel count (last axis), "
                         f"received shape {tuple(shape)}")
    if channels is not None and shape[-1] != channels:
        raise ValueError(f"{describe(layer)}: expected input with {channels} channels (last axis), "
                         f"received shape {tuple(shape)}")
    if any(s is not None and s <= 0 for s in shape[1:-1]):
        raise ValueError(f"{describe(layer)}: expected input with positive spatial sizes {layout}, "
                         f"received shape {tuple(shape)}")


def _check_data_format(data_format, who):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{who}: only data_format='channels_last' (NHWC) is supported, "
                         f"received data_format={data_format!r}")


# --------------------------------------------------------------------------------- Conv1D/2D
class _Conv(Layer):
    """Shared by Conv1D and Conv2D: both run the 2-D kernel (Conv1D with height 1)."""
    rank = 2
    _paddings = ("valid", "same")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        who = describe(self)
        _check_data_format(data_format, who)
        self.filters = check_positive_int(filters, who, "filters")
        self.kernel_size = normalize_tuple(kernel_size, self.rank, who, "kernel_size")
        self.strides = normalize_tuple(strides, self.rank, who, "strides")
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, who, "dilation_rate")
        self.padding = normalize_padding(padding, self.rank, who, self._paddings)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self._plans = {}

    # ----------------------------------------------------------------- shapes
    def validate_input_shape(self, input_shape):
        check_rank_channels(self, input_shape, self.rank)
        check_window_fits(self, input_shape, input_shape[1:-1], self.padding, self.kernel_size, self.strides,
                          self.dilation_rate)

    def check_input(self, x):
        check_rank_channels(self, x.shape, self.rank, self.input_shape[-1])
        check_window_fits(self, x.shape, x.shape[1:-1], self.padding, self.kernel_size, self.strides,
                          self.dilation_rate)

    def compute_output_shape(self, input_shape):
        out = []
        for a, size in enumerate(input_shape[1:-1]):
            k, s, d = self.kernel_size[a], self.strides[a], self.dilation_rate[a]
            before, after = axis_padding(self.padding, a, size, k, s, d) if size is not None else (0, 0)
            out.append(conv_output_length(size, k, s, d, before, after))
        return (input_shape[0],) + tuple(out) + (self.filters,)

    def build(self, input_shape):
        self.add_weight("kernel", self.kernel_size + (input_shape[-1], self.filters), self.kernel_initializer,
                        self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, self.bias_regularizer)

    @property
    def kernel(self):
        return self._params[0].value

    @property
    def bias(self):
        return self._params[1].value if self.use_bias else None

    def _plan_for(self, shape):
        """The kernels' plan for an input of this shape at the current thread count (cached)."""
        nt = threads.get_num_threads()
        plan = self._plans.get((shape, nt))
        if plan is None:
            spatial = shape[1:-1] if self.rank == 2 else (1,) + tuple(shape[1:-1])
            ks = self.kernel_size if self.rank == 2 else (1,) + self.kernel_size
            ss = self.strides if self.rank == 2 else (1,) + self.strides
            ds = self.dilation_rate if self.rank == 2 else (1,) + self.dilation_rate
            pads = [(0, 0)] if self.rank == 1 else []
            for a, size in enumerate(shape[1:-1]):
                pads.append(axis_padding(self.padding, a, size, self.kernel_size[a], self.strides[a],
                                         self.dilation_rate[a]))
            plan = self._plans[(shape, nt)] = _conv.ConvPlan(
                (shape[0], spatial[0], spatial[1], shape[-1]), self.filters, tuple(ks), tuple(ss), tuple(pads),
                tuple(ds), self.dtype.itemsize, nt)
        return plan

    def _out_shape(self, plan):
        return plan.z4[:1] + plan.z4[3 - self.rank:]

    # ----------------------------------------------------------------- running
    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        p = self._plan_for(x.shape)
        x4 = x.reshape(p.x4)
        z = ctx.buffer("z", p.z4, self.dtype)
        y = z if self.activation.code == activations.LINEAR_CODE else ctx.buffer("y", p.z4, self.dtype)
        p.forward(x4, self.kernel.reshape(p.kdim, self.filters), self.bias, z, y,
                  ctx.buffer("col", (p.threads, max(1, p.col)), self.dtype), self.activation.code,
                  self.activation.alpha)
        ctx.x4, ctx.z, ctx.y, ctx.plan = x4, z, y, p
        ctx.logits = z.reshape(self._out_shape(p))  # the pre-activation, for losses fused with softmax/sigmoid
        return y.reshape(self._out_shape(p))

    def backward(self, dy, ctx=None):
        return self._backward(self.context(ctx), dy, self.activation.code)

    def backward_preactivation(self, dz, ctx=None):
        """Backward from dL/dz (the gradient before the activation), as fused losses provide."""
        return self._backward(self.context(ctx), dz, activations.LINEAR_CODE)

    def _backward(self, ctx, dy, act):
        p = ctx.plan
        dy = np.ascontiguousarray(dy, dtype=self.dtype).reshape(p.z4)
        dz = dy if act == activations.LINEAR_CODE else ctx.buffer("dz", p.z4, self.dtype)
        dx = ctx.buffer("dx", p.x4, self.dtype) if ctx.need_input_grad else None
        train = self.trainable
        p.backward(
            ctx.x4, self.kernel.reshape(p.kdim, self.filters), ctx.z, ctx.y, dy, dz,
            self._params[0].grad.reshape(p.kdim, self.filters) if train else None,
            self._params[1].grad if (train and self.use_bias) else None, dx,
            ctx.buffer("col", (p.threads, max(1, p.col)), self.dtype),
            ctx.buffer("dw_part", (p.groups, p.part), self.dtype),
            ctx.buffer("db_part", (p.groups, self.filters), self.dtype),
            act, self.activation.alpha, ctx.accumulate)
        return None if dx is None else dx.reshape(self._x_shape_of(p))

    def _x_shape_of(self, p):
        n, h, w, c = p.x4
        return (n, h, w, c) if self.rank == 2 else (n, w, c)

    def get_config(self):
        padding = self.padding if isinstance(self.padding, str) else [list(p) for p in self.padding]
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": padding, "dilation_rate": list(self.dilation_rate),
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}


class Conv2D(_Conv):
    """2-D convolution over NHWC images: ``y = activation(conv(x, kernel) + bias)``.

    Args:
        filters: output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw); default 1.
        padding: "valid" (none), "same" (output size ceil(in / stride), extra cell bottom/right as
            TensorFlow), an int (cells on every side), (ph, pw), or ((top, bottom), (left, right)).
        dilation_rate: int or (dh, dw); default 1.
        activation: name or Activation, fused into the kernel; None is linear.
        use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer: as Dense.

    Shape: (batch, h, w, channels) -> (batch, out_h, out_w, filters).
    Weights: kernel (kh, kw, channels, filters), bias (filters,).
    """
    rank = 2


class Conv1D(_Conv):
    """1-D convolution over (batch, width, channels) signals; the height-1 case of Conv2D.

    Args as Conv2D with ints for kernel_size, strides and dilation_rate; padding is "valid", "same",
    "causal" (dilation * (k - 1) zeros on the left, so output t sees inputs <= t), an int, or
    (left, right).

    Shape: (batch, width, channels) -> (batch, out_width, filters).
    Weights: kernel (k, channels, filters), bias (filters,).
    """
    rank = 1
    _paddings = ("valid", "same", "causal")


# ------------------------------------------------------------------------------ DepthwiseConv2D
class DepthwiseConv2D(Layer):
    """Depthwise 2-D convolution: each input channel is convolved with its own depth_multiplier
    filters; output channel c * depth_multiplier + j comes from input channel c.

    Args: kernel_size, strides, padding ("valid", "same" or explicit as Conv2D), depth_multiplier=1,
    dilation_rate, activation, use_bias, depthwise_initializer, bias_initializer,
    depthwise_regularizer, bias_regularizer.

    Shape: (batch, h, w, channels) -> (batch, out_h, out_w, channels * depth_multiplier).
    Weights: depthwise_kernel (kh, kw, channels, depth_multiplier), bias (channels * depth_multiplier,).
    """

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        who = describe(self)
        _check_data_format(data_format, who)
        self.kernel_size = normalize_tuple(kernel_size, 2, who, "kernel_size")
        self.strides = normalize_tuple(strides, 2, who, "strides")
        self.dilation_rate = normalize_tuple(dilation_rate, 2, who, "dilation_rate")
        self.padding = normalize_padding(padding, 2, who)
        self.depth_multiplier = check_positive_int(depth_multiplier, who, "depth_multiplier")
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def validate_input_shape(self, input_shape):
        check_rank_channels(self, input_shape, 2)
        check_window_fits(self, input_shape, input_shape[1:-1], self.padding, self.kernel_size, self.strides,
                          self.dilation_rate)

    def check_input(self, x):
        check_rank_channels(self, x.shape, 2, self.input_shape[-1])
        check_window_fits(self, x.shape, x.shape[1:-1], self.padding, self.kernel_size, self.strides,
                          self.dilation_rate)

    def compute_output_shape(self, input_shape):
        out = []
        for a, size in enumerate(input_shape[1:3]):
            k, s, d = self.kernel_size[a], self.strides[a], self.dilation_rate[a]
            before, after = axis_padding(self.padding, a, size, k, s, d) if size is not None else (0, 0)
            out.append(conv_output_length(size, k, s, d, before, after))
        return (input_shape[0],) + tuple(out) + (input_shape[-1] * self.depth_multiplier,)

    def build(self, input_shape):
        c = input_shape[-1]
        self.add_weight("depthwise_kernel", self.kernel_size + (c, self.depth_multiplier),
                        self.depthwise_initializer, self.depthwise_regularizer)
        if self.use_bias:
            self.add_weight("bias", (c * self.depth_multiplier,), self.bias_initializer, self.bias_regularizer)

    @property
    def depthwise_kernel(self):
        return self._params[0].value

    @property
    def bias(self):
        return self._params[1].value if self.use_bias else None

    def _pads(self, shape):
        return [axis_padding(self.padding, a, shape[1 + a], self.kernel_size[a], self.strides[a],
                             self.dilation_rate[a]) for a in range(2)]

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        out_shape = (x.shape[0],) + self.compute_output_shape(x.shape)[1:]
        pads = self._pads(x.shape)
        z = ctx.buffer("z", out_shape, self.dtype)
        y = z if self.activation.code == activations.LINEAR_CODE else ctx.buffer("y", out_shape, self.dtype)
        ctx.args = (self.strides[0], self.strides[1], pads[0][0], pads[1][0],
                    self.dilation_rate[0], self.dilation_rate[1])
        _conv.depthwise_conv2d_forward(x, self.depthwise_kernel, self.bias, z, y, *ctx.args,
                                       self.activation.code, self.activation.alpha, threads.get_num_threads())
        ctx.x, ctx.z, ctx.y = x, z, y
        ctx.logits = z  # the pre-activation, for losses fused with softmax/sigmoid
        return y

    def backward(self, dy, ctx=None):
        return self._backward(self.context(ctx), dy, self.activation.code)

    def backward_preactivation(self, dz, ctx=None):
        return self._backward(self.context(ctx), dz, activations.LINEAR_CODE)

    def _backward(self, ctx, dy, act):
        dy = np.ascontiguousarray(dy, dtype=self.dtype).reshape(ctx.z.shape)
        dz = dy if act == activations.LINEAR_CODE else ctx.buffer("dz", dy.shape, self.dtype)
        dx = ctx.buffer("dx", ctx.x.shape, self.dtype) if ctx.need_input_grad else None
        train = self.trainable
        size = self.depthwise_kernel.size
        groups = _conv.partial_groups(ctx.x.shape[0], size, self.dtype.itemsize)
        _conv.depthwise_conv2d_backward(
            ctx.x, self.depthwise_kernel, ctx.z, ctx.y, dy, dz, self._params[0].grad if train else None,
            self._params[1].grad if (train and self.use_bias) else None, dx,
            ctx.buffer("dk_part", (groups, size), self.dtype),
            ctx.buffer("db_part", (groups, ctx.z.shape[-1]), self.dtype),
            *ctx.args, act, self.activation.alpha, ctx.accumulate, threads.get_num_threads())
        return dx

    def get_config(self):
        padding = self.padding if isinstance(self.padding, str) else [list(p) for p in self.padding]
        return {**super().get_config(), "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": padding, "depth_multiplier": self.depth_multiplier,
                "dilation_rate": list(self.dilation_rate), "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}


# ------------------------------------------------------------------------------ ZeroPadding1D/2D
class _ZeroPadding(Layer):
    rank = 2

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        _check_data_format(data_format, describe(self))
        self.padding = normalize_padding(padding, self.rank, describe(self), allowed=())

    def validate_input_shape(self, input_shape):
        check_rank_channels(self, input_shape, self.rank)

    def check_input(self, x):
        check_rank_channels(self, x.shape, self.rank, self.input_shape[-1])

    def compute_output_shape(self, input_shape):
        spatial = tuple(None if s is None else s + a + b for s, (a, b) in zip(input_shape[1:-1], self.padding))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def _interior(self, shape):
        return (slice(None),) + tuple(slice(a, a + s) for s, (a, _) in zip(shape[1:-1], self.padding)) + (slice(None),)

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        ctx.x_shape = x.shape
        y = ctx.buffer("y", (x.shape[0],) + self.compute_output_shape(x.shape)[1:], self.dtype)
        inner = self._interior(x.shape)
        # zero only the border, then copy the input inside it
        for axis, (a, b) in enumerate(self.padding, start=1):
            if a:
                y[(slice(None),) * axis + (slice(0, a),)] = 0
            if b:
                y[(slice(None),) * axis + (slice(y.shape[axis] - b, None),)] = 0
        y[inner] = x
        return y

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        if not ctx.need_input_grad:
            return None
        dx = ctx.buffer("dx", ctx.x_shape, self.dtype)
        np.copyto(dx, np.asarray(dy)[self._interior(ctx.x_shape)])
        return dx

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


class ZeroPadding2D(_ZeroPadding):
    """Zeros around NHWC images. padding: int, (ph, pw), or ((top, bottom), (left, right))."""
    rank = 2


class ZeroPadding1D(_ZeroPadding):
    """Zeros around (batch, width, channels) signals. padding: int or (left, right)."""
    rank = 1
