"""Attention layers: Attention (Luong, dot-product), AdditiveAttention (Bahdanau), and
AttentionPooling (a learned query attending over a sequence, for Sequential models).

Attention and AdditiveAttention follow Keras: they are called on a list ``[query, value]`` or
``[query, value, key]`` (key defaults to value) of (batch, steps, dim) arrays and return
(batch, Tq, value_dim):

    scores = score(query, key)                       (batch, Tq, Tv)
    weights = softmax(scores - 1e9 * masked)         over the value steps
    output = weights @ value                         (batch, Tq, value_dim)

``backward(dy, ctx=None)`` returns the list of input gradients in the same order as the inputs
(the multi-input protocol of layers/merge.py, so they work in functional models). Masks
(``mask=[query_mask, value_mask]``, each (batch, steps) booleans or None) hide value steps from
the softmax and zero the output at masked query steps. Scores, softmax and the weighted sum run
in one compiled kernel per batch element (csrc/attention.pyx).
"""
import numpy as np

from .. import activations, backend, initializers, regularizers, threads
from .._kernels import attention as _attention
from .._kernels import dense as _dense
from .._validation import as_float_array, check_fraction, check_shape, describe
from .base import Layer

_DOT, _ADDITIVE = _attention.DOT, _attention.ADDITIVE  # score modes, defined once in attention.pyx


def _fmt(shape):
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ")"


def _mask_u8(layer, ctx, key, m, shape, what, axes):
    """The boolean mask m (None: no mask) as uint8 in ctx's buffer ``key``, after checking that
    it has ``shape``; ``what`` and ``axes`` name the mask and its axes in the error."""
    if m is None:
        return None
    m = np.asarray(m)
    if m.shape != shape:
        raise ValueError(f"{describe(layer)}: expected {what} of shape {shape} {axes}, received shape {m.shape}")
    buf = ctx.buffer(key, shape, np.uint8)
    np.not_equal(m, 0, out=buf, casting="unsafe")
    return buf


