"""Merge layers (Keras names): Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot.

The multi-input layer protocol (what the functional Model relies on):

* ``multi_input = True`` on the class.
* Shapes are lists: ``build(input_shapes)``, ``validate_input_shape(input_shapes)`` and
  ``compute_output_shape(input_shapes) -> shape`` take one shape per input (batch axis included,
  as None); ``ensure_built(input_shapes)`` builds once and returns the output shape;
  ``check_input(xs)`` checks a list of arrays (or objects with a ``.shape``) once built.
* ``forward(xs, training=False, ctx=None) -> y`` takes the list of input arrays (C-contiguous,
  the layer's dtype) and returns one array, a buffer of the call's context.
* ``backward(dy, ctx=None) -> [dx_0, dx_1, ...]``: one gradient per input, in input order, each
  in the input's shape and in a buffer of its own (never the same array for two inputs, never
  dy); the list holds None everywhere when ``ctx.need_input_grad`` is False. Weight gradients,
  if a layer has weights, follow the single-input protocol (``Parameter.grad``,
  ``ctx.accumulate``).
* Masks: ``compute_mask(xs, masks)`` gets the list of input masks (None entries for inputs
  without one, or None when no input has one) and returns the output mask; elementwise merges
  AND the masks together, as Keras does.
* ``layer([a, b])`` works on concrete arrays (builds on first use, returns a new array) and on
  symbolic tensors (records a node in a functional graph).

Elementwise merges accept inputs of equal rank whose sizes are equal or 1 on every axis
(broadcast as numpy does; the batch sizes must be equal); the gradient of a broadcast input is
summed over the broadcast axes. The arithmetic is numpy on whole arrays (memory-bound, one pass
each); there is no compiled kernel here.
"""
import numpy as np

from .._validation import _fmt, as_float_array, describe
from .base import Layer


def _fmt_list(shapes):
    return "[" + ", ".join(_fmt(s) for s in shapes) + "]"


def _unbroadcast(g, out):
    """out := g summed over the axes where out has size 1 and g does not (a broadcast input)."""
    if g.shape == out.shape:
        np.copyto(out, g)
        return out
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, out.shape)) if a != b)
    np.sum(g, axis=axes, keepdims=True, out=out)
    return out


