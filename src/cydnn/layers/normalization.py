"""Normalization layers: BatchNormalization and LayerNormalization (Keras names, defaults, semantics).

Both reduce to a 2-D problem (rows, features) solved by compiled kernels (csrc/norm.pyx) whose sums
over rows run in a fixed order, so results do not depend on the thread count.
"""
import math

import numpy as np

from .. import initializers, regularizers, threads
from .._kernels import norm as _norm
from .._validation import check_fraction, check_positive_float, check_shape, describe
from .base import Layer


def _check_int_axis(axis, who):
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{who}: expected axis to be an int, received axis={axis!r}")
    return int(axis)


class _Normalization(Layer):
    """What BatchNormalization and LayerNormalization share: ``epsilon``, and the learned
    elementwise affine map after the normalization -- ``gamma`` (when ``scale``) then ``beta``
    (when ``center``), the layer's first weights, with their initializers and regularizers."""

    supports_masking = True

    def __init__(self, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                 gamma_regularizer, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = check_positive_float(epsilon, describe(self), "epsilon")
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def _add_affine_weights(self, shape):
        """gamma and beta of the given shape, each when enabled (in build, before other weights)."""
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer, self.gamma_regularizer)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer, self.beta_regularizer)

    @property
    def gamma(self):
        return self._params[0].value if self.scale else None

    @property
    def beta(self):
        return self._params[int(self.scale)].value if self.center else None

    def _affine_grads(self):
        """(dgamma, dbeta): the gradient buffers the backward writes, None where not trained."""
        train = self.trainable
        dgamma = self._params[0].grad if (train and self.scale) else None
        dbeta = self._params[int(self.scale)].grad if (train and self.center) else None
        return dgamma, dbeta

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer)}


