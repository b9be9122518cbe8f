# Dense (fully connected) layer: y = f(x @ W + b), forward and backward side by side.
#
# One thread pool: each OpenMP thread runs a single-threaded sgemm on its own block of rows and
# applies bias + activation while that block is still in cache (see DESIGN.md, "Two thread pools
# fight"). Reductions over the batch (dW, db) are split over output features, never over rows, so
# every sum runs in the same order whatever the thread count.
from cython cimport floating
from cython.parallel cimport prange
from _blas cimport gemm, block_start, threads_for_work, GEMM_GRAIN
from _activation cimport rows_forward, rows_backward, LINEAR


cdef inline void add_bias_rows(floating* z, const floating* b, Py_ssize_t r0, Py_ssize_t r1,
                               Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t r, j
    for r in range(r0, r1):
        for j in range(n):
            z[r * n + j] += b[j]


def dense_forward(const floating[:, ::1] x,   # IN  (batch, in)
                  const floating[:, ::1] w,   # IN  (in, out)
                  const floating[::1] b,      # IN  (out,) or None
                  floating[:, ::1] z,         # OUT (batch, out) pre-activation
                  floating[:, ::1] y,         # OUT (batch, out) activation; may be z when linear
                  int act, double alpha, int n_threads):
    """z := x @ W + b;  y := f(z)."""
    cdef int m = x.shape[0], k = x.shape[1], n = w.shape[1]
    cdef int nb = threads_for_work(<long long>m * k * n, GEMM_GRAIN, m, n_threads), t, r0, r1
    cdef bint has_bias = b is not None
    if m == 0:
        return
    for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
        r0 = block_start(m, nb, t)
        r1 = block_start(m, nb, t + 1)
        if k > 0:
            gemm(False, False, r1 - r0, n, k, <floating>1, &x[r0, 0], k, &w[0, 0], n,
                 <floating>0, &z[r0, 0], n)
        else:
            zero_rows(&z[0, 0], r0, r1, n)
        if has_bias:
            add_bias_rows(&z[0, 0], &b[0], r0, r1, n)
        rows_forward(act, alpha, &z[0, 0], &y[0, 0], r0, r1, n)


cdef inline void zero_rows(floating* z, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(r0 * n, r1 * n):
        z[j] = 0


def dense_backward(const floating[:, ::1] x,   # IN  (batch, in) the forward input
                   const floating[:, ::1] w,   # IN  (in, out)
                   const floating[:, ::1] z,   # IN  (batch, out) pre-activation
                   const floating[:, ::1] y,   # IN  (batch, out) activation
                   const floating[:, ::1] dy,  # IN  (batch, out) dL/dy
                   floating[:, ::1] dz,        # OUT (batch, out) dL/dz; pass dy itself when act is LINEAR
                   floating[:, ::1] dw,        # OUT (in, out) dL/dW, or None
                   floating[::1] db,           # OUT (out,) dL/db, or None
                   floating[:, ::1] dx,        # OUT (batch, in) dL/dx, or None (first layer)
                   int act, double alpha, bint accumulate, int n_threads):
    """dz := dy * f'(z);  dW (+)= x^T @ dz;  db (+)= sum_rows(dz);  dx := dz @ W^T.

    With ``accumulate`` the weight gradients are added to (shared layers, accumulation steps).
    ``act`` may be LINEAR when the caller already holds dL/dz (fused softmax cross-entropy).
    """
    cdef int m = x.shape[0], k = x.shape[1], n = w.shape[1]
    cdef long long macs = <long long>m * k * n
    cdef int nb = threads_for_work(macs, GEMM_GRAIN, m, n_threads), t, r0, r1, c0, c1, r, j
    cdef bint want_dx = dx is not None, want_dw = dw is not None, want_db = db is not None
    cdef floating beta = 1 if accumulate else 0
    if m == 0:
        return
    # gradient with respect to the pre-activation, then the input: both per block of rows
    for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
        r0 = block_start(m, nb, t)
        r1 = block_start(m, nb, t + 1)
        if act != LINEAR:
            rows_backward(act, alpha, &z[0, 0], &y[0, 0], &dy[0, 0], &dz[0, 0], r0, r1, n)
        if want_dx:
            gemm(False, True, r1 - r0, k, n, <floating>1, &dz[r0, 0], n, &w[0, 0], n,
                 <floating>0, &dx[r0, 0], k)
    # gradient with respect to the weights (split over input features) and the bias (split
    # over output features): each sum over the batch runs in row order in one thread.
    nb = threads_for_work(macs, GEMM_GRAIN, max(k, n), n_threads)
    for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
        if want_dw:
            r0 = block_start(k, nb, t)
            r1 = block_start(k, nb, t + 1)
            gemm(True, False, r1 - r0, n, m, <floating>1, &x[0, r0], k, &dz[0, 0], n,
                 beta, &dw[r0, 0], n)
        if want_db:
            c0 = block_start(n, nb, t)
            c1 = block_start(n, nb, t + 1)
            if not accumulate:
                for j in range(c0, c1):
                    db[j] = 0
            for r in range(m):  # row order: the same sum whatever the thread count
                for j in range(c0, c1):
                    db[j] += dz[r, j]
