# Embedding lookup: out[i] = W[ids[i]] (a gather) and its gradient dW[v] = sum_{i: ids[i] = v} dy[i]
# (a scatter-add), forward and backward side by side.
#
# The gather is parallel over positions (each output row is written by one thread). The
# scatter-add is parallel over blocks of embedding FEATURES: every thread walks all positions in
# order and adds its own columns, so each dW element is summed in position order whatever the
# thread count, and a skewed id distribution (padding id 0 everywhere) cannot unbalance the
# threads, as splitting the vocabulary rows would.
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset
from _threads cimport block_start, threads_for_elements  # small problems on one thread; same bits either way


def embedding_forward(const int64_t[::1] ids,       # IN  (n,) row indices, trusted in [0, V)
                      const floating[:, ::1] w,     # IN  (V, D) embedding matrix
                      floating[:, ::1] out,         # OUT (n, D)
                      int n_threads):
    """out[i, :] := W[ids[i], :]."""
    cdef Py_ssize_t n = ids.shape[0], d = w.shape[1], i
    cdef size_t row_bytes = d * sizeof(floating)
    if n == 0 or d == 0:
        return
    for i in prange(n, nogil=True, schedule="static", num_threads=threads_for_elements(n * d, n_threads, n)):
        memcpy(&out[i, 0], &w[ids[i], 0], row_bytes)


def embedding_backward(const int64_t[::1] ids,      # IN  (n,) the forward's row indices
                       const floating[:, ::1] dy,   # IN  (n, D) dL/dout
                       floating[:, ::1] dw,         # OUT (V, D) dL/dW
                       bint accumulate, int n_threads):
    """dW (+)= scatter_add(ids, dy): dW[ids[i], :] += dy[i, :] for i = 0, 1, ..., n - 1 in order."""
    cdef Py_ssize_t n = ids.shape[0], v = dw.shape[0], d = dw.shape[1], i, j, r
    cdef int nb, t, c0, c1
    if v == 0 or d == 0:
        return
    if not accumulate:  # zero the whole gradient: rows never looked up get 0
        nb = threads_for_elements(v * d, n_threads, v)
        for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
            c0 = block_start(<int>v, nb, t)
            c1 = block_start(<int>v, nb, t + 1)
            memset(&dw[c0, 0], 0, (c1 - c0) * d * sizeof(floating))
    if n == 0:
        return
    # gradient with respect to the embedding matrix: blocks of >= 8 features per thread (a block
    # narrower than a cache line would have the threads fight over the same lines)
    nb = threads_for_elements(n * d, n_threads, d // 8)
    for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
        c0 = block_start(<int>d, nb, t)
        c1 = block_start(<int>d, nb, t + 1)
        for i in range(n):  # position order: the same sums whatever the thread count
            r = ids[i]
            for j in range(c0, c1):
                dw[r, j] += dy[i, j]
