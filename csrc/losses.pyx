# Losses, value and gradient in one pass, numerically stable.
#
# Per-sample losses are computed in parallel into row_loss, then summed serially in row order,
# so the result does not depend on the thread count. The reported loss is
# sum_i(w_i * l_i) / batch (Keras' "sum over batch size"); the gradient is that of this value.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, log, log1p, fabs
from _activation cimport sigmoid
from _threads cimport block_start, threads_for_work, ELEMENT_GRAIN

# the loss codes, defined here only (cydnn/losses.py imports them)
cpdef enum:
    MSE = 0
    SSE = 1
    MAE = 2
    HUBER = 3
    BCE = 4             # binary cross-entropy from probabilities
    BCE_LOGITS = 5
    CCE = 6             # categorical cross-entropy from probabilities
    CCE_LOGITS = 7      # ... from logits (fused softmax)

cdef double PROB_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps], as Keras does


cdef inline double clip_prob(double q, double* inside) noexcept nogil:
    """q clipped to [eps, 1 - eps]; inside := 1 where no clip applies, 0 where one does (the
    derivative of the clip, as autodiff through it gives)."""
    inside[0] = 1.0
    if q < PROB_EPS:
        inside[0] = 0.0
        return PROB_EPS
    if q > 1.0 - PROB_EPS:
        inside[0] = 0.0
        return 1.0 - PROB_EPS
    return q


cdef inline double row_dense(int code, double delta, const floating* t, const floating* p,
                             floating* g, Py_ssize_t n, double scale) noexcept nogil:
    """Loss of one sample; writes scale * dloss/dp into g when g is not NULL."""
    cdef Py_ssize_t j
    cdef double loss = 0.0, e, q, m, s, tsum
    cdef double inv_n = 1.0 / n
    if code == MSE or code == SSE:
        for j in range(n):
            e = p[j] - t[j]
            loss += e * e
            if g != NULL:
                g[j] = <floating>(scale * (2.0 * e * inv_n if code == MSE else e))
        return loss * inv_n if code == MSE else 0.5 * loss
    elif code == MAE:
        for j in range(n):
            e = p[j] - t[j]
            loss += fabs(e)
            if g != NULL:
                g[j] = <floating>(scale * inv_n * (1.0 if e > 0 else (-1.0 if e < 0 else 0.0)))
        return loss * inv_n
    elif code == HUBER:
        for j in range(n):
            e = p[j] - t[j]
            if fabs(e) <= delta:
                loss += 0.5 * e * e
            else:
                loss += delta * (fabs(e) - 0.5 * delta)
                e = delta if e > 0 else -delta
            if g != NULL:
                g[j] = <floating>(scale * inv_n * e)
        return loss * inv_n
    elif code == BCE:
        for j in range(n):
            q = clip_prob(p[j], &e)
            loss -= t[j] * log(q) + (1.0 - t[j]) * log(1.0 - q)
            if g != NULL:
                g[j] = <floating>(scale * inv_n * e * (-t[j] / q + (1.0 - t[j]) / (1.0 - q)))
        return loss * inv_n
    elif code == BCE_LOGITS:
        for j in range(n):
            q = p[j]
            loss += (q if q > 0 else 0.0) - q * t[j] + log1p(exp(-fabs(q)))
            if g != NULL:
                g[j] = <floating>(scale * inv_n * (sigmoid(q) - t[j]))
        return loss * inv_n
    elif code == CCE:
        for j in range(n):
            q = clip_prob(p[j], &e)
            loss -= t[j] * log(q)
            if g != NULL:
                g[j] = <floating>(-scale * e * t[j] / q)
        return loss
    elif code == CCE_LOGITS:
        # loss = sum(t) * logsumexp(p) - <t, p>;  grad = sum(t) * softmax(p) - t
        m = p[0]
        for j in range(1, n):
            if p[j] > m:
                m = p[j]
        s = 0.0
        tsum = 0.0
        for j in range(n):
            s += exp(p[j] - m)
            tsum += t[j]
            loss -= t[j] * (p[j] - m)
        loss += tsum * log(s)
        if g != NULL:
            for j in range(n):
                g[j] = <floating>(scale * (tsum * exp(p[j] - m) / s - t[j]))
        return loss
    return 0.0


def loss_dense(int code, double delta,
               const floating[:, ::1] y_true,       # IN  (batch, n) targets
               const floating[:, ::1] y_pred,       # IN  (batch, n) predictions (or logits)
               const floating[::1] sample_weight,   # IN  (batch,) or None
               floating[:, ::1] grad,               # OUT (batch, n) dloss/dy_pred, or None
               double[::1] row_loss,                # OUT (batch,) weighted per-sample losses
               int n_threads):
    """Return sum_i(w_i * loss_i) / batch and write its gradient; dense (one-hot/real) targets."""
    cdef Py_ssize_t m = y_pred.shape[0], n = y_pred.shape[1], i
    cdef int nb = threads_for_work(m * n, ELEMENT_GRAIN, <int>m, n_threads), t
    cdef bint want_grad = grad is not None, weighted = sample_weight is not None
    cdef double w, total = 0.0
    if m == 0:
        return 0.0
    for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
        for i in range(block_start(<int>m, nb, t), block_start(<int>m, nb, t + 1)):
            w = sample_weight[i] if weighted else 1.0
            row_loss[i] = w * row_dense(code, delta, &y_true[i, 0], &y_pred[i, 0],
                                        &grad[i, 0] if want_grad else NULL, n, w / m)
    for i in range(m):
        total += row_loss[i]
    return total / m


def loss_sparse(int code,
                const Py_ssize_t[::1] labels,        # IN  (batch,) class indices, checked in range
                const floating[:, ::1] y_pred,       # IN  (batch, classes) probabilities or logits
                const floating[::1] sample_weight,   # IN  (batch,) or None
                floating[:, ::1] grad,               # OUT (batch, classes) or None
                double[::1] row_loss,                # OUT (batch,)
                int n_threads):
    """Sparse categorical cross-entropy (code CCE or CCE_LOGITS) with integer labels."""
    cdef Py_ssize_t m = y_pred.shape[0], n = y_pred.shape[1], i, j, c
    cdef int nb = threads_for_work(m * n, ELEMENT_GRAIN, <int>m, n_threads), t
    cdef bint want_grad = grad is not None, weighted = sample_weight is not None
    cdef bint logits = code == CCE_LOGITS
    cdef double w, total = 0.0, mx, s, q, e, scale
    if m == 0:
        return 0.0
    for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
        for i in range(block_start(<int>m, nb, t), block_start(<int>m, nb, t + 1)):
            w = sample_weight[i] if weighted else 1.0
            scale = w / m
            c = labels[i]
            if logits:
                mx = y_pred[i, 0]
                for j in range(1, n):
                    if y_pred[i, j] > mx:
                        mx = y_pred[i, j]
                s = 0.0
                for j in range(n):
                    s = s + exp(y_pred[i, j] - mx)
                row_loss[i] = w * (log(s) - (y_pred[i, c] - mx))
                if want_grad:
                    for j in range(n):
                        grad[i, j] = <floating>(scale * exp(y_pred[i, j] - mx) / s)
                    grad[i, c] = <floating>(grad[i, c] - scale)
            else:
                q = clip_prob(y_pred[i, c], &e)
                row_loss[i] = -w * log(q)
                if want_grad:
                    for j in range(n):
                        grad[i, j] = 0
                    grad[i, c] = <floating>(-scale * e / q)
    for i in range(m):
        total += row_loss[i]
    return total / m
