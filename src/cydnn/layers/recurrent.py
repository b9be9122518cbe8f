"""Recurrent layers: SimpleRNN, LSTM, GRU (Keras names, shapes, gate orders and defaults).

Input (batch, time, features). The whole sequence runs in one compiled call (csrc/recurrent.pyx,
one driver for every cell): the input projection of all steps is one GEMM, then each thread
carries its own rows of the batch through every step (one small GEMM plus a fused gate kernel per
step); backpropagation through time mirrors it, and the weight gradients are one GEMM each over
all steps. A layer names its cell (``_cell``), gathers its options into a ``_k.Options`` and
hands the kernels a ``_k.Workspace``, which sizes every scratch array and obtains it through the
call's ``ctx.buffer(key, shape, dtype)``.

Outputs and states
    ``return_sequences``  the output is (batch, time, units), else the last output (batch, units).
    ``return_state``      the layer returns ``[output, *final_states]`` (LSTM: h and c; SimpleRNN
                          and GRU: h), each state (batch, units). As a multi-output layer, its
                          ``compute_output_shape`` is a list and ``backward`` takes the list of
                          output gradients ([d_output, d_h(, d_c)]; None or zeros where nothing
                          flows) -- or a single array, the output's gradient. In the functional
                          API ``out, h, c = LSTM(8, return_state=True)(x)`` gives three tensors and
                          ``out`` flows on like any output; a Sequential model passes a layer's
                          single output on, so there keep ``return_state=False``. The final
                          states of a direct call (``layer(x)``, ``layer.forward(x)``) are also
                          in ``layer.states``; a model's calls keep theirs in its contexts.
    ``go_backwards``      the input is processed from the last step to the first, and the output
                          sequence is returned in that (reversed) order, as Keras does.

Initial states: ``forward(x, initial_state=[h0(, c0)])`` or ``layer(x, initial_state=...)``, each
(batch, units); a SimpleRNN/GRU also takes a bare array. Without it the states start at zero.
After a direct ``backward``, ``layer.initial_state_grads`` holds dL/d(initial states) (None without
them); a call with a context keeps them in ``ctx.initial_state_grads``.

Masking: ``forward(x, mask=m)`` with a boolean (batch, time) mask (True = a real step), as
Embedding(mask_zero=True) and Masking produce. At a masked step a row keeps its state, and its
output is the previous output (zeros before its first real step), as Keras does; the backward
pass passes gradients through masked steps unchanged. ``compute_mask`` gives the mask on to the
next layer when ``return_sequences`` (else None).

``dropout`` (training only) drops input features with one mask per sequence (batch, features),
shared by all steps, as Keras does; ``recurrent_dropout`` is not implemented (must be 0).
"""
import numpy as np

from .. import activations, backend, initializers, regularizers, threads
from .._kernels import recurrent as _k
from .._validation import as_float_array, check_fraction, check_positive_int, describe
from .base import Layer


