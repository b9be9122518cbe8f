"""Loss functions (Keras names). Value and gradient come from one compiled pass.

Every loss reduces as Keras' default: the mean over samples of the per-sample loss (weighted by
``sample_weight`` when given, divided by the batch size). Per-sample losses average over the
output features (mse, mae, huber, binary cross-entropy) or sum over them (sse, categorical
cross-entropy).
"""
import numpy as np

from . import threads
from ._kernels import losses as _k
from ._kernels.losses import MSE, SSE, MAE, HUBER, BCE, BCE_LOGITS, CCE, CCE_LOGITS  # the kernels' codes
from ._validation import as_float_array, unknown_identifier


class Loss:
    """Base class. ``loss(y_true, y_pred, sample_weight=None)`` returns the mean loss (float)."""

    code = None
    sparse = False
    name = None

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)
        self._buffers = {}

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred)
        dtype = y_pred.dtype if y_pred.dtype in (np.float32, np.float64) else np.float64
        y_pred = as_float_array(y_pred, dtype, self._who(), "y_pred")
        y_true = self.prepare_targets(y_true, y_pred.shape, dtype)
        sw = self.prepare_sample_weight(sample_weight, y_pred.shape[0], dtype)
        return self.compute(y_true, y_pred, sw, grad=None)

    # -- used by models: targets and weights are validated once per fit, then compute() per batch
    def prepare_targets(self, y_true, pred_shape, dtype):
        """Targets as an array the kernel takes, with a clear error when their shape is wrong."""
        y = as_float_array(y_true, dtype, self._who(), "y_true")
        if y.shape != tuple(pred_shape):
            if y.ndim == len(pred_shape) - 1 and pred_shape[-1] == 1 and y.shape == tuple(pred_shape[:-1]):
                y = y.reshape(pred_shape)  # (batch,) targets for a (batch, 1) output, as Keras accepts
            elif y.shape[:1] == tuple(pred_shape[:1]) and y.size == np.prod(pred_shape):
                y = y.reshape(pred_shape)
            else:
                raise ValueError(f"{self._who()}: expected y_true of shape {tuple(pred_shape)} (the model output's), "
                                 f"received shape {y.shape}")
        return y

    def prepare_sample_weight(self, sample_weight, n, dtype):
        if sample_weight is None:
            return None
        sw = np.ascontiguousarray(sample_weight, dtype=dtype).reshape(-1)
        if sw.shape[0] != n:
            raise ValueError(f"{self._who()}: expected sample_weight of shape ({n},), received shape {sw.shape}")
        return sw

    def compute(self, y_true, y_pred, sample_weight, grad, code=None):
        """Mean loss; writes d(loss)/d(y_pred) into grad (same shape) when grad is not None.

        ``code`` overrides the kernel, e.g. CCE_LOGITS when the model fuses softmax into the loss
        and passes logits as y_pred."""
        p2 = y_pred.reshape(y_pred.shape[0], -1) if y_pred.ndim != 2 else y_pred
        g2 = None if grad is None else grad.reshape(p2.shape)
        rows = self._buffer("rows", (p2.shape[0],))
        c = self.kernel_code() if code is None else code
        if self.sparse:
            return _k.loss_sparse(c, y_true, p2, sample_weight, g2, rows, threads.get_num_threads())
        return _k.loss_dense(c, self.delta_param(), y_true.reshape(p2.shape), p2, sample_weight, g2, rows,
                             threads.get_num_threads())

    def kernel_code(self):
        return self.code

    def delta_param(self):
        return 0.0

    def logits_code(self, activation_name):
        """The kernel code to use on pre-activations when the output layer ends in
        ``activation_name`` (softmax/sigmoid fused with cross-entropy), or None."""
        return None

    def _buffer(self, key, shape):
        b = self._buffers.get(key)
        if b is None or b.shape != shape:
            b = self._buffers[key] = np.empty(shape, dtype=np.float64)
        return b

    def _who(self):
        return f"{type(self).__name__} loss"

    def get_config(self):
        return {"from_logits": self.from_logits} if self.from_logits else {}


class _RegressionLoss(Loss):
    """A loss on real-valued targets: it takes no ``from_logits``."""

    def __init__(self):
        super().__init__()


class MeanSquaredError(_RegressionLoss):
    code, name = MSE, "mean_squared_error"