class _BaseDenseAttention(Layer):
    """Shared machinery of Attention and AdditiveAttention (Keras' BaseDenseAttention).
    They follow the multi-input layer protocol of layers/merge.py."""

    multi_input = True
    accepts_mask = True
    supports_masking = True

    def __init__(self, dropout=0.0, seed=None, use_causal_mask=False, return_attention_scores=False, **kwargs):
        super().__init__(**kwargs)
        self.dropout = check_fraction(dropout, describe(self), "dropout")
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self.use_causal_mask = bool(use_causal_mask)
        self.return_attention_scores = bool(return_attention_scores)

    # ------------------------------------------------------------------ inputs and shapes
    def _split_shapes(self, shapes):
        """[query, value] or [query, value, key] shapes, checked: (q, v, k, key_given)."""
        if not isinstance(shapes, (list, tuple)) or len(shapes) not in (2, 3) or \
                not all(isinstance(s, (list, tuple)) for s in shapes):
            got = f"{len(shapes)} inputs" if isinstance(shapes, (list, tuple)) else f"a single input {_fmt(shapes)}"
            raise ValueError(f"{describe(self)}: expected a list of inputs [query, value] or [query, value, key], "
                             f"received {got}")
        q, v = tuple(shapes[0]), tuple(shapes[1])
        k = tuple(shapes[2]) if len(shapes) == 3 else v
        for what, s in (("query", q), ("value", v), ("key", k)):
            if len(s) != 3:
                raise ValueError(f"{describe(self)}: expected {what} of rank 3 (batch, steps, dim), "
                                 f"received shape {_fmt(s)}")
        if q[-1] is not None and k[-1] is not None and q[-1] != k[-1]:
            raise ValueError(f"{describe(self)}: expected query and key with the same last dimension, received "
                             f"query shape {_fmt(q)} and {'key' if len(shapes) == 3 else 'value (the key)'} "
                             f"shape {_fmt(k)}")
        if v[1] is not None and k[1] is not None and v[1] != k[1]:
            raise ValueError(f"{describe(self)}: expected value and key with the same number of steps, "
                             f"received value shape {_fmt(v)} and key shape {_fmt(k)}")
        batches = {s[0] for s in (q, v, k) if s[0] is not None}
        if len(batches) > 1:
            raise ValueError(f"{describe(self)}: expected query, value and key with the same batch size, received "
                             f"shapes {_fmt(q)}, {_fmt(v)}, {_fmt(k)}")
        return q, v, k, len(shapes) == 3

    def validate_input_shape(self, input_shape):
        self._split_shapes(input_shape)

    def ensure_built(self, input_shape):
        """Build once for a list of input shapes (batch axes included); return the output shape."""
        shapes = [(None,) + tuple(s[1:]) for s in input_shape] if isinstance(input_shape, (list, tuple)) and \
            all(isinstance(s, (list, tuple)) for s in input_shape) else input_shape
        if not self.built:
            q, v, k, _ = self._split_shapes(shapes)
            if q[-1] is None or v[-1] is None:
                raise ValueError(f"{describe(self)}: expected query and value with known last dimensions, "
                                 f"received {_fmt(q)} and {_fmt(v)}")
            self.build(shapes)
            self.input_shape = shapes
            self.output_shape = self.compute_output_shape(shapes)
            self.built = True
        return self.output_shape

    def compute_output_shape(self, input_shape):
        q, v, k, _ = self._split_shapes(input_shape)
        out = (q[0], q[1], v[2])
        if self.return_attention_scores:
            return [out, (q[0], q[1], v[1])]
        return out

    def check_input(self, xs):
        q, v, k, key_given = self._split_shapes([tuple(x.shape) for x in xs])
        built = self.input_shape
        if key_given != (len(built) == 3):
            raise ValueError(f"{describe(self)}: built for {len(built)} inputs, received {len(xs)}")
        for what, s, b in zip(("query", "value", "key"), (q, v, k), list(built) + [built[1]]):
            if s[-1] != b[-1]:
                raise ValueError(f"{describe(self)}: expected {what} with last dimension {b[-1]}, "
                                 f"received shape {_fmt(s)}")

    # ------------------------------------------------------------------ running
    def __call__(self, inputs, training=False, mask=None, return_attention_scores=None, use_causal_mask=None):
        """Forward on concrete arrays ``[query, value(, key)]``; returns new arrays. The keyword
        arguments override the layer's defaults for this call, as in Keras."""
        if isinstance(inputs, (list, tuple)):
            hook = next((getattr(x, "_cydnn_symbolic_call", None) for x in inputs
                         if getattr(x, "_cydnn_symbolic_call", None) is not None), None)
            if hook is not None:  # functional API: the keywords become the layer's setting
                if return_attention_scores is not None:
                    self.return_attention_scores = bool(return_attention_scores)
                if use_causal_mask is not None:
                    self.use_causal_mask = bool(use_causal_mask)
                return hook(self, list(inputs))
        if not isinstance(inputs, (list, tuple)):
            self._not_a_list(inputs)
        xs = [as_float_array(x, self.dtype, describe(self)) for x in inputs]
        if not self.built:
            self._split_shapes([x.shape for x in xs])  # errors show the shapes received
            self.ensure_built([x.shape for x in xs])
        else:
            self.check_input(xs)
        y = self.forward(xs, training=training, mask=mask, return_attention_scores=return_attention_scores,
                         use_causal_mask=use_causal_mask)
        return [a.copy() for a in y] if isinstance(y, list) else y.copy()

    def _score_params(self):
        """(mode, scale, w, outer) for the kernel."""
        raise NotImplementedError

    def _not_a_list(self, x):
        raise ValueError(f"{describe(self)}: expected a list of inputs [query, value] or [query, value, key], "
                         f"received a single array of shape {_fmt(np.shape(x))}")

    def forward(self, xs, training=False, mask=None, return_attention_scores=None, use_causal_mask=None,
                ctx=None):
        """``return_attention_scores`` and ``use_causal_mask``, when given, override the layer's
        settings for this call."""
        ctx = self.context(ctx)
        if return_attention_scores is None:
            return_attention_scores = self.return_attention_scores
        if use_causal_mask is None:
            use_causal_mask = self.use_causal_mask
        if not isinstance(xs, (list, tuple)):
            self._not_a_list(xs)
        if len(xs) not in (2, 3):
            self._split_shapes([np.shape(x) for x in xs])
        q = np.ascontiguousarray(xs[0], dtype=self.dtype)
        v = np.ascontiguousarray(xs[1], dtype=self.dtype)
        k = np.ascontiguousarray(xs[2], dtype=self.dtype) if len(xs) == 3 else v
        self._split_shapes([q.shape, v.shape, k.shape])
        if v.shape[1] == 0:
            raise ValueError(f"{describe(self)}: expected at least one value step, received value shape {v.shape}")
        masks = list(mask) if isinstance(mask, (list, tuple)) else [None, None] if mask is None else None
        if masks is None:
            raise ValueError(f"{describe(self)}: expected mask=[query_mask, value_mask], received a single array")
        b, tq, tv = q.shape[0], q.shape[1], v.shape[1]
        qmask = _mask_u8(self, ctx, "qmask", masks[0] if masks else None, (b, tq), "a query mask", "(batch, steps)")
        vmask = _mask_u8(self, ctx, "vmask", masks[1] if len(masks) > 1 else None, (b, tv), "a value mask",
                         "(batch, steps)")

        drop = dropped = None
        if training and self.dropout > 0:
            drop = ctx.buffer("drop", (b, tq, tv), self.dtype)
            (self._rng or backend.rng()).random(dtype=drop.dtype, out=drop)
            np.greater_equal(drop, self.dropout, out=drop, casting="unsafe")  # keep with prob 1 - rate
            drop *= 1.0 / (1.0 - self.dropout)
            dropped = ctx.buffer("dropped", (b, tq, tv), self.dtype)
        scores = ctx.buffer("scores", (b, tq, tv), self.dtype)
        attn = ctx.buffer("attn", (b, tq, tv), self.dtype)
        out = ctx.buffer("out", (b, tq, v.shape[2]), self.dtype)
        mode, scale, w, outer = self._score_params()
        work = None
        if mode == _ADDITIVE:
            work = ctx.buffer("work", (b, q.shape[2]), self.dtype)
            w = self._ones(ctx, q.shape[2]) if w is None else w
        _attention.attention_forward(q, k, v, mode, scale, w, outer, vmask, bool(use_causal_mask), drop,
                                     scores, attn, dropped, out, work, threads.get_num_threads())
        if qmask is not None:
            out *= qmask[:, :, None]
        ctx.q, ctx.k, ctx.v, ctx.key_given, ctx.qmask = q, k, v, len(xs) == 3, qmask
        ctx.drop, ctx.dropped, ctx.scores, ctx.attn = drop, dropped, scores, attn
        return [out, attn] if return_attention_scores else out

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        q, k, v, qmask = ctx.q, ctx.k, ctx.v, ctx.qmask
        dattn = None
        if isinstance(dy, (list, tuple)):
            dy, dattn = dy[0], (dy[1] if len(dy) > 1 else None)
        dout = np.ascontiguousarray(dy, dtype=self.dtype)
        if qmask is not None:  # masked query steps output 0
            dout = np.multiply(dout, qmask[:, :, None], out=ctx.buffer("dout", dout.shape, self.dtype))
        if dattn is not None:
            dattn = np.ascontiguousarray(dattn, dtype=self.dtype)
        b, tq, tv = q.shape[0], q.shape[1], v.shape[1]
        ds = ctx.buffer("ds", (b, tq, tv), self.dtype)
        dq = ctx.buffer("dq", q.shape, self.dtype)
        dk = ctx.buffer("dk", k.shape, self.dtype)
        dv = ctx.buffer("dv", v.shape, self.dtype)
        mode, scale, w, outer = self._score_params()
        d = q.shape[2]
        if mode == _ADDITIVE:
            w = self._ones(ctx, d) if w is None else w
        dparams = ctx.buffer("dparams", (b, 1 if mode == _DOT else 2 * d), self.dtype)
        dsum = ctx.buffer("dparams_sum", (1 if mode == _DOT else d + 2,), self.dtype)
        _attention.attention_backward(q, k, v, mode, scale, w, outer, ctx.drop, ctx.scores, ctx.attn,
                                      ctx.dropped, dout, dattn, ds, dq, dk, dv, dparams, dsum,
                                      threads.get_num_threads())
        if self.trainable:
            self._store_param_grads(ctx, dsum)
        if not ctx.need_input_grad:
            return [None] * (3 if ctx.key_given else 2)
        if ctx.key_given:
            return [dq, dv, dk]
        dv += dk  # the value served as the key too
        return [dq, dv]

    def _store_param_grads(self, ctx, dsum):
        raise NotImplementedError

    def _ones(self, ctx, d):
        """Unit score weights (an additive score without a learned scale), kept in ctx."""
        ones = getattr(ctx, "ones", None)
        if ones is None or ones.shape != (d,) or ones.dtype != self.dtype:
            ones = ctx.ones = np.ones(d, dtype=self.dtype)
        return ones

    def compute_mask(self, x, mask=None):
        """The query mask passes on (the output has the query's steps), as in Keras."""
        if isinstance(mask, (list, tuple)) and mask:
            return mask[0]
        return None

    def get_config(self):
        return {**super().get_config(), "dropout": self.dropout, "seed": self.seed,
                "use_causal_mask": self.use_causal_mask, "return_attention_scores": self.return_attention_scores}