class _RNN(Layer):
    """What SimpleRNN, LSTM and GRU share: arguments, checks, buffers, outputs, states, masks."""

    accepts_mask = True
    _n_gates = 1
    _n_states = 1
    _state_names = ("h",)

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, dropout=0.0, recurrent_dropout=0.0,
                 seed=None, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, zero_output_for_mask=False, **kwargs):
        super().__init__(**kwargs)
        who = describe(self)
        self.units = check_positive_int(units, who, "units")
        self.activation = self._elementwise(activation, "activation")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.dropout = check_fraction(dropout, who, "dropout")
        if check_fraction(recurrent_dropout, who, "recurrent_dropout") != 0:
            raise ValueError(f"{who}: recurrent_dropout is not supported (only dropout on the inputs), "
                             f"received recurrent_dropout={recurrent_dropout!r}")
        self.recurrent_dropout = 0.0
        if stateful:
            raise ValueError(f"{who}: stateful=True is not supported; pass initial_state= to carry states "
                             f"between calls, received stateful={stateful!r}")
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.unroll = bool(unroll)   # accepted for Keras compatibility: the loop is compiled either way
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self._fast_math = True   # float32 default activations: vectorised sigmoid/tanh kernels

    def _elementwise(self, identifier, what):
        act = activations.get(identifier)
        if act.code == activations.SOFTMAX_CODE:
            raise ValueError(f"{describe(self)}: expected an elementwise {what}, received {what}='softmax'")
        return act

    # ----------------------------------------------------------------- shapes
    def validate_input_shape(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"{describe(self)}: expected input of rank 3 (batch, time, features) with a known "
                             f"number of features, received shape {tuple(input_shape)}")

    def check_input(self, x):
        shape = tuple(x.shape)
        if len(shape) != 3:
            raise ValueError(f"{describe(self)}: expected input of rank 3 (batch, time, features), "
                             f"received shape {shape}")
        if shape[-1] != self.input_shape[-1]:
            raise ValueError(f"{describe(self)}: expected input with {self.input_shape[-1]} features "
                             f"(batch, time, {self.input_shape[-1]}), received shape {shape}")
        if shape[1] == 0:
            raise ValueError(f"{describe(self)}: expected at least one time step, received shape {shape}")

    def compute_output_shape(self, input_shape):
        out = (input_shape[0], input_shape[1], self.units) if self.return_sequences else (input_shape[0], self.units)
        if self.return_state:
            return [out] + [(input_shape[0], self.units)] * self._n_states
        return out

    def compute_mask(self, x, mask=None):
        out = mask if (mask is not None and self.return_sequences) else None
        if self.return_state:
            return [out] + [None] * self._n_states
        return out

    # ----------------------------------------------------------------- weights
    def build(self, input_shape):
        width = self._n_gates * self.units
        self.add_weight("kernel", (input_shape[-1], width), self.kernel_initializer, self.kernel_regularizer)
        self.add_weight("recurrent_kernel", (self.units, width), self.recurrent_initializer,
                        self.recurrent_regularizer)
        if self.use_bias:
            self.add_weight("bias", self._bias_shape(), self.bias_initializer, self.bias_regularizer)

    def _bias_shape(self):
        return (self._n_gates * self.units,)

    @property
    def kernel(self):
        return self._params[0].value

    @property
    def recurrent_kernel(self):
        return self._params[1].value

    @property
    def bias(self):
        return self._params[2].value if self.use_bias else None

    # What the last direct call (the eager context) computed; a model's calls keep theirs in ctx.
    @property
    def states(self):
        """The final states [h(, c)] of the last direct forward (None before one)."""
        return getattr(self.context(None), "states", None)

    @property
    def initial_state_grads(self):
        """dL/d(initial states) of the last direct backward (None without initial states)."""
        return getattr(self.context(None), "initial_state_grads", None)

    # ----------------------------------------------------------------- running
    def __call__(self, x, training=False, mask=None, initial_state=None):
        """Forward on concrete data; returns new arrays (a list [output, *states] with return_state)."""
        if getattr(x, "_cydnn_symbolic_call", None) is not None:
            if mask is not None or initial_state is not None:
                raise ValueError(f"{describe(self)}: mask= and initial_state= take arrays; in the functional "
                                 f"API masks come from Embedding(mask_zero=True) or Masking")
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

    def _check_mask(self, mask, batch, steps):
        if mask is None:
            return None
        m = np.asarray(mask)
        if m.shape != (batch, steps):
            raise ValueError(f"{describe(self)}: expected mask of shape (batch, time) = ({batch}, {steps}), "
                             f"received shape {m.shape}")
        if m.dtype != np.bool_:
            if m.dtype.kind not in "biu":
                raise TypeError(f"{describe(self)}: expected a boolean mask, received dtype {m.dtype}")
            m = m != 0
        m = np.ascontiguousarray(m)
        return m.view(np.uint8)

    def _check_initial_state(self, initial_state, batch):
        if initial_state is None:
            return None
        states = [initial_state] if isinstance(initial_state, np.ndarray) else list(initial_state)
        names = ", ".join(self._state_names)
        if len(states) != self._n_states:
            raise ValueError(f"{describe(self)}: expected initial_state as a list of {self._n_states} array(s) "
                             f"[{names}], each of shape (batch, units) = ({batch}, {self.units}), "
                             f"received {len(states)} array(s)")
        out = []
        for name, s in zip(self._state_names, states):
            s = as_float_array(s, self.dtype, describe(self), f"initial state {name}")
            if s.shape != (batch, self.units):
                raise ValueError(f"{describe(self)}: expected initial state {name} of shape (batch, units) = "
                                 f"({batch}, {self.units}), received shape {s.shape}")
            out.append(s)
        return out

    def _dropout_keep(self, ctx, batch, nin, training):
        if not (training and self.dropout > 0):
            return None
        keep = ctx.buffer("keep", (batch, nin), self.dtype)
        (self._rng or backend.rng()).random(out=keep, dtype=self.dtype)
        np.greater_equal(keep, self.dropout, out=keep, casting="unsafe")
        keep *= 1.0 / (1.0 - self.dropout)
        return keep

    def forward(self, x, training=False, mask=None, initial_state=None, ctx=None):
        """The layer's output (a list [output, *states] with return_state); see the module doc."""
        ctx = self.context(ctx)
        x = np.ascontiguousarray(x)
        batch, steps, nin = x.shape
        u = self.units
        ctx.mask = self._check_mask(mask, batch, steps)
        init = self._check_initial_state(initial_state, batch)
        ctx.has_initial_state = init is not None
        ctx.keep = self._dropout_keep(ctx, batch, nin, training)
        ctx.x_shape = x.shape
        ws = _k.Workspace(self._cell(), ctx.buffer, batch, steps, nin, u, self.dtype, self.return_sequences)
        ws.start(ctx.mask, ctx.keep, init)
        _k.rnn_forward(ws, x, self._weight_arrays(), self._options(ctx))
        ctx.ws = ws
        ctx.states = ws.states
        out = ws.output
        return [out] + list(ctx.states) if self.return_state else out

    def backward(self, dy, ctx=None):
        """dL/dx from dL/d(outputs); weight gradients into grads (added with ctx.accumulate)."""
        ctx = self.context(ctx)
        batch, steps = ctx.x_shape[0], ctx.x_shape[1]
        u = self.units
        if isinstance(dy, (list, tuple)):
            dys = list(dy)
            names = ["output"] + (list(self._state_names) if self.return_state else [])
            if len(dys) != len(names):
                raise ValueError(f"{describe(self)}: expected {len(names)} output gradient(s) "
                                 f"[{', '.join(names)}], received {len(dys)}")
        else:
            dys = [dy]
        dys = dys + [None] * (1 + self._n_states - len(dys))
        dout = self._grad_array(dys[0], (batch, steps, u) if self.return_sequences else (batch, u), "output")
        dstates = [self._grad_array(d, (batch, u), f"state {n}") for d, n in zip(dys[1:], self._state_names)]
        train = self.trainable
        grads = [p.grad if train else None for p in self._params]
        if not self.use_bias:
            grads = grads + [None]
        dx = _k.rnn_backward(ctx.ws, self._weight_arrays(), dout if self.return_sequences else None,
                             None if self.return_sequences else dout, dstates, tuple(grads[:3]),
                             self._options(ctx), ctx.need_input_grad)
        state_grads = ctx.ws.state_grads
        ctx.initial_state_grads = [g.copy() for g in state_grads] if ctx.has_initial_state else None
        return dx

    def _cell(self):
        """The kernels' name of this layer's cell (_k.CELLS)."""
        return self._cell_name

    def _weight_arrays(self):
        return (self.kernel, self.recurrent_kernel, self.bias)

    def _options(self, ctx):
        """The kernels' options of this layer's configuration (and of this call: accumulate)."""
        ract = getattr(self, "recurrent_activation", None)
        return _k.Options(self.activation.code, self.activation.alpha,
                          ract.code if ract is not None else activations.get("sigmoid").code,
                          ract.alpha if ract is not None else 0.0, self.go_backwards,
                          self.zero_output_for_mask, self._fast_math, ctx.accumulate,
                          threads.get_num_threads())

    def _grad_array(self, d, shape, what):
        if d is None:
            return None
        d = np.asarray(d)
        if d.shape != shape:
            raise ValueError(f"{describe(self)}: expected the gradient of {what} of shape {shape}, "
                             f"received shape {d.shape}")
        return np.ascontiguousarray(d, dtype=self.dtype)

    # ----------------------------------------------------------------- config
    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout, "seed": self.seed,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards, "stateful": False, "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask}