class BatchNormalization(_Normalization):
    """Normalizes each channel with the statistics of the batch (training) or moving averages
    of them (inference), then scales by ``gamma`` and shifts by ``beta``:

        y = (x - mean) / sqrt(var + epsilon) * gamma + beta

    Args:
        axis: the channel axis (default -1: features of (batch, features), channels of NWC/NHWC
            images, features of (batch, time, features) sequences). Statistics are taken over
            every other axis. Any axis but the batch axis works; a non-last axis costs a transpose.
        momentum: moving = momentum * moving + (1 - momentum) * batch statistic, in [0, 1].
        epsilon: added to the variance, > 0.
        center, scale: learn ``beta`` / ``gamma`` (otherwise beta = 0, gamma = 1).
        beta_initializer, gamma_initializer, moving_mean_initializer, moving_variance_initializer,
        beta_regularizer, gamma_regularizer: as in Keras.

    Weights (Keras order): gamma (C,) and beta (C,), trainable, each only when enabled by
    ``scale``/``center``; moving_mean (C,) and moving_variance (C,), non-trainable (their
    ``grads`` entries are None).

    Training (``training=True`` and ``trainable``): the batch mean and the *biased* batch
    variance normalize the batch, and the moving statistics are updated with that same biased
    variance (as Keras does; PyTorch's running_var uses the unbiased one). Inference, and any
    call while ``trainable`` is False (a frozen layer for transfer learning, as in Keras): the
    moving statistics normalize and are not updated.

    Masks (Keras semantics): given a sequence mask (batch, time) for a (batch, time, C) input, the
    batch statistics are taken over the unmasked time steps only; every step is normalized and
    the mask is passed on.
    """

    accepts_mask = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 **kwargs):
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, **kwargs)
        who = describe(self)
        self.axis = _check_int_axis(axis, who)
        self.momentum = check_fraction(momentum, who, "momentum", high_open=False)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    # ----------------------------------------------------------------- building
    def _channel_axis(self, rank):
        return self.axis + rank if self.axis < 0 else self.axis

    def validate_input_shape(self, input_shape):
        rank = len(input_shape)
        axis = self._channel_axis(rank)
        if rank < 2:
            raise ValueError(f"{describe(self)}: expected input of rank >= 2 (batch, ..., channels), "
                             f"received shape {tuple(input_shape)}")
        if not 1 <= axis < rank:
            raise ValueError(f"{describe(self)}: expected axis in [1, {rank - 1}] or [-{rank - 1}, -1] (not the "
                             f"batch axis) for input of rank {rank}, received axis={self.axis}")
        if input_shape[axis] is None:
            raise ValueError(f"{describe(self)}: expected a known size on the channel axis {self.axis}, "
                             f"received shape {tuple(input_shape)}")

    def build(self, input_shape):
        self._axis = self._channel_axis(len(input_shape))
        self._channels = int(input_shape[self._axis])
        shape = (self._channels,)
        self._add_affine_weights(shape)
        self._mm = len(self._params)
        self.add_weight("moving_mean", shape, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", shape, self.moving_variance_initializer, trainable=False)

    def check_input(self, x):
        expected = [None] * len(self.input_shape)
        expected[self._axis] = self._channels
        check_shape(x, tuple(expected), describe(self))

    @property
    def moving_mean(self):
        return self._params[self._mm].value

    @property
    def moving_variance(self):
        return self._params[self._mm + 1].value

    # ----------------------------------------------------------------- running
    def _to_rows(self, ctx, a, key):
        """a as a C-contiguous (rows, C) array: a view for the last axis, a transposed copy otherwise."""
        a = np.ascontiguousarray(a, dtype=self.dtype)
        if self._axis == a.ndim - 1:
            return a.reshape(-1, self._channels)
        moved = np.moveaxis(a, self._axis, -1)
        buf = ctx.buffer(key, moved.shape, self.dtype)
        np.copyto(buf, moved)
        return buf.reshape(-1, self._channels)

    def _from_rows(self, ctx, rows, shape, key):
        """Inverse of _to_rows for an output of the given (original) shape."""
        if self._axis == len(shape) - 1:
            return rows.reshape(shape)
        a = self._axis
        moved_shape = tuple(shape[:a]) + tuple(shape[a + 1:]) + (shape[a],)
        out = ctx.buffer(key, shape, self.dtype)
        np.copyto(out, np.moveaxis(rows.reshape(moved_shape), -1, self._axis))
        return out

    def _scratch(self, ctx, rows):
        c = self._channels
        partials = ctx.buffer("partials", (_norm.norm_chunks(rows, c), 2, c), np.float64)
        return partials, ctx.buffer("coef", (4, c), self.dtype)

    def _row_mask(self, ctx, x, mask):
        """The mask as one uint8 per row of the (rows, C) view, in a kept buffer."""
        if mask is None:
            return None
        mask = np.asarray(mask)
        if self._axis != x.ndim - 1 or mask.shape != x.shape[:-1]:
            raise ValueError(f"{describe(self)}: expected a mask of shape {tuple(x.shape[:-1])} (the input "
                             f"without its last, channel axis), received mask shape {mask.shape}")
        rows = ctx.buffer("row_mask", (mask.size,), np.uint8)
        np.not_equal(mask.reshape(-1), 0, out=rows.view(np.bool_))
        return rows

    def forward(self, x, training=False, mask=None, ctx=None):
        ctx = self.context(ctx)
        x2 = self._to_rows(ctx, x, "x_t")
        rows = x2.shape[0]
        ctx.mask = self._row_mask(ctx, x, mask)
        ctx.batch_stats = bool(training) and self.trainable
        ctx.x_shape = x.shape
        y2 = ctx.buffer("y", x2.shape, self.dtype)
        stats = ctx.buffer("stats", (2, self._channels), np.float64)
        partials, coef = self._scratch(ctx, rows)
        _norm.batch_norm_forward(x2, ctx.mask, self.gamma, self.beta, self.moving_mean,
                                 self.moving_variance, stats, partials, coef, y2, ctx.batch_stats,
                                 self.momentum, self.epsilon, threads.get_num_threads())
        ctx.x2, ctx.stats = x2, stats
        return self._from_rows(ctx, y2, x.shape, "y_t")

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        dy2 = self._to_rows(ctx, dy, "dy_t")
        dgamma, dbeta = self._affine_grads()
        dx2 = ctx.buffer("dx", dy2.shape, self.dtype) if ctx.need_input_grad else None
        partials, coef = self._scratch(ctx, dy2.shape[0])
        _norm.batch_norm_backward(ctx.x2, ctx.mask, dy2, self.gamma, ctx.stats, dgamma,
                                  dbeta, dx2, partials, coef, ctx.batch_stats, ctx.accumulate,
                                  threads.get_num_threads())
        return None if dx2 is None else self._from_rows(ctx, dx2, ctx.x_shape, "dx_t")

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer)}


