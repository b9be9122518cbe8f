"""The layer protocol every cydnn layer follows.

A layer
  * checks and stores hyperparameters in ``__init__``;
  * creates its weights in ``build(input_shape)`` with ``add_weight`` (shapes include the batch
    axis as None, as in Keras); each weight is a ``Parameter`` (value, gradient, regularizer,
    trainable) in ``self._params``;
  * computes ``forward(x, training, ctx=ctx)`` and ``backward(dy, ctx=ctx) -> dx`` with compiled
    kernels. Everything a call keeps for its backward lives in ``ctx``, a ``CallContext`` owned
    by the caller (context.py), never on the layer: so one layer can serve several calls of a
    graph, and several threads, at once. Scratch and output arrays come from
    ``ctx.buffer(key, shape, dtype)``, kept between steps, so a training step allocates nothing
    once the batch size is stable. ``backward`` writes the weight gradients into each
    parameter's ``grad`` (added to it when ``ctx.accumulate`` is set) and may skip dx when
    ``ctx.need_input_grad`` is False. Without ``ctx`` (a direct call) the layer's own eager
    context is used;
  * exposes ``weights`` and ``grads`` as aligned lists (``grads[i]`` is None for a
    non-trainable weight such as a moving mean), ``get_weights``/``set_weights`` in Keras
    shapes and order, and ``get_config`` for saving.

Layers read their weights through ``self._params[i].value`` on every call and never keep other
references: a model may rebind them to views of one flat parameter buffer.
"""
import inspect
import re
from collections import defaultdict

import numpy as np

from .. import backend, initializers, regularizers
from .._validation import ShapeOnly, as_float_array, check_shape, describe
from .context import CallContext, Parameter

_name_counts = defaultdict(int)


def unique_name(base):
    """'dense', 'dense_1', 'dense_2', ... as Keras names layers."""
    n = _name_counts[base]
    _name_counts[base] += 1
    return base if n == 0 else f"{base}_{n}"


def snake_case(name):
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()  # as Keras: Conv2D -> conv2d