class SimpleRNN(_RNN):
    """Fully connected recurrence: ``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.

    Args: units, activation ('tanh'), use_bias, kernel_initializer ('glorot_uniform'),
    recurrent_initializer ('orthogonal'), bias_initializer ('zeros'), the three regularizers,
    dropout, seed, return_sequences, return_state, go_backwards (see the module doc).

    Shape: (batch, time, in) -> (batch, time, units) or (batch, units).
    Weights: kernel (in, units), recurrent_kernel (units, units), bias (units,).
    """

    _cell_name = "simple_rnn"


class LSTM(_RNN):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), Keras semantics and gate order i, f, c, o:

        i, f, o = recurrent_activation(x @ W_{i,f,o} + h @ U_{i,f,o} + b_{i,f,o})
        c~ = activation(x @ W_c + h @ U_c + b_c);  c := f * c + i * c~;  h := o * activation(c)

    Args: units, activation ('tanh'), recurrent_activation ('sigmoid'), use_bias,
    kernel_initializer ('glorot_uniform'), recurrent_initializer ('orthogonal'),
    bias_initializer ('zeros'), unit_forget_bias (True: the forget gate's bias starts at 1),
    the three regularizers, dropout, seed, return_sequences, return_state, go_backwards.

    Shape: (batch, time, in) -> (batch, time, units) or (batch, units); states h and c (batch, units).
    Weights: kernel (in, 4 units), recurrent_kernel (units, 4 units), bias (4 units,).
    """

    _n_gates = 4
    _n_states = 2
    _state_names = ("h", "c")
    _cell_name = "lstm"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 unit_forget_bias=True, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)
        self.recurrent_activation = self._elementwise(recurrent_activation, "recurrent_activation")
        self.unit_forget_bias = bool(unit_forget_bias)

    def build(self, input_shape):
        super().build(input_shape)
        if self.use_bias and self.unit_forget_bias:
            u = self.units
            self._params[2].value[u:2 * u] = 1.0   # Keras: bias_initializer for i, c, o; ones for f

    def get_config(self):
        return {**super().get_config(),
                "recurrent_activation": activations.serialize(self.recurrent_activation),
                "unit_forget_bias": self.unit_forget_bias}


class GRU(_RNN):
    """Gated recurrent unit (Cho et al. 2014), Keras semantics, gate order z, r, h. With
    ``reset_after=True`` (the default, as in Keras 2.3+ and PyTorch's nn.GRU):

        z, r = recurrent_activation(x @ W_{z,r} + b_in{z,r} + h @ U_{z,r} + b_rec{z,r})
        h~ = activation(x @ W_h + b_in{h} + r * (h @ U_h + b_rec{h}));  h := z * h + (1 - z) * h~

    (PyTorch computes the same function with gates ordered r, z, n.) With ``reset_after=False``
    (the original formulation) the reset gate acts before the product and there is one bias:

        z, r = recurrent_activation(x @ W_{z,r} + b_{z,r} + h @ U_{z,r})
        h~ = activation(x @ W_h + b_h + (r * h) @ U_h);  h := z * h + (1 - z) * h~

    Args: units, activation ('tanh'), recurrent_activation ('sigmoid'), use_bias,
    kernel_initializer, recurrent_initializer, bias_initializer, the three regularizers, dropout,
    seed, return_sequences, return_state, go_backwards, reset_after.

    Shape: (batch, time, in) -> (batch, time, units) or (batch, units).
    Weights: kernel (in, 3 units), recurrent_kernel (units, 3 units), bias (2, 3 units): the input
    bias then the recurrent bias (reset_after=False: bias (3 units,)).
    """

    _n_gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 reset_after=True, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)
        self.recurrent_activation = self._elementwise(recurrent_activation, "recurrent_activation")
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _cell(self):
        return "gru" if self.reset_after else "gru_reset_before"

    def get_config(self):
        return {**super().get_config(),
                "recurrent_activation": activations.serialize(self.recurrent_activation),
                "reset_after": self.reset_after}
