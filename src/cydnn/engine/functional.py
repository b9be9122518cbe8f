"""The functional API: ``Input``, symbolic tensors, and ``Model`` over a graph of layer calls.

    inp = cydnn.Input(shape=(784,))
    h = layers.Dense(64, activation="relu")(inp)
    a = layers.Dense(10, activation="softmax", name="digit")(h)
    b = layers.Dense(1, name="size")(layers.Concatenate()([h, inp]))
    model = cydnn.Model(inp, [a, b])
    model.compile("adam", loss={"digit": "sparse_categorical_crossentropy", "size": "mse"})

Calling a layer on a ``SymbolicTensor`` builds the layer (from the tensor's shape), records a
``Node`` (the layer, its input tensors, its output tensors) and returns new symbolic tensor(s)
whose shapes come from ``compute_output_shape``. A ``Model(inputs, outputs)`` walks the nodes back
from its outputs and runs them, in a topological order, as a ``network.Network``: compile, fit,
evaluate, predict, summary and get_config work as for ``Sequential``.

Graph order. The nodes run in the post-order of a depth-first walk from the outputs (inputs of a
node visited in order). The order depends on the graph only, not on when the layers were
called, so a model rebuilt from its config has the same layer order (and weight order). A
layer's *call index* is its position among the model's calls of that layer in this order.

Multi-input layers (``layer.multi_input = True``; see layers/merge.py) take a list of arrays in
``forward`` and return a list of input gradients from ``backward``. Multi-output layers are
those whose ``compute_output_shape`` returns a list of shapes: ``forward`` returns a list of
arrays and ``backward`` receives a list of output gradients (zeros where no gradient flows).

Backward. Nodes run in reverse order. A tensor that feeds several layers (or several inputs of
one layer, or is also a model output) gets the sum of the gradients of its uses, accumulated in
a buffer the model keeps between steps; a tensor with one use just receives the array the
consumer returned (no copy).

Per-call state. Every node (layer call) has its own ``CallContext`` (layers/context.py): what
its forward keeps for its backward lives there, so a layer called several times (a shared
layer) needs nothing special -- each backward sees exactly what its own forward left. Weight
gradients are summed over a shared layer's calls: the first backward of a layer in a step
writes its gradients (``ctx.accumulate = False``), later ones add (``True``). When the contexts
already accumulate at the start of ``_backward`` (gradient accumulation over batches, set by
``Network._train_step``), every call adds.

Nested models: calling a ``Model`` on symbolic tensors inlines its graph (its layers become
shared layers of the outer graph, with the same weights).
"""
import itertools

import numpy as np

from .. import registry
from .._validation import ShapeOnly, describe
from ..layers.base import unique_name
from ..layers.core import InputLayer
from ..saving import serialization
from .network import Network, _as_list

_node_ids = itertools.count()


class Node:
    """One call of a layer: its input tensors and the output tensors it produced."""

    __slots__ = ("layer", "inputs", "outputs", "id", "multi_input")

    def __init__(self, layer, inputs, multi_input):
        self.layer = layer
        self.inputs = list(inputs)
        self.outputs = []
        self.multi_input = multi_input
        self.id = next(_node_ids)
        layer.__dict__.setdefault("_inbound_nodes", []).append(self)

    @property
    def is_input(self):
        return isinstance(self.layer, InputLayer) and not self.inputs


class SymbolicTensor:
    """A placeholder for an array flowing through a functional graph.

    Attributes:
        shape: the shape with the batch axis as None, e.g. (None, 64).
        dtype: the producing layer's dtype.
        layer: the layer that produced it; node: that call (a ``Node``); node_index: the call's
            index among all calls of the layer; tensor_index: which of the call's outputs it is.
    """

    def __init__(self, shape, dtype, node, tensor_index):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.node = node
        self.tensor_index = tensor_index

    @property
    def layer(self):
        return self.node.layer

    @property
    def node_index(self):
        return self.layer._inbound_nodes.index(self.node)

    @property
    def name(self):
        return self.layer.name if len(self.node.outputs) <= 1 else f"{self.layer.name}:{self.tensor_index}"

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def _cydnn_input_shape(self):
        """Sequential.add(cydnn.Input(shape=...)) reads this: the shape without the batch axis."""
        return self.shape[1:] if self.node.is_input else None

    def _cydnn_symbolic_call(self, layer, inputs=None):
        """Layer.__call__ hands symbolic inputs here; merge layers pass their list as ``inputs``."""
        return call_layer(layer, self if inputs is None else inputs)

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic (a placeholder in a functional graph) and has no values: pass it "
                        f"to a layer (multi-input layers such as Add take a list of them), build "
                        f"cydnn.Model(inputs, outputs) and call predict() on data")

    def __repr__(self):
        return f"<SymbolicTensor shape={_fmt_shape(self.shape)} dtype={self.dtype.name} from '{self.name}'>"


