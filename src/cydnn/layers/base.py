"""The layer protocol every cydnn layer follows.

A layer
  * checks and stores hyperparameters in ``__init__``;
  * creates its weights in ``build(input_shape)`` with ``add_weight`` (shapes include the batch
    axis as None, as in Keras);
  * computes ``forward(x, training)`` and ``backward(dy) -> dx`` with compiled kernels, writing
    into buffers it keeps between steps (``self.buffer``), so a training step allocates nothing
    once the batch size is stable. ``backward`` writes the weight gradients into ``grads``
    (added to them when ``accumulate_grads`` is set) and may skip dx when
    ``need_input_grad`` is False;
  * exposes ``weights`` and ``grads`` as aligned lists (``grads[i]`` is None for a
    non-trainable weight such as a moving mean), ``get_weights``/``set_weights`` in Keras
    shapes and order, and ``get_config`` for saving.

Layers index their weights through ``self._weights[i]`` on every call and never keep other
references: a model may rebind them to views of one flat parameter buffer.
"""
import re
from collections import defaultdict

import numpy as np

from .. import backend, initializers, regularizers
from .._validation import ShapeOnly, as_float_array, check_shape, describe

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
        self._weights, self._grads, self._weight_names = [], [], []
        self._weight_trainable, self._regularizers = [], []
        self._buffers = {}
        self.accumulate_grads = False
        self.need_input_grad = True

    # ----------------------------------------------------------------- weights
    def add_weight(self, name, shape, initializer="zeros", regularizer=None, trainable=True):
        """Create a weight (and, when trainable, its gradient buffer); return the array."""
        shape = tuple(int(s) for s in shape)
        value = initializers.get(initializer)(shape, self.dtype)
        value = np.ascontiguousarray(value, dtype=self.dtype).reshape(shape)
        self._weights.append(value)
        self._grads.append(np.zeros_like(value) if trainable else None)
        self._weight_names.append(name)
        self._weight_trainable.append(bool(trainable))
        self._regularizers.append(regularizers.get(regularizer))
        return value

    @property
    def weights(self):
        return list(self._weights)

    @property
    def grads(self):
        return list(self._grads)

    @property
    def weight_names(self):
        return list(self._weight_names)

    @property
    def trainable_weights(self):
        return [w for w, t in zip(self._weights, self._weight_trainable) if t and self.trainable]

    @property
    def non_trainable_weights(self):
        return [w for w, t in zip(self._weights, self._weight_trainable) if not (t and self.trainable)]

    def get_weights(self):
        return [w.copy() for w in self._weights]

    def set_weights(self, weights):
        """Copy values into the existing weights (same count, shapes in Keras order)."""
        weights = list(weights)
        expected = ", ".join(f"{n} {w.shape}" for n, w in zip(self._weight_names, self._weights))
        if len(weights) != len(self._weights):
            raise ValueError(f"{describe(self)}: expected {len(self._weights)} weight arrays ({expected}), "
                             f"received {len(weights)}")
        for name, cur, new in zip(self._weight_names, self._weights, weights):
            new = np.asarray(new)
            if new.shape != cur.shape:
                raise ValueError(f"{describe(self)}: expected weight '{name}' of shape {cur.shape}, "
                                 f"received shape {new.shape}")
        for cur, new in zip(self._weights, weights):
            np.copyto(cur, np.asarray(new, dtype=cur.dtype))

    def count_params(self):
        return int(sum(w.size for w in self._weights))

    def zero_grads(self):
        for g in self._grads:
            if g is not None:
                g.fill(0)

    def regularization_penalty(self, add_gradients=False):
        """Sum of this layer's weight penalties; with add_gradients, add their gradients too."""
        total = 0.0
        for w, g, reg, t in zip(self._weights, self._grads, self._regularizers, self._weight_trainable):
            if reg is None:
                continue
            if add_gradients and t and self.trainable:
                total += reg.add_gradient(w, g)
            else:
                total += reg(w)
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
        y = self.forward(x, training=training)
        return y.copy() if isinstance(y, np.ndarray) else y

    def compute_mask(self, x, mask=None):
        """The (batch, time) boolean mask of this layer's output, given its input's mask."""
        return mask if self.supports_masking else None

    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def buffer(self, key, shape, dtype=None):
        """A scratch array kept between calls, reallocated only when its shape changes. The array
        of the previous shape is kept as well, so an epoch's shorter last batch and the next
        epoch's full batches alternate between two arrays instead of allocating each time."""
        dtype = self.dtype if dtype is None else dtype
        shape = tuple(shape)
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            spare_key = ("previous shape", key)
            spare = self._buffers.get(spare_key)
            if buf is not None:
                self._buffers[spare_key] = buf
            if spare is not None and spare.shape == shape and spare.dtype == dtype:
                buf = spare
            else:
                buf = np.empty(shape, dtype=dtype)
            self._buffers[key] = buf
        return buf

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