class Layer:
    # Masks (Keras semantics): a layer that makes a mask (Embedding(mask_zero=True), Masking)
    # returns it from compute_mask; a layer with accepts_mask = True receives it as
    # forward(x, training, mask=...); supports_masking = True passes it on unchanged.
    supports_masking = False
    accepts_mask = False

    def __init_subclass__(cls, **kwargs):
        """A layer class whose forward/backward cannot take ``ctx`` is refused when it is defined,
        with the fix, rather than failing later inside a model's step."""
        super().__init_subclass__(**kwargs)
        for name in ("forward", "backward", "backward_preactivation"):
            fn = cls.__dict__.get(name)
            if fn is None or not callable(fn):
                continue
            params = inspect.signature(fn).parameters.values()
            if not any(p.name == "ctx" or p.kind is p.VAR_KEYWORD for p in params):
                raise TypeError(f"{cls.__name__}.{name}: expected a keyword parameter ctx=None (the call's state, a "
                                f"CallContext: keep what backward needs on ctx, not on self; see "
                                f"cydnn.layers.base), received signature {name}{inspect.signature(fn)}")

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None, input_dim=None,
                 **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {sorted(kwargs)}")
        self.name = name if name is not None else unique_name(snake_case(type(self).__name__))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{type(self).__name__}: expected name to be a non-empty str, received name={name!r}")
        self.trainable = bool(trainable)
        self.dtype = backend.as_float_dtype(dtype if dtype is not None else backend.floatx(), describe(self))
        self.built = False
        self.input_shape = None
        self.output_shape = None
        if input_dim is not None:
            input_shape = (input_dim,)
        self._declared_input_shape = None if input_shape is None else (None,) + tuple(input_shape)
        self._params = []
        self._eager_ctx = None

    # ----------------------------------------------------------------- weights
    def add_weight(self, name, shape, initializer="zeros", regularizer=None, trainable=True):
        """Create a weight (and, when trainable, its gradient buffer); return the array."""
        shape = tuple(int(s) for s in shape)
        value = initializers.get(initializer)(shape, self.dtype)
        value = np.ascontiguousarray(value, dtype=self.dtype).reshape(shape)
        self._params.append(Parameter(name, value, regularizers.get(regularizer), trainable))
        return value

    @property
    def params(self):
        """The layer's ``Parameter`` objects, in weight order."""
        return list(self._params)

    @property
    def weights(self):
        return [p.value for p in self._params]

    @property
    def grads(self):
        return [p.grad for p in self._params]

    @property
    def weight_names(self):
        return [p.name for p in self._params]

    @property
    def trainable_weights(self):
        return [p.value for p in self._params if p.trainable and self.trainable]

    @property
    def non_trainable_weights(self):
        return [p.value for p in self._params if not (p.trainable and self.trainable)]

    def get_weights(self):
        return [p.value.copy() for p in self._params]

    def set_weights(self, weights):
        """Copy values into the existing weights (same count, shapes in Keras order)."""
        weights = list(weights)
        expected = ", ".join(f"{p.name} {p.value.shape}" for p in self._params)
        if len(weights) != len(self._params):
            raise ValueError(f"{describe(self)}: expected {len(self._params)} weight arrays ({expected}), "
                             f"received {len(weights)}")
        for p, new in zip(self._params, weights):
            new = np.asarray(new)
            if new.shape != p.value.shape:
                raise ValueError(f"{describe(self)}: expected weight '{p.name}' of shape {p.value.shape}, "
                                 f"received shape {new.shape}")
        for p, new in zip(self._params, weights):
            np.copyto(p.value, np.asarray(new, dtype=p.value.dtype))

    def count_params(self):
        return int(sum(p.value.size for p in self._params))

    def zero_grads(self):
        for p in self._params:
            if p.grad is not None:
                p.grad.fill(0)

    @property
    def has_regularizers(self):
        return any(p.regularizer is not None for p in self._params)

    def regularization_penalty(self, add_gradients=False):
        """Sum of this layer's weight penalties; with add_gradients, add their gradients too."""
        total = 0.0
        for p in self._params:
            if p.regularizer is None:
                continue
            if add_gradients and p.trainable and self.trainable:
                total += p.regularizer.add_gradient(p.value, p.grad)
            else:
                total += p.regularizer(p.value)
        return total

    # ----------------------------------------------------------------- building
    def build(self, input_shape):
        """Create weights for inputs of ``input_shape`` (batch axis included, as None)."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def ensure_built(self, input_shape):
        """Build for ``input_shape`` once; return the output shape. Used by models and __call__."""
        input_shape = (None,) + tuple(input_shape[1:])
        if not self.built:
            if self._declared_input_shape is not None:
                check_shape(ShapeOnly(input_shape), self._declared_input_shape, describe(self))
            self.validate_input_shape(input_shape)
            self.build(input_shape)
            self.input_shape = input_shape
            self.output_shape = tuple(self.compute_output_shape(input_shape))
            self.built = True
        return self.output_shape

    def validate_input_shape(self, input_shape):
        """Raise a ValueError naming the layer when it cannot take inputs of this shape."""

    def check_input(self, x):
        """Per-call check once built: same rank and same last dimension as at build time."""
        expected = (None,) * (len(self.input_shape) - 1) + (self.input_shape[-1],)
        check_shape(x, expected, describe(self))

    # ----------------------------------------------------------------- running
    def __call__(self, x, training=False):
        """Forward on concrete data: checks the input, builds on first use, returns a new array."""
        hook = getattr(x, "_cydnn_symbolic_call", None)
        if hook is not None:  # functional API: x is a symbolic tensor
            return hook(self)
        x = as_float_array(x, self.dtype, describe(self))
        if x.ndim == 0:
            raise ValueError(f"{describe(self)}: expected input with a batch axis, received a scalar")
        if not self.built:
            self.validate_input_shape(x.shape)  # reports the real batch size; ensure_built sees None
            self.ensure_built(x.shape)
        else:
            self.check_input(x)
        y = self.forward(x, training=training)  # the eager context: layer.backward(dy) may follow
        return y.copy() if isinstance(y, np.ndarray) else y

    def compute_mask(self, x, mask=None):
        """The (batch, time) boolean mask of this layer's output, given its input's mask."""
        return mask if self.supports_masking else None

    def forward(self, x, training=False, ctx=None):
        raise NotImplementedError

    def backward(self, dy, ctx=None):
        raise NotImplementedError

    # ----------------------------------------------------------------- per-call state
    def context(self, ctx):
        """The state of this call: the caller's context, or for a direct call the eager one."""
        if ctx is not None:
            return ctx
        if self._eager_ctx is None:
            self._eager_ctx = CallContext()
        return self._eager_ctx

    # The eager context's flags and logits, for direct use of a layer (tests, gradient checks):
    # models set these on the contexts they own.
    @property
    def accumulate_grads(self):
        return self.context(None).accumulate

    @accumulate_grads.setter
    def accumulate_grads(self, value):
        self.context(None).accumulate = bool(value)

    @property
    def need_input_grad(self):
        return self.context(None).need_input_grad

    @need_input_grad.setter
    def need_input_grad(self, value):
        self.context(None).need_input_grad = bool(value)

    @property
    def logits(self):
        """The pre-activation of the last direct call (for losses fused with softmax/sigmoid)."""
        return self.context(None).logits

    # ----------------------------------------------------------------- config
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}
        if self._declared_input_shape is not None:
            config["input_shape"] = list(self._declared_input_shape[1:])
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"
