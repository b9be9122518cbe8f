"""Metrics averaged over an epoch (Keras names): accuracy variants, mae, mse.

A metric accumulates ``update_state(y_true, y_pred)`` over batches (weighted by batch size)
and reports ``result()``; ``reset_state()`` starts a new epoch.
"""
import numpy as np

from ._validation import unknown_identifier


class Metric:
    name = None

    def __init__(self, name=None):
        if name is not None:
            self.name = name
        self.reset_state()

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self.values(np.asarray(y_true), np.asarray(y_pred))
        if sample_weight is None:
            self.total += float(values.sum())
            self.count += values.size
        else:
            w = np.asarray(sample_weight, dtype=np.float64).reshape(values.shape[0], *([1] * (values.ndim - 1)))
            w = np.broadcast_to(w, values.shape)
            self.total += float((values * w).sum())
            self.count += float(w.sum())

    def result(self):
        return self.total / self.count if self.count else 0.0

    def __call__(self, y_true, y_pred, sample_weight=None):
        self.reset_state()
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self):
        return {"name": self.name}


class CategoricalAccuracy(Metric):
    """Share of samples whose arg-max prediction is the arg-max of a one-hot target."""
    name = "categorical_accuracy"

    def values(self, y_true, y_pred):
        return (np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1)).astype(np.float64)


class SparseCategoricalAccuracy(Metric):
    """Share of samples whose arg-max prediction equals the integer label."""
    name = "sparse_categorical_accuracy"

    def values(self, y_true, y_pred):
        pred = np.argmax(y_pred, axis=-1)
        return (pred == y_true.reshape(pred.shape)).astype(np.float64)


class BinaryAccuracy(Metric):
    """Share of outputs on the right side of ``threshold``."""
    name = "binary_accuracy"

    def __init__(self, name=None, threshold=0.5):
        self.threshold = threshold
        super().__init__(name)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}

    def values(self, y_true, y_pred):
        return ((y_pred > self.threshold) == (y_true.reshape(y_pred.shape) > 0.5)).astype(np.float64)


class MeanAbsoluteError(Metric):
    name = "mae"

    def values(self, y_true, y_pred):
        return np.abs(y_pred - y_true.reshape(y_pred.shape)).reshape(y_pred.shape[0], -1).mean(axis=1)


class MeanSquaredError(Metric):
    name = "mse"

    def values(self, y_true, y_pred):
        return np.square(y_pred - y_true.reshape(y_pred.shape)).reshape(y_pred.shape[0], -1).mean(axis=1)


_REGISTRY = {
    "categorical_accuracy": CategoricalAccuracy, "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy, "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
}


def get(identifier, loss=None, output_shape=None):
    """A Metric from a name. 'accuracy'/'acc' resolves from the loss, as Keras does."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        lname = getattr(loss, "name", "")
        if lname == "sparse_categorical_crossentropy":
            cls = SparseCategoricalAccuracy
        elif lname == "binary_crossentropy" or (output_shape is not None and output_shape[-1] == 1):
            cls = BinaryAccuracy
        else:
            cls = CategoricalAccuracy
        return cls(name="accuracy")
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]()
    raise unknown_identifier("metric", identifier, list(_REGISTRY) + ["accuracy"])


accuracy = "accuracy"
