"""Pooling layers (channels last): MaxPooling1D/2D, AveragePooling1D/2D, GlobalAveragePooling1D/2D,
GlobalMaxPooling1D/2D. Keras names (MaxPool2D etc. are aliases), arguments and defaults.

Windows of ``pool_size`` move by ``strides`` (default: pool_size). padding="valid" keeps only
windows inside the input; "same" pads as TensorFlow (output ceil(in / stride), extra cell on the
bottom/right) and padded cells never count: max ignores them, average divides by the number of
real cells in the window. Max pooling keeps the arg-max of every window for the backward pass.
1-D layers run the 2-D kernels on a height-1 view.
"""
import numpy as np

from .. import threads
from .._kernels import pool as _pool
from .._validation import describe
from .base import Layer
from .convolutional import (_check_data_format, axis_padding, check_rank_channels, check_window_fits,
                            conv_output_length, normalize_padding, normalize_tuple)


class _KernelPooling(Layer):
    """What every pooling layer runs: a compiled kernel on a view of the input.

    ``_views(x)`` gives the kernel's input view, the shape of its output and its window
    arguments; ``_run_forward(ctx, xk, y, args)`` and ``_run_backward(ctx, dy, dx)`` call the
    kernels (``_Max`` or ``_Average``). The input and output views and the arguments are kept
    in ctx for the backward pass.
    """

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        xk, yk_shape, args = self._views(x)
        y = ctx.buffer("y", yk_shape, self.dtype)
        self._run_forward(ctx, xk, y, args)
        ctx.x_shape, ctx.xk_shape, ctx.yk_shape, ctx.args = x.shape, xk.shape, yk_shape, args
        return y.reshape((x.shape[0],) + self.compute_output_shape(x.shape)[1:])

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        if not ctx.need_input_grad:
            return None
        dy = np.ascontiguousarray(dy, dtype=self.dtype).reshape(ctx.yk_shape)
        dx = ctx.buffer("dx", ctx.xk_shape, self.dtype)
        self._run_backward(ctx, dy, dx)
        return dx.reshape(ctx.x_shape)


class _Max:
    """The max kernels' calls (``_kernels`` = forward, backward): the forward keeps the arg-max
    of every window, through which the backward routes the gradient."""

    def _run_forward(self, ctx, xk, y, args):
        ctx.argmax = ctx.buffer("argmax", y.shape, np.int32)
        self._kernels[0](xk, y, ctx.argmax, *args, threads.get_num_threads())

    def _run_backward(self, ctx, dy, dx):
        self._kernels[1](dy, ctx.argmax, dx, threads.get_num_threads())


class _Average:
    """The average kernels' calls (``_kernels`` = forward, backward)."""

    def _run_forward(self, ctx, xk, y, args):
        self._kernels[0](xk, y, *args, threads.get_num_threads())

    def _run_backward(self, ctx, dy, dx):
        self._kernels[1](dy, dx, *ctx.args, threads.get_num_threads())