class _Merge(Layer):
    """Base of the merge layers: the list-of-inputs protocol described in the module docstring."""

    multi_input = True
    supports_masking = True
    min_inputs, max_inputs = 2, None

    # ----------------------------------------------------------------- calling
    def __call__(self, inputs, training=False):
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(f"{describe(self)}: expected a list of {self._count_text()} inputs, "
                            f"received {type(inputs).__name__}")
        for x in inputs:
            hook = getattr(x, "_cydnn_symbolic_call", None)
            if hook is not None:  # functional API: symbolic tensors
                return hook(self, list(inputs))
        xs = [as_float_array(x, self.dtype, describe(self)) for x in inputs]
        for x in xs:
            if x.ndim == 0:
                raise ValueError(f"{describe(self)}: expected inputs with a batch axis, received a scalar")
        if not self.built:
            self.ensure_built([x.shape for x in xs])
        self.check_input(xs)
        y = self.forward(xs, training=training)
        return y.copy()

    def _count_text(self):
        if self.max_inputs == self.min_inputs:
            return f"exactly {self.min_inputs}"
        return f"at least {self.min_inputs}"

    # ----------------------------------------------------------------- shapes
    def ensure_built(self, input_shapes):
        shapes = [(None,) + tuple(s[1:]) for s in input_shapes]
        if not self.built:
            self.validate_input_shape(shapes)
            self.build(shapes)
            self.input_shape = shapes
            self.output_shape = tuple(self.compute_output_shape(shapes))
            self.built = True
        return self.output_shape

    def validate_input_shape(self, input_shapes):
        n = len(input_shapes)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            raise ValueError(f"{describe(self)}: expected a list of {self._count_text()} inputs, "
                             f"received {n} (shapes {_fmt_list(input_shapes)})")
        self.compute_output_shape(input_shapes)  # raises on incompatible shapes

    def check_input(self, xs):
        shapes = [tuple(x.shape) for x in xs]
        self.validate_input_shape(shapes)
        if len({s[0] for s in shapes}) > 1:
            raise ValueError(f"{describe(self)}: expected inputs with the same batch size, received shapes "
                             f"{_fmt_list(shapes)}")

    def compute_output_shape(self, input_shapes):
        """Elementwise: equal ranks; per axis, equal sizes, or 1 (broadcast), or None (unknown)."""
        shapes = [tuple(s) for s in input_shapes]
        if len({len(s) for s in shapes}) > 1:
            raise ValueError(f"{describe(self)}: expected inputs of equal rank, received shapes {_fmt_list(shapes)}")
        out = [shapes[0][0]]
        for axis in range(1, len(shapes[0])):
            sizes = {s[axis] for s in shapes} - {1}
            known = sizes - {None}
            if len(known) > 1:
                raise ValueError(f"{describe(self)}: expected inputs of the same shape (or size 1 on an axis, to "
                                 f"broadcast), received shapes {_fmt_list(shapes)}: sizes {sorted(known)} "
                                 f"on axis {axis}")
            out.append(known.pop() if known else (None if None in sizes else 1))
        return tuple(out)

    def compute_mask(self, xs, masks=None):
        """AND of the input masks (None when no input has one)."""
        if masks is None or all(m is None for m in masks):
            return None
        out = None
        for m in masks:
            if m is not None:
                out = np.array(m, dtype=bool) if out is None else np.logical_and(out, m)
        return out

    # ----------------------------------------------------------------- running
    def forward(self, xs, training=False, ctx=None):
        """Keeps the input shapes (for the gradient buffers) and the output shape (to view dy
        in) around ``_combine``, which each merge defines: ``_combine(ctx, xs) -> y``, a buffer
        of ctx."""
        ctx = self.context(ctx)
        ctx.shapes = [x.shape for x in xs]
        y = self._combine(ctx, xs)
        ctx.y_shape = y.shape
        return y

    def _out_buffer(self, ctx, xs):
        shape = xs[0].shape
        if any(x.shape != shape for x in xs):  # (np.broadcast_shapes allocates: only when needed)
            shape = np.broadcast_shapes(*(x.shape for x in xs))
        return ctx.buffer("y", shape, self.dtype)

    def _fold(self, op, ctx, xs):
        """y := op(...op(op(x_0, x_1), x_2)..., x_n) elementwise (broadcast), in the out buffer."""
        y = self._out_buffer(ctx, xs)
        op(xs[0], xs[1], out=y)
        for x in xs[2:]:
            op(y, x, out=y)
        return y

    def _grad_buffers(self, ctx):
        """One buffer per input for its gradient (input shapes of this call's forward)."""
        return [ctx.buffer(("dx", i), shape, self.dtype) for i, shape in enumerate(ctx.shapes)]

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        if not ctx.need_input_grad:
            return [None] * len(ctx.shapes)
        dy = np.asarray(dy).reshape(ctx.y_shape)
        return self._input_grads(ctx, dy, self._grad_buffers(ctx))


class Add(_Merge):
    """Elementwise sum of a list of inputs: ``Add()([a, b])``."""

    def _combine(self, ctx, xs):
        return self._fold(np.add, ctx, xs)

    def _input_grads(self, ctx, dy, dxs):
        # d(sum)/dx_i = 1: each input gets dy (summed over its broadcast axes)
        return [_unbroadcast(dy, dx) for dx in dxs]


class Subtract(_Merge):
    """``Subtract()([a, b])`` = a - b (exactly two inputs)."""

    max_inputs = 2

    def _combine(self, ctx, xs):
        return self._fold(np.subtract, ctx, xs)  # two inputs: a - b

    def _input_grads(self, ctx, dy, dxs):
        # d(a - b)/da = 1, d(a - b)/db = -1
        _unbroadcast(dy, dxs[0])
        _unbroadcast(dy, dxs[1])
        np.negative(dxs[1], out=dxs[1])
        return dxs


class Multiply(_Merge):
    """Elementwise product of a list of inputs."""

    def _combine(self, ctx, xs):
        ctx.xs = list(xs)
        return self._fold(np.multiply, ctx, xs)

    def _input_grads(self, ctx, dy, dxs):
        # d(x_0 * ... * x_n)/dx_i = product of the other inputs (computed directly, not y / x_i,
        # which fails where x_i = 0)
        tmp = ctx.buffer("prod", dy.shape, self.dtype)
        for i, dx in enumerate(dxs):
            np.copyto(tmp, dy)
            for j, x in enumerate(ctx.xs):
                if j != i:
                    np.multiply(tmp, x, out=tmp)
            _unbroadcast(tmp, dx)
        return dxs


class Average(_Merge):
    """Elementwise mean of a list of inputs."""

    def _combine(self, ctx, xs):
        y = self._fold(np.add, ctx, xs)
        y *= 1.0 / len(xs)
        return y

    def _input_grads(self, ctx, dy, dxs):
        # d(mean)/dx_i = 1 / n
        scale = 1.0 / len(dxs)
        for dx in dxs:
            _unbroadcast(dy, dx)
            dx *= scale
        return dxs


