"""Sequential: a plain stack of layers, each feeding the next."""

from .. import registry
from .._validation import ShapeOnly, describe
from ..layers.base import Layer, unique_name
from ..layers.core import InputLayer
from ..saving import serialization
from .network import Network


@registry.builtin("model")
class Sequential(Network):
    """A linear stack of layers: ``Sequential([Dense(64, activation="relu"), Dense(10)])``.

    The first layer may be an ``InputLayer(shape=...)`` or carry ``input_shape=``; otherwise
    the model is built by its first fit/predict call (or ``build(input_shape)``).
    """

    def __init__(self, layers=None, name=None):
        super().__init__(name=name or unique_name("sequential"))
        self._layers = []
        self.built = False
        self._input_layer = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        """Append a layer (or an InputLayer / cydnn.Input declaring the input shape)."""
        shape = getattr(layer, "_cydnn_input_shape", None)
        if shape is not None:  # a symbolic cydnn.Input(shape=...)
            layer = InputLayer(shape=shape)
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential '{self.name}': expected a cydnn layer, received {layer!r}")
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError(f"Sequential '{self.name}': an InputLayer must come first")
            self._input_layer = layer
        else:
            if any(existing is layer for existing in self._layers):
                raise ValueError(f"Sequential '{self.name}': layer '{layer.name}' is already in the model")
            self._layers.append(layer)
        self._layers_changed()
        return self

    def pop(self):
        if not self._layers:
            raise IndexError(f"Sequential '{self.name}': there is no layer to remove")
        layer = self._layers.pop()
        self.built = False
        self._pack_key = None
        self._layers_changed()
        return layer

    def _layers_changed(self):
        """After add/pop: fresh call contexts, and a rebuild when the input shape is declared."""
        self._reset_contexts()
        declared = self._declared_input_shape()
        if declared is not None and self._layers:
            self.build(declared)

    def _declared_input_shape(self):
        if self._input_layer is not None:
            return self._input_layer._declared_input_shape
        if self._layers and self._layers[0]._declared_input_shape is not None:
            return self._layers[0]._declared_input_shape
        return None

    # ------------------------------------------------------------ graph
    def build(self, input_shape=None):
        """Build every layer for inputs of ``input_shape`` (batch axis included, may be None)."""
        if input_shape is None:
            input_shape = self._declared_input_shape()
            if input_shape is None:
                raise ValueError(f"Sequential '{self.name}': build() needs input_shape, e.g. build((None, 784))")
        if isinstance(input_shape, list):
            if len(input_shape) != 1:
                raise ValueError(f"Sequential '{self.name}': expected one input, received {len(input_shape)} input shapes")
            input_shape = input_shape[0]
        shape = (None,) + tuple(input_shape[1:])
        self._build_input_shape = shape
        self._unify_dtypes()
        for layer in self._layers:
            shape = layer.ensure_built(shape)
        self.input_shapes = [self._build_input_shape]
        self.output_shapes = [shape]
        self.built = True
        self._seen_shapes = set()
        self._reset_contexts()
        if self.compiled:
            self._setup_losses()

    def _unify_dtypes(self):
        """One dtype through the stack (the first layer's): a layer not built yet adopts it, so a
        Dropout made under float32 works inside a float64 model; a built one must match."""
        first = self._input_layer if self._input_layer is not None else self._layers[0]
        dtype = first.dtype
        for layer in self._layers:
            if layer.dtype == dtype:
                continue
            if layer.built:
                raise ValueError(f"Sequential '{self.name}': every layer must use dtype {dtype.name} (the first "
                                 f"layer's); {describe(layer)} is built with dtype {layer.dtype.name}")
            layer.dtype = dtype

    @property
    def input_shape(self):
        return self.input_shapes[0] if self.built else None

    @property
    def output_shape(self):
        return self.output_shapes[0] if self.built else None

    def _graph_layers(self):
        return self._layers

    def _output_layers(self):
        return [self._layers[-1]]

    def _n_calls(self):
        return len(self._layers)

    def _output_calls(self):
        return [len(self._layers) - 1]

    def _input_grad_flags(self):
        """The first layer reads the data: nobody needs its dL/dx."""
        return [i > 0 for i in range(len(self._layers))]

    def _check_input_shapes(self, shapes):
        """Walk a new input shape through the stack once: each layer checks what it receives."""
        (shape,) = shapes
        if self._input_layer is not None:
            self._input_layer.check_input(ShapeOnly(shape))
        for layer in self._layers:
            layer.check_input(ShapeOnly(shape))
            layer.validate_input_shape(shape)
            shape = layer.compute_output_shape(shape)

    def _forward(self, xs, training, ctxs):
        x, mask = xs[0], None
        for layer, ctx in zip(self._layers, ctxs):
            if mask is not None and layer.accepts_mask:
                y = layer.forward(x, training=training, mask=mask, ctx=ctx)
            else:
                y = layer.forward(x, training=training, ctx=ctx)
            mask = layer.compute_mask(x, mask)
            x = y
        return [x]

    def _backward(self, dys, ctxs):
        dy = dys[0]
        last, ctx = self._layers[-1], ctxs[-1]
        dy = last.backward_preactivation(dy, ctx=ctx) if self._fused[0] is not None else last.backward(dy, ctx=ctx)
        for layer, ctx in zip(reversed(self._layers[:-1]), reversed(ctxs[:-1])):
            if dy is None:
                break
            dy = layer.backward(dy, ctx=ctx)

    # ------------------------------------------------------------ config
    def get_config(self):
        layers = [serialization.serialize_layer(layer) for layer in
                  ([self._input_layer] if self._input_layer is not None else []) + self._layers]
        return {"name": self.name, "layers": layers}

    @classmethod
    def from_config(cls, config):
        return cls([serialization.deserialize_layer(c) for c in config["layers"]], name=config.get("name"))