class Attention(_BaseDenseAttention):
    """Dot-product (Luong) attention, as keras.layers.Attention.

    Args:
        use_scale: learn a scalar ``scale`` (initialised to 1) multiplying the scores.
        score_mode: 'dot': ``scores = query @ key^T``; 'concat':
            ``scores = concat_score_weight * sum(tanh(scale * (query_i + key_j)))``.
        dropout: rate of dropout on the attention weights (training only).
        seed: seed of the dropout mask.
        use_causal_mask: query step i attends to value steps j <= i only (decoder self-attention).
        return_attention_scores: also return the (batch, Tq, Tv) attention weights. Both this and
            use_causal_mask may also be given per call: ``layer([q, v], return_attention_scores=True)``
            (on symbolic tensors, i.e. in a functional model, that sets the layer's own setting).

    Call on ``[query, value]`` or ``[query, value, key]``: query (batch, Tq, dim), value
    (batch, Tv, value_dim), key (batch, Tv, dim). Output (batch, Tq, value_dim).
    Weights: scale () when use_scale; concat_score_weight () when score_mode='concat'.
    """

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(dropout=dropout, seed=seed, **kwargs)
        self.use_scale = bool(use_scale)
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"{describe(self)}: expected score_mode 'dot' or 'concat', received "
                             f"score_mode={score_mode!r}")
        self.score_mode = score_mode

    def build(self, input_shape):
        self._scale_index = self._concat_index = None
        if self.use_scale:
            self._scale_index = len(self._params)
            self.add_weight("scale", (), "ones")
        if self.score_mode == "concat":
            self._concat_index = len(self._params)
            self.add_weight("concat_score_weight", (), "ones")

    @property
    def scale(self):
        return None if self._scale_index is None else self._params[self._scale_index].value

    @property
    def concat_score_weight(self):
        return None if self._concat_index is None else self._params[self._concat_index].value

    def _score_params(self):
        scale = 1.0 if self._scale_index is None else float(self.scale)
        if self.score_mode == "dot":
            return _DOT, scale, None, 1.0
        return _ADDITIVE, scale, None, float(self.concat_score_weight)

    def _store_param_grads(self, ctx, dsum):
        if self.score_mode == "dot":
            if self._scale_index is not None:
                self._params[self._scale_index].set_grad(dsum[0], ctx.accumulate)
        else:
            d = dsum.shape[0] - 2
            if self._scale_index is not None:
                self._params[self._scale_index].set_grad(dsum[d], ctx.accumulate)
            self._params[self._concat_index].set_grad(dsum[d + 1], ctx.accumulate)

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale, "score_mode": self.score_mode}