def Input(shape=None, name=None, dtype=None, batch_size=None):
    """A symbolic input of ``shape`` (without the batch axis): ``x = cydnn.Input(shape=(784,))``.

    Sizes may be None (e.g. a sequence length). The tensor comes from an ``InputLayer`` named
    ``name`` (default 'input_layer', 'input_layer_1', ...) of dtype ``dtype`` (default floatx).
    """
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(
            s is None or (isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0) for s in shape):
        raise ValueError(f"Input: expected shape=(...) without the batch axis, a tuple of positive ints or None, "
                         f"received shape={shape!r}")
    layer = InputLayer(shape=tuple(None if s is None else int(s) for s in shape), batch_size=batch_size,
                       name=name, dtype=dtype)
    return _input_tensor(layer)


def _input_tensor(layer):
    """The symbolic tensor of an InputLayer (made once per layer)."""
    nodes = layer.__dict__.get("_inbound_nodes")
    if nodes:
        return nodes[0].outputs[0]
    shape = (None,) + tuple(layer.shape)
    layer.ensure_built(shape)
    node = Node(layer, [], multi_input=False)
    node.outputs = [SymbolicTensor(shape, layer.dtype, node, 0)]
    return node.outputs[0]


def _is_shape_list(shape):
    """compute_output_shape returned several shapes (a multi-output layer)."""
    return isinstance(shape, list) and all(isinstance(s, (tuple, list)) for s in shape) and len(shape) > 0


def call_layer(layer, inputs):
    """Record ``layer(inputs)`` on symbolic tensors and return the symbolic output(s)."""
    if isinstance(layer, Model):
        return layer(inputs)
    multi = bool(getattr(layer, "multi_input", False))
    tensors = list(inputs) if multi else [inputs]
    if not multi and isinstance(inputs, (list, tuple)):
        raise TypeError(f"{describe(layer)}: expected one input tensor, received a list of {len(inputs)}; "
                        f"only multi-input layers (Add, Concatenate, ...) take a list")
    for t in tensors:
        if not isinstance(t, SymbolicTensor):
            raise TypeError(f"{describe(layer)}: in a functional graph every input must be a symbolic tensor "
                            f"(from cydnn.Input or a layer call), received {type(t).__name__}")
    shapes = [t.shape for t in tensors]
    arg = shapes if multi else shapes[0]
    if not layer.built:
        # one dtype along the graph, as Sequential does: a layer not built yet adopts its input's
        # (a Dropout or Add made under the float32 default works in a float64 graph)
        layer.dtype = tensors[0].dtype
        layer.ensure_built(arg)
    else:  # a shared or already built layer: check it can take this input
        layer.check_input([ShapeOnly(s) for s in shapes] if multi else ShapeOnly(arg))
        layer.validate_input_shape(arg)
    out_shape = layer.compute_output_shape(arg)
    node = Node(layer, tensors, multi)
    if _is_shape_list(out_shape):
        node.outputs = [SymbolicTensor(tuple(s), layer.dtype, node, i) for i, s in enumerate(out_shape)]
        return list(node.outputs)
    node.outputs = [SymbolicTensor(tuple(out_shape), layer.dtype, node, 0)]
    return node.outputs[0]


def _fmt_shape(shape):
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _flatten_structure(obj, what, who):
    """(list of tensors, structure) for a tensor, a list/tuple of them, or a dict of them."""
    if isinstance(obj, dict):
        keys, items, kind = list(obj.keys()), list(obj.values()), "dict"
    elif isinstance(obj, (list, tuple)):
        keys, items, kind = None, list(obj), "list"
    else:
        keys, items, kind = None, [obj], "single"
    if not items:
        raise ValueError(f"{who}: expected at least one {what} tensor, received none")
    for t in items:
        if not isinstance(t, SymbolicTensor):
            raise TypeError(f"{who}: expected {what} to be symbolic tensors (from cydnn.Input or a layer call), "
                            f"received {type(t).__name__}")
    return items, (kind, keys)