class _Extremum(_Merge):
    """Maximum / Minimum: the gradient goes to the input holding the extremum (the first one
    on ties, as TensorFlow's does for two inputs)."""

    _op = None

    def _combine(self, ctx, xs):
        ctx.xs = list(xs)
        ctx.y = self._fold(self._op, ctx, xs)
        return ctx.y

    def _input_grads(self, ctx, dy, dxs):
        taken = ctx.buffer("taken", dy.shape, bool)
        hit = ctx.buffer("hit", dy.shape, bool)
        tmp = ctx.buffer("masked", dy.shape, self.dtype)
        taken.fill(False)
        for x, dx in zip(ctx.xs, dxs):
            # this input wins where it equals the output and no earlier input won
            np.equal(x, ctx.y, out=hit)
            np.greater(hit, taken, out=hit)  # hit and not taken (booleans), without a temporary
            taken |= hit
            tmp.fill(0)
            np.copyto(tmp, dy, where=hit)  # (dy * hit would cast the mask through a temporary)
            _unbroadcast(tmp, dx)
        return dxs


class Maximum(_Extremum):
    """Elementwise maximum of a list of inputs."""

    _op = staticmethod(np.maximum)


class Minimum(_Extremum):
    """Elementwise minimum of a list of inputs."""

    _op = staticmethod(np.minimum)


