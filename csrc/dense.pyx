# Dense (fully connected) layer: y = f(x @ W + b), forward and backward side by side.
#
# One thread pool: each OpenMP thread runs a single-threaded sgemm on its own blocks of rows and
# applies bias + activation while a block is still in cache (see DESIGN.md, "Two thread pools
# fight"). The blocks are fixed by the shape (_threads.fixed_blocks), not by the thread count, and
# reductions over the batch (dW, db) are split over features, never over rows, so results are
# bit-for-bit the same whatever the thread count.
from cython cimport floating
from cython.parallel cimport prange
from _blas cimport gemm
from _threads cimport (block_start, threads_for_work, fixed_blocks, GEMM_GRAIN, ELEMENT_GRAIN,
                       GEMM_ROW_BLOCK, GEMM_COL_BLOCK)
from _activation cimport rows_forward, rows_backward, LINEAR, SOFTMAX


cdef inline void bias_act_cols(int act, double alpha, floating* z, floating* y, const floating* b,
                               Py_ssize_t m, Py_ssize_t n, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """Columns c0:c1 of every row: z += b; y := f(z) (elementwise activations only)."""
    cdef Py_ssize_t r, j
    for r in range(m):
        if b != NULL:
            for j in range(c0, c1):
                z[r * n + j] += b[j]
        rows_forward(act, alpha, z + r * n + c0, y + r * n + c0, 0, 1, c1 - c0)


def dense_forward(const floating[:, ::1] x,   # IN  (batch, in)
                  const floating[:, ::1] w,   # IN  (in, out)
                  const floating[::1] b,      # IN  (out,) or None
                  floating[:, ::1] z,         # OUT (batch, out) pre-activation
                  floating[:, ::1] y,         # OUT (batch, out) activation; may be z when linear
                  int act, double alpha, int n_threads):
    """z := x @ W + b;  y := f(z).

    Split over output features: each GEMM call packs only its columns of W (splitting the rows
    of x instead made every call re-pack all of W: 14% slower at one thread)."""
    cdef int m = x.shape[0], k = x.shape[1], n = w.shape[1]
    cdef int nb = fixed_blocks(n, GEMM_COL_BLOCK), t, c0, c1
    cdef int nt = threads_for_work(<long long>m * k * n, GEMM_GRAIN, nb, n_threads)
    cdef const floating* bias = &b[0] if b is not None else NULL
    cdef bint rowwise = act == SOFTMAX
    if m == 0:
        return
    for t in prange(nb, nogil=True, schedule="static", num_threads=nt):
        c0 = block_start(n, nb, t)
        c1 = block_start(n, nb, t + 1)
        if k > 0:
            gemm(False, False, m, c1 - c0, k, <floating>1, &x[0, 0], k, &w[0, c0], n,
                 <floating>0, &z[0, c0], n)
        else:
            zero_cols(&z[0, 0], m, n, c0, c1)
        bias_act_cols(LINEAR if rowwise else act, alpha, &z[0, 0], &y[0, 0], bias, m, n, c0, c1)
    if rowwise:  # softmax needs whole rows
        nb = fixed_blocks(m, GEMM_ROW_BLOCK)
        for t in prange(nb, nogil=True, schedule="static",
                        num_threads=threads_for_work(<long long>m * n, ELEMENT_GRAIN, nb, n_threads)):
            rows_forward(act, alpha, &z[0, 0], &y[0, 0], block_start(m, nb, t), block_start(m, nb, t + 1), n)


cdef inline void zero_cols(floating* z, Py_ssize_t m, Py_ssize_t n, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    cdef Py_ssize_t r, j
    for r in range(m):
        for j in range(c0, c1):
            z[r * n + j] = 0


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
    cdef int nb, nt, t, c0, c1, r, j
    cdef bint want_dx = dx is not None, want_dw = dw is not None, want_db = db is not None
    cdef floating beta = 1 if accumulate else 0
    if m == 0:
        return
    # gradient with respect to the pre-activation, per block of rows
    if act != LINEAR:
        nb = fixed_blocks(m, GEMM_ROW_BLOCK)
        for t in prange(nb, nogil=True, schedule="static",
                        num_threads=threads_for_work(<long long>m * n, ELEMENT_GRAIN, nb, n_threads)):
            rows_backward(act, alpha, &z[0, 0], &y[0, 0], &dy[0, 0], &dz[0, 0],
                          block_start(m, nb, t), block_start(m, nb, t + 1), n)
    # gradient with respect to the input, per block of input features (columns of dx, rows of W)
    if want_dx:
        nb = fixed_blocks(k, GEMM_COL_BLOCK)
        nt = threads_for_work(macs, GEMM_GRAIN, nb, n_threads)
        for t in prange(nb, nogil=True, schedule="static", num_threads=nt):
            c0 = block_start(k, nb, t)
            c1 = block_start(k, nb, t + 1)
            gemm(False, True, m, c1 - c0, n, <floating>1, &dz[0, 0], n, &w[c0, 0], n,
                 <floating>0, &dx[0, c0], k)
    # gradient with respect to the weights and the bias, per block of output features: each
    # sum over the batch runs in row order in one thread.
    nb = fixed_blocks(n, GEMM_COL_BLOCK)
    nt = threads_for_work(macs, GEMM_GRAIN, nb, n_threads)
    for t in prange(nb, nogil=True, schedule="static", num_threads=nt):
        c0 = block_start(n, nb, t)
        c1 = block_start(n, nb, t + 1)
        if want_dw:
            gemm(True, False, k, c1 - c0, m, <floating>1, &x[0, 0], k, &dz[0, c0], n,
                 beta, &dw[0, c0], n)
        if want_db:
            if not accumulate:
                for j in range(c0, c1):
                    db[j] = 0
            for r in range(m):  # row order: the same sum whatever the thread count
                for j in range(c0, c1):
                    db[j] += dz[r, j]
