"""Shared test helpers: central-difference gradients and a whole-layer gradient check (float64)."""
import numpy as np


def numeric_grad(f, x, eps=1e-6):
    """d f() / d x by central differences; x is perturbed in place (and restored), f takes no
    arguments and returns a float computed from the current x."""
    grad = np.zeros(x.shape, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, x), "numeric_grad needs a contiguous x it can perturb in place"
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        f_plus = f()
        flat[i] = old - eps
        f_minus = f()
        flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def check_layer_gradients(layer, x, training=True, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0):
    """Check ``layer.backward`` against central differences of L = sum(forward(x) * r), r fixed
    and random, for the input and every weight that has a gradient. The layer must be float64.
    Returns (dx, grads) from backward."""
    x = np.array(x, dtype=np.float64)
    y = layer(x, training=training)
    r = np.random.default_rng(seed).standard_normal(y.shape)

    def loss():
        return float(np.sum(layer.forward(x, training=training) * r))

    layer.forward(x, training=training)
    layer.zero_grads()
    dx = layer.backward(r)
    dx = None if dx is None else np.array(dx)
    grads = [None if g is None else g.copy() for g in layer.grads]
    if dx is not None:
        np.testing.assert_allclose(dx, numeric_grad(loss, x, eps), rtol=rtol, atol=atol,
                                   err_msg=f"{layer.name}: gradient with respect to the input")
    for name, w, g in zip(layer.weight_names, layer.weights, grads):
        if g is not None:
            np.testing.assert_allclose(g, numeric_grad(loss, w, eps), rtol=rtol, atol=atol,
                                       err_msg=f"{layer.name}: gradient with respect to {name}")
    return dx, grads
