"""Rosenblatt's perceptron: a single threshold unit trained with the perceptron rule.

    output  = heaviside(w . x + b)            (1 if w . x + b >= 0 else 0)
    update  w += lr * (target - output) * x,  b += lr * (target - output)

The rule converges on linearly separable data (AND, OR) and can never classify XOR correctly:
no line separates {(0,1), (1,0)} from {(0,0), (1,1)}.
"""
import numpy as np

from ._validation import as_float_array, check_positive_int


class Perceptron:
    def __init__(self, learning_rate=1.0, max_epochs=100, weights=None, bias=0.0):
        if not learning_rate > 0:
            raise ValueError(f"Perceptron: expected learning_rate > 0, received learning_rate={learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.max_epochs = check_positive_int(max_epochs, "Perceptron", "max_epochs")
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64).copy()
        self.bias = float(bias)
        self.errors_ = []       # misclassified samples per epoch
        self.converged_ = False

    def decision_function(self, x):
        return as_float_array(x, np.float64, "Perceptron") @ self.weights + self.bias

    def predict(self, x):
        return (self.decision_function(x) >= 0).astype(np.int64)

    def fit(self, x, y):
        """Sweep the samples in order, updating after each mistake, until an epoch has none
        (converged_ = True) or max_epochs pass. Returns self."""
        x = as_float_array(x, np.float64, "Perceptron", "input x")
        y = np.asarray(y).reshape(-1)
        if x.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"Perceptron: expected x of shape (n, features) and y of shape (n,), "
                             f"received {x.shape} and {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("Perceptron: expected binary targets 0/1")
        if self.weights is None:
            self.weights = np.zeros(x.shape[1])
        self.errors_ = []
        self.converged_ = False
        for _ in range(self.max_epochs):
            errors = 0
            for xi, ti in zip(x, y):
                out = 1 if xi @ self.weights + self.bias >= 0 else 0
                if out != ti:
                    self.weights += self.learning_rate * (ti - out) * xi
                    self.bias += self.learning_rate * (ti - out)
                    errors += 1
            self.errors_.append(errors)
            if errors == 0:
                self.converged_ = True
                break
        return self