class LayerNormalization(_Normalization):
    """Normalizes each sample over its last axis (or trailing axes), then scales by ``gamma``
    and shifts by ``beta`` elementwise:

        y = (x - mean(x)) / sqrt(var(x) + epsilon) * gamma + beta

    with the mean and biased variance taken over ``axis`` for each sample (and each time step of
    a sequence). Training and inference compute the same thing.

    Args:
        axis: -1 (default), or a list of trailing axes normalized together (e.g. [-2, -1]);
            the batch axis and non-trailing axes are refused.
        epsilon: added to the variance, > 0.
        center, scale: learn ``beta`` / ``gamma``.
        beta_initializer, gamma_initializer, beta_regularizer, gamma_regularizer: as in Keras.

    Weights (Keras order): gamma and beta, each of the normalized axes' shape (``(features,)``
    for axis=-1), each only when enabled.

    A sequence mask passes through unchanged (each time step is normalized on its own).
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, **kwargs):
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, **kwargs)
        who = describe(self)
        if isinstance(axis, (list, tuple)):
            if not axis:
                raise ValueError(f"{who}: expected axis to be an int or a non-empty list of ints, "
                                 f"received axis={axis!r}")
            self.axis = [_check_int_axis(a, who) for a in axis]
        else:
            self.axis = _check_int_axis(axis, who)

    def _axes(self, rank):
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        return sorted({a + rank if a < 0 else a for a in axes})

    def validate_input_shape(self, input_shape):
        rank = len(input_shape)
        axes = self._axes(rank)
        if rank < 2:
            raise ValueError(f"{describe(self)}: expected input of rank >= 2 (batch, ..., features), "
                             f"received shape {tuple(input_shape)}")
        if axes[0] < 1 or axes[-1] >= rank or axes != list(range(axes[0], rank)):
            raise ValueError(f"{describe(self)}: expected axis to be the last axis or a list of trailing axes "
                             f"(not the batch axis) of an input of rank {rank}, received axis={self.axis!r}")
        if any(input_shape[a] is None for a in axes):
            raise ValueError(f"{describe(self)}: expected known sizes on the normalized axes {self.axis!r}, "
                             f"received shape {tuple(input_shape)}")

    def build(self, input_shape):
        self._first_axis = self._axes(len(input_shape))[0]
        self._param_shape = tuple(int(s) for s in input_shape[self._first_axis:])
        self._features = math.prod(self._param_shape)
        self._add_affine_weights(self._param_shape)

    def check_input(self, x):
        check_shape(x, (None,) * self._first_axis + self._param_shape, describe(self))

    def _flat(self, w):
        return None if w is None else w.reshape(-1)

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        x2 = np.ascontiguousarray(x, dtype=self.dtype).reshape(-1, self._features)
        y2 = ctx.buffer("y", x2.shape, self.dtype)
        stats = ctx.buffer("stats", (x2.shape[0], 2), np.float64)
        _norm.layer_norm_forward(x2, self._flat(self.gamma), self._flat(self.beta), stats, y2,
                                 self.epsilon, threads.get_num_threads())
        ctx.x2, ctx.x_shape, ctx.stats = x2, x.shape, stats
        return y2.reshape(x.shape)

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        dy2 = np.ascontiguousarray(dy, dtype=self.dtype).reshape(-1, self._features)
        dgamma, dbeta = (self._flat(g) for g in self._affine_grads())
        dx2 = ctx.buffer("dx", dy2.shape, self.dtype) if ctx.need_input_grad else None
        partials = None
        if dgamma is not None or dbeta is not None:
            partials = ctx.buffer("partials", (_norm.norm_chunks(dy2.shape[0], self._features), 2,
                                               self._features), np.float64)
        _norm.layer_norm_backward(ctx.x2, dy2, self._flat(self.gamma), ctx.stats, dgamma,
                                  dbeta, dx2, partials, ctx.accumulate, threads.get_num_threads())
        return None if dx2 is None else dx2.reshape(ctx.x_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
