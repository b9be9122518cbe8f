"""TimeDistributed: apply one layer to every time step of a sequence."""
import numpy as np

from .._validation import ShapeOnly, describe
from ..saving import serialization
from .base import Layer


class TimeDistributed(Layer):
    """Applies ``layer`` to every time step: ``TimeDistributed(Dense(10))`` on (batch, time, 64)
    gives (batch, time, 10); ``TimeDistributed(Conv2D(...))`` runs a convolution on every frame.

    The (batch, time, ...) input is viewed as (batch * time, ...), run through the wrapped layer
    in one call (one batch of batch * time samples, so the layer's kernels see a large batch),
    and viewed back. The weights are the wrapped layer's, shared by all steps: ``weights``,
    ``grads`` and ``get_weights`` come from the wrapped layer's own ``Parameter`` list.

    A mask coming in passes through unchanged (the wrapped layer works step by step).

    Shape: (batch, time, *inner_in) -> (batch, time, *inner_out).
    """

    supports_masking = True

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise TypeError(f"TimeDistributed: expected a cydnn layer to wrap, received {layer!r}")
        self.layer = layer  # first: the properties below forward to it while Layer.__init__ runs
        own = {"trainable": layer.trainable, "dtype": layer.dtype}
        super().__init__(**kwargs)
        for key, value in own.items():  # Layer.__init__ set defaults: keep the wrapped layer's own
            if key not in kwargs:
                setattr(self, key, value)
        # the wrapped layer's Parameter list, shared (a model rebinding a parameter's value to a
        # view of its flat parameter buffer rebinds the wrapped layer's weight too)
        self._params = layer._params

    # settings a model makes on its layers act on the wrapped layer (the per-call flags reach it
    # through the child context of each call)
    @property
    def trainable(self):
        return self.layer.trainable

    @trainable.setter
    def trainable(self, value):
        self.layer.trainable = bool(value)

    @property
    def dtype(self):
        return self.layer.dtype

    @dtype.setter
    def dtype(self, value):
        if self.layer.built and np.dtype(value) != self.layer.dtype:
            raise ValueError(f"{describe(self)}: cannot change the dtype of the built layer "
                             f"'{self.layer.name}' ({self.layer.dtype}) to {np.dtype(value)}")
        self.layer.dtype = np.dtype(value)

    # ------------------------------------------------------------------ shapes
    def validate_input_shape(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"{describe(self)}: expected input of rank >= 3 (batch, time, ...), "
                             f"received shape {tuple(input_shape)}")

    def _inner_shape(self, input_shape):
        return (None,) + tuple(input_shape[2:])

    def build(self, input_shape):
        inner = self._inner_shape(input_shape)
        if self.layer.built:
            self.layer.check_input(ShapeOnly(inner))
        else:
            self.layer.ensure_built(inner)

    def compute_output_shape(self, input_shape):
        inner_out = self.layer.compute_output_shape(self._inner_shape(input_shape))
        return (input_shape[0], input_shape[1]) + tuple(inner_out[1:])

    def check_input(self, x):
        if len(x.shape) != len(self.input_shape):
            raise ValueError(f"{describe(self)}: expected input of rank {len(self.input_shape)} "
                             f"(batch, time, ...), received shape {tuple(x.shape)}")
        self.layer.check_input(ShapeOnly((None,) + tuple(x.shape[2:])))

    # ------------------------------------------------------------------ running
    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        batch, time = x.shape[0], x.shape[1]
        ctx.bt = (batch, time)
        inner = ctx.child("layer")
        y = self.layer.forward(x.reshape((batch * time,) + x.shape[2:]), training=training, ctx=inner)
        ctx.logits = inner.logits  # the wrapped layer's pre-activation, (batch * time, ...)
        return y.reshape((batch, time) + y.shape[1:])

    def backward(self, dy, ctx=None):
        return self._inner_backward(self.layer.backward, dy, ctx)

    def _inner_backward(self, method, dy, ctx):
        """``method`` (a backward of the wrapped layer) on the (batch * time, ...) view of dy,
        with the wrapped layer's context of this call; dx viewed back as (batch, time, ...)."""
        ctx = self.context(ctx)
        batch, time = ctx.bt
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        dx = method(dy.reshape((batch * time,) + dy.shape[2:]), ctx=ctx.child("layer"))
        return None if dx is None else dx.reshape((batch, time) + dx.shape[1:])

    # a softmax/sigmoid output fused with its loss: forward the wrapped layer's hooks
    @property
    def activation(self):
        return getattr(self.layer, "activation", None) if hasattr(self.layer, "backward_preactivation") else None

    def backward_preactivation(self, dz, ctx=None):
        return self._inner_backward(self.layer.backward_preactivation, dz, ctx)

    def compute_mask(self, x, mask=None):
        return mask

    # ------------------------------------------------------------------ config
    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)  # the wrapped layer's
        return {**config, "layer": serialization.serialize_layer(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = serialization.deserialize_layer(config.pop("layer"))
        return cls(layer, **config)