class Concatenate(_Merge):
    """Joins a list of inputs along ``axis`` (default -1, features); every other size must match.

    The batch axis (0) cannot be the concatenation axis. Masks: concatenated along the time axis
    (axis 1 of a (batch, time, ...) input), ANDed otherwise.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{describe(self)}: expected axis to be an int, received axis={axis!r}")
        self.axis = int(axis)

    def _axis(self, rank):
        return self.axis + rank if self.axis < 0 else self.axis

    def compute_output_shape(self, input_shapes):
        shapes = [tuple(s) for s in input_shapes]
        rank = len(shapes[0])
        if len({len(s) for s in shapes}) > 1:
            raise ValueError(f"{describe(self)}: expected inputs of equal rank, received shapes {_fmt_list(shapes)}")
        axis = self._axis(rank)
        if not 1 <= axis < rank:
            raise ValueError(f"{describe(self)}: expected axis in [1, {rank - 1}] or [-{rank - 1}, -1] (not the batch "
                             f"axis) for inputs of rank {rank}, received axis={self.axis}")
        out = list(shapes[0])
        for a in range(1, rank):
            if a == axis:
                sizes = [s[a] for s in shapes]
                out[a] = None if None in sizes else sum(sizes)
                continue
            known = {s[a] for s in shapes} - {None}
            if len(known) > 1:
                raise ValueError(f"{describe(self)}: expected inputs whose sizes match except on the concatenation "
                                 f"axis {axis}, received shapes {_fmt_list(shapes)}: sizes {sorted(known)} on axis {a}")
            out[a] = known.pop() if known else None
        return tuple(out)

    def _combine(self, ctx, xs):
        axis = self._axis(xs[0].ndim)
        shape = list(xs[0].shape)
        shape[axis] = sum(x.shape[axis] for x in xs)
        y = ctx.buffer("y", tuple(shape), self.dtype)
        np.concatenate(xs, axis=axis, out=y)
        return y

    def _input_grads(self, ctx, dy, dxs):
        # each input gets its own slice of dy along the axis (copied: contiguous)
        axis = self._axis(dy.ndim)
        start = 0
        for dx in dxs:
            n = dx.shape[axis]
            np.copyto(dx, dy[(slice(None),) * axis + (slice(start, start + n),)])
            start += n
        return dxs

    def compute_mask(self, xs, masks=None):
        if masks is None or all(m is None for m in masks):
            return None
        if self._axis(len(xs[0].shape)) == 1 and len(xs[0].shape) >= 3:  # along time: join the masks
            return np.concatenate([np.ones(x.shape[:2], dtype=bool) if m is None else np.asarray(m, dtype=bool)
                                   for x, m in zip(xs, masks)], axis=1)
        return super().compute_mask(xs, masks)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(_Merge):
    """Batched dot product of two inputs along ``axes`` (as Keras' Dot).

    ``axes``: an int (the same axis of both) or a pair; axes count from 1 (0 is the batch);
    negative values count from the end. ``normalize=True`` L2-normalizes both inputs along their
    axes first (cosine similarity). Inputs of rank 2 or 3:

        (batch, d) . (batch, d)           -> (batch, 1)
        (batch, m, d) . (batch, d)        -> (batch, m)       (axes=(2, 1))
        (batch, m, d) . (batch, n, d)     -> (batch, m, n)    (axes=2)
    """

    max_inputs = 2

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        pair = tuple(axes) if isinstance(axes, (list, tuple)) else (axes, axes)
        if len(pair) != 2 or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in pair):
            raise ValueError(f"{describe(self)}: expected axes to be an int or a pair of ints, received axes={axes!r}")
        self.axes = tuple(int(a) for a in pair)
        self.normalize = bool(normalize)

    def _resolve(self, shapes):
        axes = []
        for a, s in zip(self.axes, shapes):
            r = len(s)
            ax = a + r if a < 0 else a
            if not 1 <= ax < r:
                raise ValueError(f"{describe(self)}: expected axes in [1, rank) (not the batch axis), received "
                                 f"axes={self.axes} for shapes {_fmt_list(shapes)}")
            axes.append(ax)
        return axes

    def compute_output_shape(self, input_shapes):
        shapes = [tuple(s) for s in input_shapes]
        if any(len(s) not in (2, 3) for s in shapes):
            raise ValueError(f"{describe(self)}: expected two inputs of rank 2 or 3, received shapes "
                             f"{_fmt_list(shapes)}")
        ax, ay = self._resolve(shapes)
        if shapes[0][ax] is not None and shapes[1][ay] is not None and shapes[0][ax] != shapes[1][ay]:
            raise ValueError(f"{describe(self)}: expected equal sizes on the dot axes {self.axes}, received shapes "
                             f"{_fmt_list(shapes)} (sizes {shapes[0][ax]} and {shapes[1][ay]})")
        rest = [d for i, d in enumerate(shapes[0][1:], 1) if i != ax] + \
               [d for i, d in enumerate(shapes[1][1:], 1) if i != ay]
        return (shapes[0][0],) + (tuple(rest) if rest else (1,))

    def compute_mask(self, xs, masks=None):
        return None

    @staticmethod
    def _l2_normalize(x, axis):
        norm = np.sqrt(np.maximum(np.sum(x * x, axis=axis, keepdims=True), 1e-12))
        return x / norm, norm

    def _combine(self, ctx, xs):
        x, z = xs
        ax, az = self._resolve([x.shape, z.shape])
        ctx.ax, ctx.az = ax, az
        if self.normalize:
            x, ctx.nx = self._l2_normalize(x, ax)
            z, ctx.nz = self._l2_normalize(z, az)
        ctx.xn, ctx.zn = x, z
        # as (batch, p, d) @ (batch, d, q)
        a = np.moveaxis(x, ax, -1).reshape(x.shape[0], -1, x.shape[ax])
        b = np.moveaxis(z, az, 1).reshape(z.shape[0], z.shape[az], -1)
        out_shape = (x.shape[0],) + tuple(self.compute_output_shape([x.shape, z.shape])[1:])
        y = ctx.buffer("y", out_shape, self.dtype)
        np.matmul(a, b, out=y.reshape(a.shape[0], a.shape[1], b.shape[2]))
        ctx.a, ctx.b = a, b
        return y

    def _input_grads(self, ctx, dy, dxs):
        a, b = ctx.a, ctx.b
        g = dy.reshape(a.shape[0], a.shape[1], b.shape[2])
        # y = a @ b:  da = dy @ b^T,  db = a^T @ dy
        da = np.matmul(g, np.swapaxes(b, 1, 2))
        db = np.matmul(np.swapaxes(a, 1, 2), g)
        xn, zn, ax, az = ctx.xn, ctx.zn, ctx.ax, ctx.az
        # back to the inputs' layouts (undo the moveaxis/reshape)
        gx = np.moveaxis(da.reshape(np.moveaxis(xn, ax, -1).shape), -1, ax)
        gz = np.moveaxis(db.reshape(np.moveaxis(zn, az, 1).shape), 1, az)
        if self.normalize:
            # u = x / |x|:  dx = (du - u * sum(du * u)) / |x|
            gx = (gx - xn * np.sum(gx * xn, axis=ax, keepdims=True)) / ctx.nx
            gz = (gz - zn * np.sum(gz * zn, axis=az, keepdims=True)) / ctx.nz
        np.copyto(dxs[0], gx)
        np.copyto(dxs[1], gz)
        return dxs

    def get_config(self):
        return {**super().get_config(), "axes": list(self.axes), "normalize": self.normalize}


# Keras' functional shortcuts: add([a, b]) == Add()([a, b])
def add(inputs, **kwargs):
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes, normalize=False, **kwargs):
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
