"""Layer wrappers: Bidirectional."""
import numpy as np

from .._validation import as_float_array, describe
from ..saving import serialization
from .base import Layer
from .context import Parameter

_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Runs a recurrent layer over the sequence in both directions and merges the two outputs.

    ``Bidirectional(LSTM(64, return_sequences=True))``: a forward copy of the layer reads steps
    0..T-1, a backward copy (``go_backwards`` flipped) reads T-1..0; the backward copy's output
    sequence is reversed back into time order before merging, as Keras does.

    Args:
        layer: a SimpleRNN, LSTM or GRU; the wrapper makes its two copies from its config (so the
            weights of ``layer`` itself are not used), named ``forward_<name>`` and ``backward_<name>``.
        merge_mode: 'concat' (default; forward features first), 'sum', 'mul', 'ave', or None (the
            two outputs are returned as a list).
        backward_layer: the layer to use as the backward direction instead of a copy; it must have
            the opposite ``go_backwards`` and the same ``return_sequences`` and ``return_state``.

    Shape: (batch, time, in) -> (batch, [time,] 2 * units) for 'concat', (batch, [time,] units)
    otherwise. With ``return_state`` the outputs are [merged, *forward states, *backward states]
    (for merge_mode None: [forward output, backward output, *states]).
    Weights: the forward layer's, then the backward layer's.

    Masks reach both directions. With ``return_sequences`` a masked step's output is zeros in both
    directions (Keras forces zero_output_for_mask there: "the previous output" of a reversed
    sequence would come from the future). ``forward(x, initial_state=[...])`` takes the forward
    layer's states followed by the backward layer's.

    Each direction's call keeps its state in a child of the wrapper's call context:
    ``ctx.child("forward_layer")`` and ``ctx.child("backward_layer")`` (after a direct call, those
    of ``bi.context(None)``: e.g. ``.child("forward_layer").initial_state_grads``).
    """

    accepts_mask = True

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        if not isinstance(layer, Layer) or not hasattr(layer, "go_backwards"):
            raise ValueError(f"Bidirectional: expected a recurrent layer (SimpleRNN, LSTM, GRU) to wrap, "
                             f"received {layer!r}")
        kwargs.setdefault("dtype", layer.dtype)
        trainable = kwargs.pop("trainable", layer.trainable)
        super().__init__(**kwargs)
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"{describe(self)}: expected merge_mode in {list(_MERGE_MODES)}, "
                             f"received merge_mode={merge_mode!r}")
        self.merge_mode = merge_mode
        self.layer = layer
        self.forward_layer = _copy_layer(layer, "forward_" + _strip(layer.name))
        if backward_layer is None:
            self.backward_layer = _copy_layer(layer, "backward_" + _strip(layer.name),
                                              go_backwards=not layer.go_backwards)
            self._custom_backward = False
        else:
            for attr in ("return_sequences", "return_state"):
                if getattr(backward_layer, attr) != getattr(layer, attr):
                    raise ValueError(f"{describe(self)}: expected backward_layer.{attr} == layer.{attr} "
                                     f"({getattr(layer, attr)}), received {getattr(backward_layer, attr)}")
            if backward_layer.go_backwards == layer.go_backwards:
                raise ValueError(f"{describe(self)}: expected backward_layer.go_backwards to be the opposite "
                                 f"of layer.go_backwards ({layer.go_backwards}), received "
                                 f"{backward_layer.go_backwards}")
            self.backward_layer = backward_layer
            self._custom_backward = True
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        for sub in (self.forward_layer, self.backward_layer):
            sub.zero_output_for_mask = self.return_sequences
        self.trainable = trainable
        self._initial_weights = weights

    # trainable set on the wrapper acts on both directions (the call flags, accumulate and
    # need_input_grad, reach them through the child contexts)
    @property
    def trainable(self):
        return self.forward_layer.trainable

    @trainable.setter
    def trainable(self, value):
        if hasattr(self, "backward_layer"):   # Layer.__init__ sets it before the copies exist
            self.forward_layer.trainable = self.backward_layer.trainable = bool(value)

    # ----------------------------------------------------------------- shapes
    @property
    def _n_states(self):
        return self.forward_layer._n_states

    def validate_input_shape(self, input_shape):
        self.forward_layer.validate_input_shape(input_shape)

    def check_input(self, x):
        self.forward_layer.check_input(x)

    def build(self, input_shape):
        for sub in (self.forward_layer, self.backward_layer):
            if not sub.built:
                sub.dtype = self.dtype
            elif sub.dtype != self.dtype:
                raise ValueError(f"{describe(self)}: the backward layer '{sub.name}' is built in {sub.dtype}, "
                                 f"the wrapper runs in {self.dtype}")
            sub.ensure_built(input_shape)
        # the wrapper's own Parameters, named "<direction layer>/<weight>", over the same arrays
        self._params = []
        for sub in (self.forward_layer, self.backward_layer):
            for p in sub._params:
                own = Parameter(f"{sub.name}/{p.name}", p.value, p.regularizer, p.trainable)
                own.grad = p.grad
                self._params.append(own)
        if self._initial_weights is not None:
            self.built = True
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def compute_output_shape(self, input_shape):
        f = self.forward_layer.compute_output_shape(input_shape)
        b = self.backward_layer.compute_output_shape(input_shape)
        out_f, states_f = (f[0], f[1:]) if self.return_state else (f, [])
        out_b, states_b = (b[0], b[1:]) if self.return_state else (b, [])
        if self.merge_mode is None:
            outs = [tuple(out_f), tuple(out_b)]
        elif self.merge_mode == "concat":
            outs = [tuple(out_f[:-1]) + (out_f[-1] + out_b[-1],)]
        else:
            outs = [tuple(out_f)]
        outs += [tuple(s) for s in list(states_f) + list(states_b)]
        return outs if len(outs) > 1 else outs[0]

    def compute_mask(self, x, mask=None):
        out = mask if (mask is not None and self.return_sequences) else None
        n_out = 2 if self.merge_mode is None else 1
        n_states = 2 * self._n_states if self.return_state else 0
        if n_out + n_states == 1:
            return out
        return [out] * n_out + [None] * n_states

    # ----------------------------------------------------------------- running
    def _sync(self):
        """Hand the sublayers this wrapper's weight and gradient arrays (a model may have rebound
        them to views of its flat buffers)."""
        for own, sub in zip(self._params, self.forward_layer._params + self.backward_layer._params):
            sub.value, sub.grad = own.value, own.grad

    def __call__(self, x, training=False, mask=None, initial_state=None):
        if getattr(x, "_cydnn_symbolic_call", None) is not None:
            return super().__call__(x, training=training)
        x = as_float_array(x, self.dtype, describe(self))
        if x.ndim != 3:
            raise ValueError(f"{describe(self)}: expected input of rank 3 (batch, time, features), "
                             f"received shape {x.shape}")
        if not self.built:
            self.ensure_built(x.shape)
        self.check_input(x)
        y = self.forward(x, training=training, mask=mask, initial_state=initial_state)
        return [a.copy() for a in y] if isinstance(y, list) else y.copy()

    def forward(self, x, training=False, mask=None, initial_state=None, ctx=None):
        ctx = self.context(ctx)
        self._sync()
        init_f = init_b = None
        if initial_state is not None:
            states = list(initial_state)
            n = self._n_states
            if len(states) != 2 * n:
                raise ValueError(f"{describe(self)}: expected initial_state as {2 * n} arrays (the forward "
                                 f"layer's {n}, then the backward layer's {n}), received {len(states)}")
            init_f, init_b = states[:n], states[n:]
        yf = self.forward_layer.forward(x, training=training, mask=mask, initial_state=init_f,
                                        ctx=ctx.child("forward_layer"))
        yb = self.backward_layer.forward(x, training=training, mask=mask, initial_state=init_b,
                                         ctx=ctx.child("backward_layer"))
        (of, sf), (ob, sb) = self._split(yf), self._split(yb)
        if self.return_sequences:   # the backward copy's outputs back in time order
            ob = _reversed_in_time(ob, ctx.buffer("ob", ob.shape, self.dtype))
        ctx.of, ctx.ob = of, ob
        merged = self._merge(ctx, of, ob)
        outs = (list(merged) if self.merge_mode is None else [merged]) + sf + sb
        return outs if len(outs) > 1 else outs[0]

    def _split(self, y):
        return (y[0], list(y[1:])) if self.return_state else (y, [])

    def _merge(self, ctx, of, ob):
        mode = self.merge_mode
        if mode is None:
            return [of, ob]
        if mode == "concat":
            u = of.shape[-1]
            y = ctx.buffer("y", of.shape[:-1] + (u + ob.shape[-1],), self.dtype)
            y[..., :u] = of
            y[..., u:] = ob
            return y
        y = ctx.buffer("y", of.shape, self.dtype)
        if mode == "sum":
            np.add(of, ob, out=y)
        elif mode == "mul":
            np.multiply(of, ob, out=y)
        else:  # ave
            np.add(of, ob, out=y)
            y *= 0.5
        return y

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        self._sync()
        n_out = 2 if self.merge_mode is None else 1
        dys = list(dy) if isinstance(dy, (list, tuple)) else [dy]
        n_states = self._n_states if self.return_state else 0
        expected = n_out + 2 * n_states
        if len(dys) == 1 and expected > 1 and self.merge_mode is not None:
            dys = dys + [None] * (expected - 1)
        if len(dys) != expected:
            raise ValueError(f"{describe(self)}: expected {expected} output gradients, received {len(dys)}")
        douts, dsf, dsb = dys[:n_out], dys[n_out:n_out + n_states], dys[n_out + n_states:]
        dof, dob = self._unmerge(ctx, douts)
        if dof is not None and not dof.flags.c_contiguous:   # a slice of the concatenated gradient
            dof = _copy(dof, ctx.buffer("dof_c", dof.shape, self.dtype))
        if dob is not None:
            if self.return_sequences:   # back into the backward copy's step order
                dob = _reversed_in_time(dob, ctx.buffer("dob_steps", dob.shape, self.dtype))
            elif not dob.flags.c_contiguous:
                dob = _copy(dob, ctx.buffer("dob_c", dob.shape, self.dtype))
        gf = [dof] + dsf if self.return_state else dof
        gb = [dob] + dsb if self.return_state else dob
        dxf = self.forward_layer.backward(gf, ctx=ctx.child("forward_layer"))
        dxb = self.backward_layer.backward(gb, ctx=ctx.child("backward_layer"))
        if dxf is None:
            return None
        dx = ctx.buffer("dx", dxf.shape, self.dtype)
        np.add(dxf, dxb, out=dx)
        return dx

    def _unmerge(self, ctx, douts):
        mode = self.merge_mode
        if mode is None:
            return tuple(None if d is None else np.asarray(d) for d in douts)
        dy = douts[0]
        if dy is None:
            return None, None
        dy = np.asarray(dy)
        if mode == "concat":
            u = ctx.of.shape[-1]
            return dy[..., :u], dy[..., u:]
        if mode == "sum":
            return dy, dy
        if mode == "mul":   # d(f * b) = dy * b, dy * f
            return (np.multiply(dy, ctx.ob, out=ctx.buffer("dof", dy.shape, self.dtype)),
                    np.multiply(dy, ctx.of, out=ctx.buffer("dob", dy.shape, self.dtype)))
        half = np.multiply(dy, 0.5, out=ctx.buffer("dof", dy.shape, self.dtype))   # ave
        return half, half

    # ----------------------------------------------------------------- config
    def get_config(self):
        config = {**super().get_config(), "layer": serialization.serialize_layer(self.layer),
                  "merge_mode": self.merge_mode}
        if self._custom_backward:
            config["backward_layer"] = serialization.serialize_layer(self.backward_layer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = serialization.deserialize_layer(config["layer"])
        if config.get("backward_layer") is not None:
            config["backward_layer"] = serialization.deserialize_layer(config["backward_layer"])
        return cls(**config)


def _copy(y, out):
    np.copyto(out, y)
    return out


def _reversed_in_time(y, out):
    """out := y with the time axis (1) reversed; returns out."""
    np.copyto(out, y[:, ::-1])
    return out


def _strip(name):
    for prefix in ("forward_", "backward_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _copy_layer(layer, name, **changes):
    config = {**layer.get_config(), "name": name, **changes}
    config.pop("input_shape", None)
    return type(layer).from_config(config)