class _Pooling(_KernelPooling):
    rank = 2

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        who = describe(self)
        _check_data_format(data_format, who)
        self.pool_size = normalize_tuple(pool_size, self.rank, who, "pool_size")
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, self.rank, who, "strides")
        self.padding = normalize_padding(padding, self.rank, who)
        if not isinstance(self.padding, str):
            raise ValueError(f"{who}: expected padding to be 'valid' or 'same', received padding={padding!r}")

    def validate_input_shape(self, input_shape):
        check_rank_channels(self, input_shape, self.rank)
        check_window_fits(self, input_shape, input_shape[1:-1], self.padding, self.pool_size, self.strides,
                          (1,) * self.rank, what="pool window")

    def check_input(self, x):
        check_rank_channels(self, x.shape, self.rank, self.input_shape[-1])
        check_window_fits(self, x.shape, x.shape[1:-1], self.padding, self.pool_size, self.strides,
                          (1,) * self.rank, what="pool window")

    def compute_output_shape(self, input_shape):
        out = []
        for a, size in enumerate(input_shape[1:-1]):
            k, s = self.pool_size[a], self.strides[a]
            before, after = axis_padding(self.padding, a, size, k, s, 1) if size is not None else (0, 0)
            out.append(conv_output_length(size, k, s, 1, before, after))
        return (input_shape[0],) + tuple(out) + (input_shape[-1],)

    def _views(self, x):
        """The 4-D input view, the 4-D output shape and the kernel's window arguments."""
        if self.rank == 1:
            n, w, c = x.shape
            x4 = x.reshape(n, 1, w, c)
            ks, ss = (1,) + self.pool_size, (1,) + self.strides
        else:
            x4, ks, ss = x, self.pool_size, self.strides
        out = self.compute_output_shape(x.shape)[1:-1]
        y4 = (x.shape[0],) + ((1,) + out if self.rank == 1 else out) + (x.shape[-1],)
        pads = [axis_padding(self.padding, a, x.shape[1 + a], self.pool_size[a], self.strides[a], 1)
                for a in range(self.rank)]
        top = 0 if self.rank == 1 else pads[0][0]
        left = pads[-1][0]
        return x4, y4, (ks[0], ks[1], ss[0], ss[1], top, left)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class _MaxPooling(_Max, _Pooling):
    _kernels = (_pool.max_pool2d_forward, _pool.max_pool2d_backward)


class _AveragePooling(_Average, _Pooling):
    _kernels = (_pool.avg_pool2d_forward, _pool.avg_pool2d_backward)


class MaxPooling2D(_MaxPooling):
    """Max over pool_size windows of NHWC images: (batch, h, w, c) -> (batch, out_h, out_w, c).
    pool_size=(2, 2), strides=None (= pool_size), padding="valid" or "same"."""
    rank = 2


class MaxPooling1D(_MaxPooling):
    """Max over windows of (batch, width, channels) signals. pool_size=2, strides=None, padding."""
    rank = 1


class AveragePooling2D(_AveragePooling):
    """Mean over pool_size windows of NHWC images (padding cells are not counted)."""
    rank = 2


class AveragePooling1D(_AveragePooling):
    """Mean over windows of (batch, width, channels) signals (padding cells are not counted)."""
    rank = 1


MaxPool1D, MaxPool2D = MaxPooling1D, MaxPooling2D
AvgPool1D, AvgPool2D = AveragePooling1D, AveragePooling2D


# ------------------------------------------------------------------------------ global pooling
class _GlobalPooling(_KernelPooling):
    rank = 2

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        _check_data_format(data_format, describe(self))
        self.keepdims = bool(keepdims)

    def validate_input_shape(self, input_shape):
        check_rank_channels(self, input_shape, self.rank)

    def check_input(self, x):
        check_rank_channels(self, x.shape, self.rank, self.input_shape[-1])

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return (input_shape[0],) + (1,) * self.rank + (input_shape[-1],)
        return (input_shape[0], input_shape[-1])

    def _views(self, x):
        """The (batch, steps, channels) input view, the (batch, channels) output; no arguments."""
        return x.reshape(x.shape[0], -1, x.shape[-1]), (x.shape[0], x.shape[-1]), ()

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class _GlobalAveragePooling(_Average, _GlobalPooling):
    _kernels = (_pool.global_avg_pool_forward, _pool.global_avg_pool_backward)


class _GlobalMaxPooling(_Max, _GlobalPooling):
    _kernels = (_pool.global_max_pool_forward, _pool.global_max_pool_backward)


class GlobalAveragePooling2D(_GlobalAveragePooling):
    """Mean over height and width: (batch, h, w, c) -> (batch, c), or (batch, 1, 1, c) with keepdims."""
    rank = 2


class GlobalAveragePooling1D(_GlobalAveragePooling):
    """Mean over width: (batch, w, c) -> (batch, c), or (batch, 1, c) with keepdims."""
    rank = 1


class GlobalMaxPooling2D(_GlobalMaxPooling):
    """Max over height and width: (batch, h, w, c) -> (batch, c), or (batch, 1, 1, c) with keepdims."""
    rank = 2


class GlobalMaxPooling1D(_GlobalMaxPooling):
    """Max over width: (batch, w, c) -> (batch, c), or (batch, 1, c) with keepdims."""
    rank = 1


GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
