# Fused parameter updates over flat buffers: one pass over n floats per optimizer step.
#
# Formulas follow PyTorch's torch.optim (which also match Keras for a constant learning rate):
# weight decay added to the gradient (coupled), except AdamW (decoupled: p *= 1 - lr * wd).
# Norms are summed in a fixed number of chunks then combined serially, so they do not depend
# on the thread count.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, fabs
from _threads cimport threads_for_updates, UPDATE_CHUNKS as N_CHUNKS


def sgd_step(floating[::1] p, floating[::1] g, floating[::1] buf,
             double lr, double momentum, double dampening, bint nesterov,
             double weight_decay, bint first, int n_threads):
    """g += wd*p; buf = g (first) or momentum*buf + (1-dampening)*g; p -= lr * (g + momentum*buf if nesterov else buf).

    buf may be None when momentum == 0.
    """
    cdef Py_ssize_t i, n = p.shape[0]
    cdef double gi, b
    cdef bint use_m = momentum != 0
    for i in prange(n, nogil=True, schedule="static", num_threads=threads_for_updates(n, n_threads)):
        gi = g[i] + weight_decay * p[i]
        if use_m:
            b = gi if first else momentum * buf[i] + (1.0 - dampening) * gi
            buf[i] = <floating>b
            gi = gi + momentum * b if nesterov else b
        p[i] = <floating>(p[i] - lr * gi)


def adam_step(floating[::1] p, floating[::1] g, floating[::1] m, floating[::1] v,
              floating[::1] vmax, double lr, double beta1, double beta2, double eps,
              long t, double weight_decay, bint decoupled, int n_threads):
    """Adam / AdamW / AMSGrad (vmax not None) step t >= 1, bias-corrected as in the paper."""
    cdef Py_ssize_t i, n = p.shape[0]
    cdef double gi, mi, vi, bc1 = 1.0 - beta1 ** t, bc2 = 1.0 - beta2 ** t
    cdef double step = lr / bc1, inv_sqrt_bc2 = 1.0 / sqrt(bc2), shrink = 1.0 - lr * weight_decay
    cdef bint ams = vmax is not None
    for i in prange(n, nogil=True, schedule="static", num_threads=threads_for_updates(n, n_threads)):
        gi = g[i]
        if decoupled:
            p[i] = <floating>(p[i] * shrink)
        else:
            gi = gi + weight_decay * p[i]
        mi = beta1 * m[i] + (1.0 - beta1) * gi
        vi = beta2 * v[i] + (1.0 - beta2) * gi * gi
        m[i] = <floating>mi
        v[i] = <floating>vi
        if ams:
            if vi < vmax[i]:
                vi = vmax[i]
            vmax[i] = <floating>vi
        p[i] = <floating>(p[i] - step * mi / (sqrt(vi) * inv_sqrt_bc2 + eps))


def rmsprop_step(floating[::1] p, floating[::1] g, floating[::1] v, floating[::1] buf,
                 floating[::1] gavg, double lr, double rho, double eps, double momentum,
                 double weight_decay, int n_threads):
    """v = rho*v + (1-rho)*g^2; centered when gavg is not None; momentum buffer when buf is not None."""
    cdef Py_ssize_t i, n = p.shape[0]
    cdef double gi, vi, ga, denom
    cdef bint centered = gavg is not None, use_m = buf is not None
    for i in prange(n, nogil=True, schedule="static", num_threads=threads_for_updates(n, n_threads)):
        gi = g[i] + weight_decay * p[i]
        vi = rho * v[i] + (1.0 - rho) * gi * gi
        v[i] = <floating>vi
        if centered:
            ga = rho * gavg[i] + (1.0 - rho) * gi
            gavg[i] = <floating>ga
            vi = vi - ga * ga
        denom = sqrt(vi) + eps
        if use_m:
            buf[i] = <floating>(momentum * buf[i] + gi / denom)
            p[i] = <floating>(p[i] - lr * buf[i])
        else:
            p[i] = <floating>(p[i] - lr * gi / denom)


def adagrad_step(floating[::1] p, floating[::1] g, floating[::1] acc, double lr, double eps,
                 double weight_decay, int n_threads):
    """acc += g^2; p -= lr * g / (sqrt(acc) + eps)."""
    cdef Py_ssize_t i, n = p.shape[0]
    cdef double gi, a
    for i in prange(n, nogil=True, schedule="static", num_threads=threads_for_updates(n, n_threads)):
        gi = g[i] + weight_decay * p[i]
        a = acc[i] + gi * gi
        acc[i] = <floating>a
        p[i] = <floating>(p[i] - lr * gi / (sqrt(a) + eps))


def clip_by_value(floating[::1] g, double c, int n_threads):
    """g := clip(g, -c, c)."""
    cdef Py_ssize_t i, n = g.shape[0]
    for i in prange(n, nogil=True, schedule="static", num_threads=threads_for_updates(n, n_threads)):
        if g[i] > c:
            g[i] = <floating>c
        elif g[i] < -c:
            g[i] = <floating>(-c)


def scale(floating[::1] g, double s, int n_threads):
    """g := s * g."""
    cdef Py_ssize_t i, n = g.shape[0]
    for i in prange(n, nogil=True, schedule="static", num_threads=threads_for_updates(n, n_threads)):
        g[i] = <floating>(g[i] * s)


def sum_of_squares(const floating[::1] g, int n_threads):
    """Return sum(g^2) in double, in an order fixed by n (not by the thread count)."""
    cdef Py_ssize_t n = g.shape[0], c, i, lo, hi
    cdef double part[N_CHUNKS]
    cdef double s, total = 0.0
    for c in prange(N_CHUNKS, nogil=True, schedule="static", num_threads=threads_for_updates(n, n_threads)):
        lo = n * c // N_CHUNKS
        hi = n * (c + 1) // N_CHUNKS
        s = 0.0
        for i in range(lo, hi):
            s = s + <double>g[i] * g[i]
        part[c] = s
    for c in range(N_CHUNKS):
        total += part[c]
    return total


def l1_l2_penalty(const floating[::1] w, floating[::1] g, double l1, double l2, int n_threads):
    """Return l1*sum|w| + l2*sum(w^2); when g is not None add its gradient into g."""
    cdef Py_ssize_t n = w.shape[0], c, i, lo, hi
    cdef double part[N_CHUNKS]
    cdef double s, total = 0.0, wi
    cdef bint want_grad = g is not None
    for c in prange(N_CHUNKS, nogil=True, schedule="static", num_threads=threads_for_updates(n, n_threads)):
        lo = n * c // N_CHUNKS
        hi = n * (c + 1) // N_CHUNKS
        s = 0.0
        for i in range(lo, hi):
            wi = w[i]
            s = s + l1 * fabs(wi) + l2 * wi * wi
            if want_grad:
                g[i] = <floating>(g[i] + l1 * (1.0 if wi > 0 else (-1.0 if wi < 0 else 0.0)) + 2.0 * l2 * wi)
        part[c] = s
    for c in range(N_CHUNKS):
        total += part[c]
    return total