class SumSquaredError(_RegressionLoss):
    """Half the summed squared error per sample, ½ Σ (y - ŷ)² (the course's E_total)."""
    code, name = SSE, "sum_squared_error"


class MeanAbsoluteError(_RegressionLoss):
    code, name = MAE, "mean_absolute_error"


class Huber(_RegressionLoss):
    code, name = HUBER, "huber"

    def __init__(self, delta=1.0):
        super().__init__()
        if not delta > 0:
            raise ValueError(f"Huber loss: expected delta > 0, received delta={delta!r}")
        self.delta = float(delta)

    def delta_param(self):
        return self.delta

    def get_config(self):
        return {"delta": self.delta}


class _Crossentropy(Loss):
    """A cross-entropy: ``kernels`` = (its kernel on probabilities, its kernel on logits). The
    logits kernel serves ``from_logits=True``, and a model whose output layer ends in
    ``fuses_with`` (the activation that turns logits into probabilities) feeds it the logits."""

    kernels, fuses_with = (None, None), None

    def kernel_code(self):
        on_probabilities, on_logits = self.kernels
        return on_logits if self.from_logits else on_probabilities

    def logits_code(self, activation_name):
        return self.kernels[1] if (activation_name == self.fuses_with and not self.from_logits) else None


class BinaryCrossentropy(_Crossentropy):
    name = "binary_crossentropy"
    kernels, fuses_with = (BCE, BCE_LOGITS), "sigmoid"


class CategoricalCrossentropy(_Crossentropy):
    name = "categorical_crossentropy"
    kernels, fuses_with = (CCE, CCE_LOGITS), "softmax"

    def compute(self, y_true, y_pred, sample_weight, grad, code=None):
        # the softmax runs over the last axis: one row per sample, or per (sample, step) of a
        # sequence output (batch, time, classes); the mean is over all rows, as in Keras. Sparse
        # labels: one per row.
        if y_pred.ndim != 2:
            p2 = y_pred.reshape(-1, y_pred.shape[-1])
            if sample_weight is not None and sample_weight.shape[0] != p2.shape[0]:
                sample_weight = np.repeat(sample_weight, p2.shape[0] // sample_weight.shape[0])
            y_true = y_true.reshape(-1) if self.sparse else y_true.reshape(p2.shape)
            y_pred, grad = p2, None if grad is None else grad.reshape(p2.shape)
        elif self.sparse:
            y_true = y_true.reshape(-1)
        return super().compute(y_true, y_pred, sample_weight, grad, code)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical cross-entropy with integer class labels, shape (batch,) or (batch, 1)."""
    name = "sparse_categorical_crossentropy"
    sparse = True

    def prepare_targets(self, y_true, pred_shape, dtype):
        y = np.asarray(y_true)
        n_classes = pred_shape[-1]
        rows = int(np.prod(pred_shape[:-1]))
        if y.dtype.kind == "f":
            if not np.all(np.mod(y, 1) == 0):
                raise ValueError(f"{self._who()}: expected integer class labels, received non-integer values")
        elif y.dtype.kind not in "biu":
            raise TypeError(f"{self._who()}: expected integer class labels, received dtype {y.dtype}")
        if y.size != rows:
            raise ValueError(f"{self._who()}: expected {rows} labels (shape {tuple(pred_shape[:-1])}) for model output "
                             f"of shape {tuple(pred_shape)}, received labels of shape {y.shape}")
        # one label per output row, shaped like the output without its class axis (so a model
        # can batch the labels of sequence outputs (batch, time, classes) by sample)
        y = np.ascontiguousarray(y.reshape(tuple(pred_shape[:-1])), dtype=np.intp)
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            bad = y[(y < 0) | (y >= n_classes)][0]
            raise ValueError(f"{self._who()}: expected labels in [0, {n_classes}) for {n_classes} output classes, "
                             f"received label {bad}")
        return y


mean_squared_error = mse = MeanSquaredError
_REGISTRY = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "sse": SumSquaredError, "sum_squared_error": SumSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber, "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy, "cce": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_CLASSES = {c.__name__: c for c in set(_REGISTRY.values())}


def get(identifier):
    """A Loss from a name ('mse', 'sparse_categorical_crossentropy'), a config dict or a Loss."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, dict):
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]()
    raise unknown_identifier("loss", identifier, _REGISTRY)


def serialize(loss):
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