class AdditiveAttention(_BaseDenseAttention):
    """Additive (Bahdanau) attention, as keras.layers.AdditiveAttention:
    ``scores[i, j] = sum_d scale_d * tanh(query[i, d] + key[j, d])``.

    Args:
        use_scale: learn the per-feature ``scale`` vector (glorot_uniform, shape (dim,));
            without it every feature weighs 1.
        dropout, seed, use_causal_mask, return_attention_scores: as for Attention.

    Call on ``[query, value]`` or ``[query, value, key]``; query and key share the last
    dimension. Output (batch, Tq, value_dim). Weights: scale (dim,) when use_scale.
    """

    def __init__(self, use_scale=True, dropout=0.0, seed=None, **kwargs):
        super().__init__(dropout=dropout, seed=seed, **kwargs)
        self.use_scale = bool(use_scale)

    def build(self, input_shape):
        q, v, k, _ = self._split_shapes(input_shape)
        if self.use_scale:
            self.add_weight("scale", (k[-1],), "glorot_uniform")

    @property
    def scale(self):
        return self._params[0].value if self.use_scale else None

    def _score_params(self):
        return _ADDITIVE, 1.0, self.scale, 1.0

    def _store_param_grads(self, ctx, dsum):
        if self.use_scale:
            self._params[0].set_grad(dsum[:dsum.shape[0] - 2], ctx.accumulate)

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale}