class _Step:
    """A node as the model runs it: slots of its input and output tensors, precomputed."""

    __slots__ = ("node", "layer", "index", "in_slots", "out_slots", "multi_in", "multi_out", "shared")

    def __init__(self, node, index, slot_of, shared):
        self.node, self.layer, self.index = node, node.layer, index
        self.in_slots = [slot_of[id(t)] for t in node.inputs]
        self.out_slots = [slot_of[id(t)] for t in node.outputs]
        self.multi_in = node.multi_input
        self.multi_out = len(node.outputs) > 1
        self.shared = shared


class Model(Network):
    """A model over a graph of layer calls: ``Model(inputs, outputs, name=None)``.

    ``inputs``: a tensor from ``cydnn.Input``, or a list (or dict) of them; ``outputs``: a
    symbolic tensor, a list (or dict) of them. Data follows the same structure: ``fit`` takes
    a list of input arrays and a list of target arrays (or dicts keyed by input / output layer
    names); ``predict`` returns an array, or a list in output order. For several outputs,
    ``compile(loss=[...])`` gives one loss per output, or a dict keyed by output layer name, and
    ``loss_weights`` weighs them. See the module docstring for how the graph runs.

    Attributes: ``inputs``, ``outputs`` (symbolic tensors), ``input_names``, ``output_names``,
    ``input_shapes``, ``output_shapes``, ``layers`` (input layers first, then in graph order).
    """

    def __init__(self, inputs, outputs, name=None):
        super().__init__(name=name or unique_name("functional"))
        who = f"Model '{self.name}'"
        self.inputs, self._in_struct = _flatten_structure(inputs, "inputs", who)
        self.outputs, self._out_struct = _flatten_structure(outputs, "outputs", who)
        for t in self.inputs:
            if not t.node.is_input:
                raise ValueError(f"{who}: expected inputs created by cydnn.Input(...), received the output of "
                                 f"{describe(t.layer)} {_fmt_shape(t.shape)}")
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise ValueError(f"{who}: the same Input appears more than once in inputs "
                             f"{[t.layer.name for t in self.inputs]}")
        self._init_graph(who)
        self.built = True
        self.input_shapes = [t.shape for t in self.inputs]
        self.output_shapes = [t.shape for t in self.outputs]
        self._fused = [None] * len(self.outputs)

    # ------------------------------------------------------------ graph
    def _init_graph(self, who):
        input_ids = {id(t) for t in self.inputs}
        order, visited = [], set()
        for out in self.outputs:  # iterative depth-first post-order from each output
            if out.node.id in visited:
                continue
            visited.add(out.node.id)
            stack = [(out.node, 0)]
            while stack:
                node, i = stack[-1]
                if i < len(node.inputs):
                    stack[-1] = (node, i + 1)
                    child = node.inputs[i].node
                    if child.id not in visited:
                        visited.add(child.id)
                        stack.append((child, 0))
                else:
                    stack.pop()
                    order.append(node)
        reached = set()
        for node in order:
            if node.is_input:
                t = node.outputs[0]
                if id(t) not in input_ids:
                    raise ValueError(f"{who}: graph disconnected: the outputs depend on Input '{t.layer.name}' "
                                     f"{_fmt_shape(t.shape)}, which is not among the model's inputs "
                                     f"{[x.layer.name for x in self.inputs]}; pass it in inputs=")
                reached.add(id(t))
        unused = [t for t in self.inputs if id(t) not in reached]
        if unused:
            raise ValueError(f"{who}: expected every input to reach an output; input(s) "
                             f"{[f'{t.layer.name} {_fmt_shape(t.shape)}' for t in unused]} do not reach the "
                             f"outputs {[t.name for t in self.outputs]}")
        nodes = [n for n in order if not n.is_input]

        # layers: the input layers (in inputs order), then each other layer at its first call
        layers, seen = [t.layer for t in self.inputs], {id(t.layer) for t in self.inputs}
        calls = {}
        for node in nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                layers.append(node.layer)
            calls.setdefault(id(node.layer), []).append(node)
        names = [layer.name for layer in layers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{who}: layer names must be unique in a model; {dup} name more than one layer")
        self._layers = layers
        self._nodes = nodes
        self._call_index = {node.id: j for ns in calls.values() for j, node in enumerate(ns)}
        for t in self.inputs:
            self._call_index[t.node.id] = 0

        # tensor slots: model inputs first, then each node's outputs
        slot_of = {}
        for t in self.inputs:
            slot_of[id(t)] = len(slot_of)
        for node in nodes:
            for t in node.outputs:
                slot_of[id(t)] = len(slot_of)
        self._n_slots = len(slot_of)
        self._input_slots = [slot_of[id(t)] for t in self.inputs]
        self._output_slots = [slot_of[id(t)] for t in self.outputs]
        self._steps = [_Step(node, k, slot_of, shared=len(calls[id(node.layer)]) > 1) for k, node in enumerate(nodes)]
        self._producer = {s: step for step in self._steps for s in step.out_slots}
        # uses of each tensor: one per consuming input position, one per appearance in outputs
        self._uses = [0] * self._n_slots
        for step in self._steps:
            for s in step.in_slots:
                self._uses[s] += 1
        for s in self._output_slots:
            self._uses[s] += 1
        self._is_input_slot = [False] * self._n_slots
        for s in self._input_slots:
            self._is_input_slot[s] = True
        # run-time state of the training step (the model's lock is held while it runs)
        self._acc_bufs = {}
        self._reset_contexts()

    def build(self, input_shape=None):
        """A functional model is built when created; this checks ``input_shape`` (a shape or a
        list of shapes, batch axis included) against the inputs."""
        if input_shape is not None:
            shapes = input_shape if (isinstance(input_shape, list) and input_shape
                                     and isinstance(input_shape[0], (tuple, list))) else [input_shape]
            self._build_graph([tuple(s) for s in shapes])

    def _build_graph(self, input_shapes):
        if len(input_shapes) != len(self.inputs):
            raise ValueError(self._count_message(len(input_shapes), "input shapes"))
        self._check_input_shapes([(None,) + tuple(s[1:]) for s in input_shapes])
        return list(self.output_shapes)

    def _graph_layers(self):
        return self._layers

    def _output_layers(self):
        return [t.layer for t in self.outputs]

    def _n_calls(self):
        return len(self._steps)

    def _output_calls(self):
        return [self._producer[s].index if s in self._producer else None for s in self._output_slots]

    def _input_grad_flags(self):
        """A call that reads model inputs only need not compute dL/dx."""
        return [not all(self._is_input_slot[s] for s in step.in_slots) for step in self._steps]

    @property
    def input_names(self):
        return [t.layer.name for t in self.inputs]

    @property
    def output_names(self):
        return [t.layer.name for t in self.outputs]

    @property
    def input_shape(self):
        return self.input_shapes[0] if len(self.input_shapes) == 1 else list(self.input_shapes)

    @property
    def output_shape(self):
        return self.output_shapes[0] if len(self.output_shapes) == 1 else list(self.output_shapes)

    def _check_input_shapes(self, shapes):
        """Walk new input shapes through the graph once: each layer checks what it receives."""
        if len(shapes) != len(self.inputs):
            raise ValueError(self._count_message(len(shapes), "input shapes"))
        slot_shapes = [None] * self._n_slots
        for t, s, shape in zip(self.inputs, self._input_slots, shapes):
            t.layer.check_input(ShapeOnly(shape))
            slot_shapes[s] = tuple(shape)
        for step in self._steps:
            layer, ins = step.layer, [slot_shapes[s] for s in step.in_slots]
            arg = ins if step.multi_in else ins[0]
            layer.check_input([ShapeOnly(s) for s in ins] if step.multi_in else ShapeOnly(arg))
            layer.validate_input_shape(arg)
            out = layer.compute_output_shape(arg)
            outs = [tuple(o) for o in out] if _is_shape_list(out) else [tuple(out)]
            for s, o in zip(step.out_slots, outs):
                slot_shapes[s] = o

    # ------------------------------------------------------------ running
    def _forward(self, xs, training, ctxs):
        values = [None] * self._n_slots
        masks = [None] * self._n_slots
        for s, x in zip(self._input_slots, xs):
            values[s] = x
        for step in self._steps:
            layer, ctx = step.layer, ctxs[step.index]
            if step.multi_in:
                x = [values[s] for s in step.in_slots]
                m = [masks[s] for s in step.in_slots]
                if all(mi is None for mi in m):
                    m = None
            else:
                x, m = values[step.in_slots[0]], masks[step.in_slots[0]]
            if m is not None and layer.accepts_mask:
                y = layer.forward(x, training=training, mask=m, ctx=ctx)
            else:
                y = layer.forward(x, training=training, ctx=ctx)
            mask = layer.compute_mask(x, m)
            if step.multi_out:
                ys = list(y)
                if len(ys) != len(step.out_slots):
                    raise ValueError(f"{describe(layer)}: forward returned {len(ys)} outputs, expected "
                                     f"{len(step.out_slots)} (as compute_output_shape says)")
                mks = list(mask) if isinstance(mask, (list, tuple)) else [mask] + [None] * (len(ys) - 1)
                for s, yi, mi in zip(step.out_slots, ys, mks):
                    values[s], masks[s] = yi, mi
                ctx.outputs = ys  # shapes of the zero gradients of outputs nobody uses
            else:
                values[step.out_slots[0]], masks[step.out_slots[0]] = y, mask
        return [values[s] for s in self._output_slots]

    def _add_grad(self, grads, slot, g):
        """Add one use's gradient to a tensor's gradient (a buffer of ours when it has several uses)."""
        cur = grads[slot]
        if cur is None:
            if self._uses[slot] == 1:
                grads[slot] = g
                return
            buf = self._acc_bufs.get(slot)
            if buf is None or buf.shape != g.shape or buf.dtype != g.dtype:
                buf = self._acc_bufs[slot] = np.empty(g.shape, dtype=g.dtype)
            np.copyto(buf, g)
            grads[slot] = buf
        else:
            np.add(cur, g.reshape(cur.shape), out=cur)

    @staticmethod
    def _zero_gradient(ctx, i):
        """Zeros shaped like output i of a multi-output call (an output nobody uses)."""
        v = ctx.outputs[i]
        buf = ctx.buffer(("zero gradient", i), v.shape, v.dtype)
        buf.fill(0)
        return buf

    def _backward(self, dys, ctxs):
        grads = [None] * self._n_slots
        fused = {}
        for k, (s, dy) in enumerate(zip(self._output_slots, dys)):
            if self._fused[k] is not None:
                fused[self._producer[s].index] = dy  # dL/d(logits) for the output layer
            else:
                self._add_grad(grads, s, dy)
        outer = [ctx.accumulate for ctx in ctxs]
        done = set()  # layers that already wrote their weight gradients this step
        try:
            for step in reversed(self._steps):
                layer, ctx = step.layer, ctxs[step.index]
                dz = fused.get(step.index)
                if dz is None:
                    if step.multi_out:
                        dy = [grads[s] for s in step.out_slots]
                        if all(g is None for g in dy):
                            dy = None
                        else:
                            dy = [self._zero_gradient(ctx, i) if g is None else g for i, g in enumerate(dy)]
                    else:
                        dy = grads[step.out_slots[0]]
                    if dy is None:  # no gradient reaches this call: its weight gradients are zero
                        if id(layer) not in done and not outer[step.index]:
                            layer.zero_grads()
                        done.add(id(layer))
                        continue
                ctx.accumulate = outer[step.index] or id(layer) in done
                done.add(id(layer))
                dx = layer.backward_preactivation(dz, ctx=ctx) if dz is not None else layer.backward(dy, ctx=ctx)
                if dx is None:
                    continue
                if step.multi_in:
                    dx = list(dx)
                    if len(dx) != len(step.in_slots):
                        raise ValueError(f"{describe(layer)}: backward returned {len(dx)} input gradients, "
                                         f"expected {len(step.in_slots)} (one per input)")
                else:
                    dx = [dx]
                for s, g in zip(step.in_slots, dx):
                    if g is not None and not self._is_input_slot[s]:
                        self._add_grad(grads, s, g)
        finally:
            for ctx, flag in zip(ctxs, outer):
                ctx.accumulate = flag

    def _clean_output(self, k):
        """Output k may be fused with its loss (the loss gradient is taken on the producing
        layer's logits): its layer is called once here, has one output, and nothing else uses it."""
        s = self._output_slots[k]
        step = self._producer.get(s)
        return step is not None and not step.shared and not step.multi_out and self._uses[s] == 1

    def _setup_losses(self):
        super()._setup_losses()
        self._fused = [code if self._clean_output(k) else None for k, code in enumerate(self._fused)]

    # ------------------------------------------------------------ data
    def _count_message(self, received, what="input arrays"):
        expected = ", ".join(f"'{t.layer.name}' {_fmt_shape(t.shape)}" for t in self.inputs)
        return (f"Model '{self.name}': expected {len(self.inputs)} {what} (one per input: {expected}), "
                f"received {received}")

    def _keys(self, structure, tensors):
        kind, keys = structure
        names = {t.layer.name: i for i, t in enumerate(tensors)}
        if kind == "dict":
            names.update({k: i for i, k in enumerate(keys)})
        return names

    def _from_dict(self, data, structure, tensors, what):
        index = self._keys(structure, tensors)
        unknown = [k for k in data if k not in index]
        if unknown:
            raise ValueError(f"Model '{self.name}': {what} given for unknown names {unknown}; expected keys "
                             f"{[t.layer.name for t in tensors]}")
        out = [None] * len(tensors)
        for k, v in data.items():
            out[index[k]] = v
        missing = [t.layer.name for t, v in zip(tensors, out) if v is None]
        if missing:
            raise ValueError(f"Model '{self.name}': expected {what} for every name {[t.layer.name for t in tensors]}, "
                             f"missing {missing}")
        return out

    def _standardize_x(self, x, who):
        if isinstance(x, dict):
            x = self._from_dict(x, self._in_struct, self.inputs, "input arrays")
        if len(self.inputs) == 1:
            if isinstance(x, (list, tuple)) and not all(isinstance(a, np.ndarray) for a in x):
                x = [x]  # nested Python lists are the data of the one input
        elif not isinstance(x, (list, tuple)):
            raise ValueError(f"{who}: " + self._count_message(f"a single {type(x).__name__}"))
        xs = _as_list(x)
        if len(xs) != len(self.inputs):
            raise ValueError(f"{who}: " + self._count_message(len(xs)))
        return super()._standardize_x(xs, who)

    def _standardize_y(self, y, *args, **kwargs):
        if isinstance(y, dict):
            y = self._from_dict(y, self._out_struct, self.outputs, "target arrays")
        elif len(self.outputs) == 1 and isinstance(y, (list, tuple)) and not all(isinstance(a, np.ndarray) for a in y):
            y = [y]
        return super()._standardize_y(y, *args, **kwargs)

    def __call__(self, x, training=False):
        """On arrays: the outputs (copies). On symbolic tensors: inline this model's graph."""
        items = list(x.values()) if isinstance(x, dict) else _as_list(x)
        if items and any(isinstance(t, SymbolicTensor) for t in items):
            return self._inline(x)
        return super().__call__(x, training=training)

    def _inline(self, x):
        who = f"Model '{self.name}'"
        if isinstance(x, dict):
            x = self._from_dict(x, self._in_struct, self.inputs, "input tensors")
        tensors = _as_list(x)
        if len(tensors) != len(self.inputs):
            raise ValueError(self._count_message(len(tensors), "input tensors"))
        mapped = {}
        for inner, t in zip(self.inputs, tensors):
            if not isinstance(t, SymbolicTensor):
                raise TypeError(f"{who}: expected symbolic input tensors, received {type(t).__name__}")
            inner.layer.check_input(ShapeOnly(t.shape))
            mapped[id(inner)] = t
        for node in self._nodes:
            ins = [mapped[id(t)] for t in node.inputs]
            out = call_layer(node.layer, ins if node.multi_input else ins[0])
            for inner, new in zip(node.outputs, _as_list(out)):
                mapped[id(inner)] = new
        outs = [mapped[id(t)] for t in self.outputs]
        kind, keys = self._out_struct
        if kind == "dict":
            return dict(zip(keys, outs))
        return outs if kind == "list" else outs[0]

    # ------------------------------------------------------------ summary
    def _summary_rows(self):
        """(layer (type), output shape, params, connected-to lines) per layer, Keras style."""
        rows = []
        for layer in self._layers:
            steps = [step for step in self._steps if step.layer is layer]
            if not steps:  # an input layer
                shape, connected = _fmt_shape(layer.output_shape), ["-"]
            else:
                shapes = {tuple(tuple(t.shape) for t in step.node.outputs) for step in steps}
                if len(shapes) > 1:
                    shape = "multiple"
                else:
                    (outs,) = shapes
                    shape = _fmt_shape(outs[0]) if len(outs) == 1 else \
                        "[" + ", ".join(_fmt_shape(o) for o in outs) + "]"
                connected = [self._ref_text(t) for step in steps for t in step.node.inputs]
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, str(layer.count_params()), connected))
        return rows

    def _ref_text(self, t):
        layer_name, call, index = self._ref(t)
        return f"{layer_name}[{call}][{index}]"

    def _ref(self, t):
        return [t.layer.name, self._call_index[t.node.id], t.tensor_index]

    # ------------------------------------------------------------ config
    def get_config(self):
        """Layers (class and config) and the graph: each layer's calls as lists of
        [layer name, call index, tensor index] references to their inputs."""
        layers = []
        for layer in self._layers:
            entry = serialization.serialize_layer(layer)
            entry["name"] = layer.name
            entry["inbound_nodes"] = [[self._ref(t) for t in step.node.inputs]
                                      for step in self._steps if step.layer is layer]
            layers.append(entry)

        def structure(tensors, struct):
            kind, keys = struct
            refs = [self._ref(t) for t in tensors]
            if kind == "dict":
                return dict(zip(keys, refs))
            return refs if kind == "list" else refs[0]

        return {"name": self.name, "layers": layers,
                "input_layers": structure(self.inputs, self._in_struct),
                "output_layers": structure(self.outputs, self._out_struct)}

    @classmethod
    def from_config(cls, config):
        """Rebuild the graph of ``get_config()``: same layers, names, calls and order (weights
        freshly initialized; copy them with set_weights)."""
        who = f"Model.from_config ('{config.get('name')}')"
        tensors, pending = {}, []
        for entry in config["layers"]:
            layer = serialization.deserialize_layer(entry)
            if isinstance(layer, InputLayer):
                tensors[(layer.name, 0, 0)] = _input_tensor(layer)
            else:
                pending.append([layer, [list(refs) for refs in entry.get("inbound_nodes", [])], 0])
        while pending:
            progress = False
            for item in pending:
                layer, calls, j = item
                while j < len(calls) and all(tuple(r) in tensors for r in calls[j]):
                    ins = [tensors[tuple(r)] for r in calls[j]]
                    out = call_layer(layer, ins if getattr(layer, "multi_input", False) else ins[0])
                    for i, t in enumerate(_as_list(out)):
                        tensors[(layer.name, j, i)] = t
                    j += 1
                    progress = True
                item[2] = j
            pending = [item for item in pending if item[2] < len(item[1])]
            if pending and not progress:
                missing = sorted({tuple(r) for layer, calls, j in pending for r in calls[j] if tuple(r) not in tensors})
                raise ValueError(f"{who}: cannot connect layers {[item[0].name for item in pending]}: their inputs "
                                 f"{missing} are produced by no layer of the config")

        def resolve(spec):
            if isinstance(spec, dict):
                return {k: resolve(v) for k, v in spec.items()}
            if spec and isinstance(spec[0], str):
                key = tuple(spec)
                if key not in tensors:
                    raise ValueError(f"{who}: the config refers to tensor {list(key)}, which no layer produces")
                return tensors[key]
            return [resolve(s) for s in spec]

        return cls(resolve(config["input_layers"]), resolve(config["output_layers"]), name=config.get("name"))

    def __repr__(self):
        return (f"<Model name={self.name!r}, inputs={[_fmt_shape(s) for s in self.input_shapes]}, "
                f"outputs={[_fmt_shape(s) for s in self.output_shapes]}>")


Functional = Model
registry.add("model", "Model", Model)
registry.add("model", "Functional", Model)
