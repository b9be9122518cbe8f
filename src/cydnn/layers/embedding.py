"""Sequence input layers: Embedding (integer ids -> dense vectors) and Masking."""
import warnings

import numpy as np

from .. import initializers, regularizers, threads
from .._kernels import embedding as _embedding
from .._validation import check_positive_int, check_shape, describe
from .base import Layer

# Keras' name for RandomUniform(-0.05, 0.05), the Embedding default
_INITIALIZER_ALIASES = {"uniform": "random_uniform"}


class Embedding(Layer):
    """Turns integer ids into dense vectors: ``y[..., :] = embeddings[ids[...], :]``.

    Args:
        input_dim: vocabulary size; ids must lie in [0, input_dim).
        output_dim: size of each embedding vector.
        embeddings_initializer: 'uniform' (Keras: RandomUniform(-0.05, 0.05)) or any initializer.
        embeddings_regularizer: L1/L2 penalty on the embedding matrix.
        mask_zero: id 0 is padding: the layer emits the mask ``ids != 0`` for the layers that
            follow (recurrent layers skip those steps), as in Keras. Id 0 then still has a row.
        input_length: Keras 2 compatibility: declares the input shape ``(input_length,)``.

    Shape: ids (batch, ...) -> (batch, ..., output_dim); typically (batch, time) ->
    (batch, time, output_dim). Once built, the rank is fixed but the time length may vary. Weights: embeddings (input_dim, output_dim).

    Ids may be of any integer dtype, or floats holding integers: a model converts its inputs to
    its float dtype at the boundary, which is exact for ids below 2**24 in float32 (2**53 in
    float64). With a larger vocabulary in a float32 model, use ``dtype='float64'`` layers or
    call the layer directly on integer arrays. Non-integer or out-of-range ids raise a
    ValueError naming the layer, the valid range and the offending id.

    The lookup and its gradient (a scatter-add in a fixed order, so the result does not
    depend on the thread count) run in a compiled kernel. No gradient flows to the ids.
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 mask_zero=False, input_length=None, **kwargs):
        if input_length is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = (input_length,)
        super().__init__(**kwargs)
        self.input_dim = check_positive_int(input_dim, describe(self), "input_dim")
        self.output_dim = check_positive_int(output_dim, describe(self), "output_dim")
        if isinstance(embeddings_initializer, str):
            embeddings_initializer = _INITIALIZER_ALIASES.get(embeddings_initializer.lower(), embeddings_initializer)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.mask_zero = bool(mask_zero)
        self.input_length = input_length

    def build(self, input_shape):
        if self.dtype == np.float32 and self.input_dim > 2 ** 24:
            warnings.warn(f"{describe(self)}: input_dim={self.input_dim} exceeds 2**24: ids above 16777216 are not "
                          f"exact once a float32 model converts its inputs; call the layer on integer arrays or use "
                          f"dtype='float64'", stacklevel=3)
        self.add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer,
                        self.embeddings_regularizer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def check_input(self, x):
        # any sequence length (the time axis may differ from the one built for), same rank
        expected = self._declared_input_shape or (None,) * len(self.input_shape)
        check_shape(x, expected, describe(self), "ids")

    @property
    def embeddings(self):
        return self._params[0].value

    # ------------------------------------------------------------------ running
    def __call__(self, x, training=False):
        """Forward on concrete ids; integer arrays are used as they are (no float round trip)."""
        if hasattr(x, "_cydnn_symbolic_call"):
            return super().__call__(x, training)
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{describe(self)}: expected integer ids (an array of ints, or of floats holding "
                            f"integers), received dtype {arr.dtype}")
        if arr.ndim == 0:
            raise ValueError(f"{describe(self)}: expected ids with a batch axis, received a scalar")
        if not self.built:
            self.ensure_built(arr.shape)
        else:
            self.check_input(arr)
        return self.forward(arr, training=training).copy()

    def _ids(self, ctx, x):
        """x as int64 row indices in a buffer of ctx, after checking every id is an integer in range."""
        x = np.asarray(x)
        ids = ctx.buffer("ids", (x.size,), np.int64)
        flat = x.reshape(-1)
        if flat.size == 0:
            return ids
        if x.dtype.kind == "f":
            lo, hi = flat.min(), flat.max()
            if not (lo >= 0 and hi < self.input_dim):  # also catches NaN
                self._raise_out_of_range(x, ~((flat >= 0) & (flat < self.input_dim)))
            np.copyto(ids, flat, casting="unsafe")
            if not np.array_equal(ids, flat):
                bad = int(np.flatnonzero(ids != flat)[0])
                idx = tuple(int(i) for i in np.unravel_index(bad, x.shape))
                raise ValueError(f"{describe(self)}: expected integer ids in [0, {self.input_dim}), received "
                                 f"non-integer id {float(flat[bad])!r} at index {idx}")
        elif x.dtype.kind in "biu":
            if flat.min() < 0 or flat.max() >= self.input_dim:
                self._raise_out_of_range(x, (flat < 0) | (flat >= self.input_dim))
            np.copyto(ids, flat, casting="unsafe")
        else:
            raise TypeError(f"{describe(self)}: expected integer ids, received dtype {x.dtype}")
        return ids

    def _raise_out_of_range(self, x, bad_flags):
        bad = int(np.flatnonzero(bad_flags)[0])
        value = x.reshape(-1)[bad].item()
        value = int(value) if float(value).is_integer() else value
        idx = tuple(int(i) for i in np.unravel_index(bad, x.shape))
        raise ValueError(f"{describe(self)}: expected ids in [0, {self.input_dim}) (input_dim={self.input_dim}), "
                         f"received id {value!r} at index {idx}")

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        ids = self._ids(ctx, x)
        out = ctx.buffer("y", (ids.size, self.output_dim), self.dtype)
        _embedding.embedding_forward(ids, self.embeddings, out, threads.get_num_threads())
        ctx.ids = ids
        return out.reshape(tuple(x.shape) + (self.output_dim,))

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        grad = self._params[0].grad
        if self.trainable and grad is not None:
            dy2 = np.ascontiguousarray(dy, dtype=self.dtype).reshape(-1, self.output_dim)
            _embedding.embedding_backward(ctx.ids, dy2, grad, ctx.accumulate, threads.get_num_threads())
        return None  # the ids have no gradient

    def compute_mask(self, x, mask=None):
        if not self.mask_zero:
            return None
        return np.asarray(x) != 0

    def get_config(self):
        config = {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                  "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                  "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
                  "mask_zero": self.mask_zero}
        if self.input_length is not None:
            config["input_length"] = self.input_length
            config.pop("input_shape", None)
        return config


class Masking(Layer):
    """Marks time steps to skip: a step whose features ALL equal ``mask_value`` is masked.

    The output is the input with masked steps set to 0 (as Keras does), and the layer emits the
    (batch, time) mask ``any(x != mask_value, axis=-1)`` for the layers that follow (recurrent
    layers keep their state through masked steps). The gradient is zero at masked steps.

    Shape: (batch, time, features) -> same.
    """

    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        try:
            self.mask_value = float(mask_value)
        except (TypeError, ValueError):
            raise ValueError(f"{describe(self)}: expected mask_value to be a number, "
                             f"received mask_value={mask_value!r}") from None

    def validate_input_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{describe(self)}: expected input of rank 3 (batch, time, features), "
                             f"received shape {tuple(input_shape)}")

    def check_input(self, x):
        check_shape(x, (None, None, self.input_shape[-1]), describe(self))

    def _mask(self, ctx, x):
        ne = ctx.buffer("ne", x.shape, np.bool_)
        np.not_equal(x, self.mask_value, out=ne)
        keep = ctx.buffer("keep", x.shape[:2], np.bool_)
        np.any(ne, axis=-1, out=keep)
        return keep

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        keep = self._mask(ctx, x)
        y = ctx.buffer("y", x.shape, self.dtype)
        np.multiply(x, keep[..., None], out=y)
        ctx.keep = keep
        return y

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        if not ctx.need_input_grad:
            return None
        dx = ctx.buffer("dx", np.shape(dy), self.dtype)
        np.multiply(dy, ctx.keep[..., None], out=dx)  # masked steps: the output is constant 0
        return dx

    def compute_mask(self, x, mask=None):
        """The (batch, time) mask: True where some feature differs from mask_value."""
        return np.any(np.asarray(x) != self.mask_value, axis=-1)

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}
