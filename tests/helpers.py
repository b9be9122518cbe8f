"""Shared test helpers: central-difference gradients and a whole-layer gradient check (float64).

    numeric_grad(f, x, eps)            d f() / d x, x perturbed in place (f takes no arguments)
    check_layer_gradients(layer, x)    backward(dy) vs numeric gradients of sum(forward(x) * dy)
"""
import numpy as np


def numeric_grad(f, x, eps=1e-6):
    """d f() / d x by central differences; x is perturbed in place (and restored), f takes no
    arguments and returns a float computed from the current x. x must be a float64 array that
    owns or views contiguous memory (a weight, an input array)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError(f"numeric_grad: expected a float64 ndarray (finite differences in float32 are noise), "
                        f"received {type(x).__name__} of dtype {getattr(x, 'dtype', None)}")
    grad = np.zeros(x.shape, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, x) or x.size == 0, "numeric_grad needs a contiguous x it can perturb in place"
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        f_plus = float(f())
        flat[i] = old - eps
        f_minus = float(f())
        flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def _as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


def _weighted_sum(outputs, dys):
    return float(sum(np.sum(np.asarray(o, dtype=np.float64) * d) for o, d in zip(_as_list(outputs), dys)))


def check_layer_gradients(layer, x, training=True, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0, dy=None,
                          forward_fn=None, backward_fn=None, check_input=True):
    """Check a layer's backward against central differences of L = sum(forward(x) * dy).

    The layer is built in float64 (an unbuilt layer gets dtype float64; a built one must already be
    float64). ``dy`` is the upstream gradient, random standard normal (``seed``) by default; a layer
    whose forward returns a list (``return_state``) gets a list of dys, one per output, and
    ``backward`` receives that list. ``forward_fn(x)`` replaces ``layer.forward(x, training=...)``
    (e.g. to reseed a Dropout mask on every call, or to feed a mask); ``backward_fn(dy)`` replaces
    ``layer.backward(dy)``. ``x`` may be a list of arrays for layers taking several inputs (then
    backward's result is a list of dxs in the same order). Checks dx (unless ``check_input`` is
    False or backward returns None) and every weight that has a gradient buffer.

    Returns (dx, grads) from backward (copies).
    """
    multi = isinstance(x, (list, tuple))
    xs = [np.array(xi, dtype=np.float64, order="C") for xi in _as_list(x)]
    x_arg = xs if multi else xs[0]
    if not layer.built:
        if np.dtype(layer.dtype) != np.float64:
            layer.dtype = np.dtype(np.float64)
        if multi:
            raise ValueError(f"{layer.name}: build a multi-input layer before checking its gradients")
        layer(xs[0], training=training)  # checks the input and builds
    assert np.dtype(layer.dtype) == np.float64, f"{layer.name}: gradient checks need a float64 layer, got {layer.dtype}"
    for w in layer.weights:
        assert w.dtype == np.float64, f"{layer.name}: weight of dtype {w.dtype} in a float64 gradient check"

    forward = forward_fn if forward_fn is not None else (lambda inp: layer.forward(inp, training=training))
    backward = backward_fn if backward_fn is not None else layer.backward

    y = forward(x_arg)
    ys = _as_list(y)
    if dy is None:
        rng = np.random.default_rng(seed)
        dys = [rng.standard_normal(np.shape(o)) for o in ys]
    else:
        dys = [np.asarray(d, dtype=np.float64) for d in _as_list(dy)]
        assert len(dys) == len(ys), f"{layer.name}: {len(ys)} outputs but {len(dys)} upstream gradients"
    for o, d in zip(ys, dys):
        assert np.shape(o) == d.shape, f"{layer.name}: output shape {np.shape(o)} but dy shape {d.shape}"

    def loss():
        return _weighted_sum(forward(x_arg), dys)

    # analytic: one fresh forward, then backward with dy in the output's structure
    forward(x_arg)
    layer.zero_grads()
    dx = backward([d.copy() for d in dys] if isinstance(y, (list, tuple)) else dys[0].copy())
    if dx is not None:
        dx = [None if d is None else np.array(d) for d in dx] if multi else np.array(dx)
    grads = [None if g is None else g.copy() for g in layer.grads]

    if check_input and dx is not None:
        for i, (xi, di) in enumerate(zip(xs, dx if multi else [dx])):
            if di is None:
                continue
            what = f"input {i}" if multi else "the input"
            np.testing.assert_allclose(di, numeric_grad(loss, xi, eps), rtol=rtol, atol=atol,
                                       err_msg=f"{layer.name}: gradient with respect to {what}")
    for name, w, g in zip(layer.weight_names, layer.weights, grads):
        if g is not None:
            np.testing.assert_allclose(g, numeric_grad(loss, w, eps), rtol=rtol, atol=atol,
                                       err_msg=f"{layer.name}: gradient with respect to {name}")
    return dx, grads


def subprocess_env(**overrides):
    """Environment for a child Python that must import the same cydnn as this test process
    (installed, or built in place in src/): its package directory goes first on PYTHONPATH.
    An override of None unsets that variable."""
    import os

    import cydnn

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(cydnn.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)}
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}