class AttentionPooling(Layer):
    """Attention pooling over time: a learned query scores every step of a sequence and the
    output is the softmax-weighted sum of the steps (the "attention-based LSTM" readout; Yang
    et al. 2016, hierarchical attention networks):

        keys    u_t = activation(h_t @ kernel + bias)   (or u_t = h_t when units is None)
        weights a = softmax_t(u_t . query)              (masked steps excluded)
        output  sum_t a_t h_t                           (batch, features)

    Use after ``LSTM(..., return_sequences=True)`` in a Sequential model. The weights of the
    last forward pass (a direct call or a model's) are in ``last_attention_scores`` (batch,
    time) for inspection.

    Args:
        units: size of the key projection; None scores the steps themselves (query of size
            features, no kernel).
        activation: of the key projection ('tanh').
        use_bias: bias in the key projection.
        kernel_initializer, bias_initializer, query_initializer: the query starts at zeros, so
            the layer starts as an average over the (unmasked) steps.
        kernel_regularizer, query_regularizer: penalties.

    Shape: (batch, time, features) -> (batch, features); a (batch, time) mask hides steps.
    Weights: kernel (features, units), bias (units,) when units is set; query (units or features,).
    """

    accepts_mask = True

    def __init__(self, units=None, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", query_initializer="zeros", kernel_regularizer=None,
                 query_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if units is not None:
            from .._validation import check_positive_int
            units = check_positive_int(units, describe(self), "units")
        self.units = units
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.query_initializer = initializers.get(query_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.query_regularizer = regularizers.get(query_regularizer)
        # tanh keys: applied by a vectorized kernel of csrc/attention.pyx (the dense kernel's
        # fused tanh is libm's, one element at a time: 15 of the 18 ms of a b64 t100 f64 step)
        self._fast_tanh = self.activation.name == "tanh"
        self._last_ctx = None

    def validate_input_shape(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"{describe(self)}: expected input of rank 3 (batch, time, features) with known "
                             f"features, received shape {_fmt(input_shape)}")

    def build(self, input_shape):
        features = input_shape[-1]
        if self.units is not None:
            self.add_weight("kernel", (features, self.units), self.kernel_initializer, self.kernel_regularizer)
            if self.use_bias:
                self.add_weight("bias", (self.units,), self.bias_initializer)
        self.add_weight("query", (self.units or features,), self.query_initializer, self.query_regularizer)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def check_input(self, x):
        check_shape(x, (None, None, self.input_shape[-1]), describe(self))

    @property
    def query(self):
        return self._params[-1].value

    @property
    def last_attention_scores(self):
        """(batch, time) attention weights of the last forward pass."""
        attn = None if self._last_ctx is None else getattr(self._last_ctx, "attn", None)
        return None if attn is None else attn[:, 0, :].copy()

    def forward(self, x, training=False, mask=None, ctx=None):
        ctx = self.context(ctx)
        b, t, f = x.shape
        if t == 0:
            raise ValueError(f"{describe(self)}: expected at least one time step, received shape {x.shape}")
        nt = threads.get_num_threads()
        if self.units is not None:
            x2 = x.reshape(b * t, f)
            z = ctx.buffer("z", (b * t, self.units), self.dtype)
            u = z if self.activation.code == activations.LINEAR_CODE else \
                ctx.buffer("u", (b * t, self.units), self.dtype)
            bias = self._params[1].value if self.use_bias else None
            kernel = self._params[0].value
            if self._fast_tanh:  # the projection in the dense kernel, the tanh vectorized here
                _dense.dense_forward(x2, kernel, bias, z, z, activations.LINEAR_CODE, 0.0, nt)
                _attention.tanh_forward(z.reshape(-1), u.reshape(-1), nt)
            else:
                _dense.dense_forward(x2, kernel, bias, z, u, self.activation.code, self.activation.alpha, nt)
            keys = u.reshape(b, t, self.units)
            ctx.proj = (x2, z, u)
        else:
            keys = x
        d = keys.shape[2]
        q = ctx.buffer("q", (b, 1, d), self.dtype)
        q[...] = self.query  # the learned query, one copy per batch element
        vmask = _mask_u8(self, ctx, "vmask", mask, (b, t), "a mask", "(batch, time)")
        scores = ctx.buffer("scores", (b, 1, t), self.dtype)
        attn = ctx.buffer("attn", (b, 1, t), self.dtype)
        out = ctx.buffer("out", (b, 1, f), self.dtype)
        _attention.attention_forward(q, keys, x, _DOT, 1.0, None, 1.0, vmask, False, None, scores, attn, None,
                                     out, None, nt)
        ctx.x, ctx.keys, ctx.q, ctx.scores, ctx.attn = x, keys, q, scores, attn
        # where the last weights are, for last_attention_scores only (inspection: no forward or
        # backward reads it)
        self._last_ctx = ctx
        return out.reshape(b, f)

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        x, keys, q = ctx.x, ctx.keys, ctx.q
        b, t, f = x.shape
        d = keys.shape[2]
        nt = threads.get_num_threads()
        dout = np.ascontiguousarray(dy, dtype=self.dtype).reshape(b, 1, f)
        ds = ctx.buffer("ds", (b, 1, t), self.dtype)
        dq = ctx.buffer("dq", (b, 1, d), self.dtype)
        dk = ctx.buffer("dk", (b, t, d), self.dtype)
        dv = ctx.buffer("dv", (b, t, f), self.dtype)
        dparams = ctx.buffer("dparams", (b, 1), self.dtype)
        dsum = ctx.buffer("dparams_sum", (1,), self.dtype)
        _attention.attention_backward(q, keys, x, _DOT, 1.0, None, 1.0, None, ctx.scores, ctx.attn, None,
                                      dout, None, ds, dq, dk, dv, dparams, dsum, nt)
        train = self.trainable
        # gradient with respect to the query: summed over the batch (in batch order)
        gq = self._params[-1].grad
        if train and gq is not None:
            if ctx.accumulate:
                gq += dq[:, 0, :].sum(axis=0)
            else:
                np.sum(dq[:, 0, :], axis=0, out=gq)
        if self.units is None:
            if not ctx.need_input_grad:
                return None
            dv += dk  # the steps are both keys and values
            return dv
        # gradient through the key projection (kernel, bias and, into dx, the input)
        x2, z, u = ctx.proj
        dk2 = dk.reshape(b * t, d)
        act = self.activation.code
        if self._fast_tanh:  # dL/dz here, then the dense kernel as linear
            _attention.tanh_backward(u.reshape(-1), dk2.reshape(-1), dk2.reshape(-1), nt)
            act = activations.LINEAR_CODE
        dz = dk2 if act == activations.LINEAR_CODE else ctx.buffer("dz", dk2.shape, self.dtype)
        dx = ctx.buffer("dx", (b * t, f), self.dtype) if ctx.need_input_grad else None
        _dense.dense_backward(x2, self._params[0].value, z, u, dk2, dz, self._params[0].grad if train else None,
                              self._params[1].grad if (train and self.use_bias) else None, dx, act,
                              self.activation.alpha, ctx.accumulate, nt)
        if dx is None:
            return None
        dv += dx.reshape(b, t, f)
        return dv

    def compute_mask(self, x, mask=None):
        return None  # the time axis is pooled away

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "query_initializer": initializers.serialize(self.query_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "query_regularizer": regularizers.serialize(self.query_regularizer)}


SelfAttentionPooling = AttentionPooling
