# The one place cydnn calls BLAS. Row-major GEMM over SciPy's Fortran (column-major) BLAS.
#
# Row-major C (m x n) = op(A) (m x k) @ op(B) (k x n) is column-major C^T = op(B)^T @ op(A)^T,
# so we call ?gemm with the operands swapped and m/n exchanged; the leading dimensions are the
# row strides of the row-major arrays. BLAS threads are pinned to 1 by cydnn.threads: kernels
# call gemm from inside their own OpenMP blocks, and one thread pool is all we ever run.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,   # IN  A (m x k, or k x m if trans_a)
                      const floating* b, int ldb,                   # IN  B (k x n, or n x k if trans_b)
                      floating beta, floating* c, int ldc           # OUT C (m x n)
                      ) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C, all row-major."""
    cdef char ta = b"T" if trans_a else b"N"
    cdef char tb = b"T" if trans_b else b"N"
    if m <= 0 or n <= 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)


cdef inline int block_start(int n, int n_blocks, int i) noexcept nogil:
    """First index of block i when n items are split into n_blocks near-equal contiguous blocks."""
    return <int>((<long long>n * i) // n_blocks)


cdef inline int threads_for_work(long long work, long long grain, int max_blocks, int n_threads) noexcept nogil:
    """How many threads a kernel should use: at most one per ``grain`` units of work (and per
    block), so small problems stay on one thread instead of paying OpenMP's wake-up and barrier
    costs (tens of microseconds when another process holds a core)."""
    cdef long long t = work // grain
    if t > n_threads:
        t = n_threads
    if t > max_blocks:
        t = max_blocks
    return <int>t if t > 1 else 1


cdef enum:
    GEMM_GRAIN = 1 << 20   # multiply-adds per thread, at least (~10 us of sgemm)
    ELEMENT_GRAIN = 1 << 15  # elementwise operations per thread, at least


cdef inline void gemv(bint trans_a, int m, int n, floating alpha,
                      const floating* a, int lda,                   # IN  A (m x n), row-major
                      const floating* x,                            # IN  x (n, or m if trans_a)
                      floating beta, floating* y                    # OUT y (m, or n if trans_a)
                      ) noexcept nogil:
    """y := alpha * op(A) @ x + beta * y, A row-major (unit strides for x and y).

    A row-major (m x n) is column-major (n x m), so op(A) = A is ?gemv 'T' and A^T is 'N'. For a
    single row, a gemm packs its whole right operand on every call; this does not.
    """
    cdef char t = b"N" if trans_a else b"T"
    cdef int one = 1
    if m <= 0 or n <= 0:
        return
    if floating is float:
        sgemv(&t, &n, &m, &alpha, <float*>a, &lda, <float*>x, &one, &beta, y, &one)
    else:
        dgemv(&t, &n, &m, &alpha, <double*>a, &lda, <double*>x, &one, &beta, y, &one)


cdef inline int fixed_blocks(int n, int target) noexcept nogil:
    """How many near-equal blocks (of about ``target`` rows) to cut n rows into: a function of
    the shape alone, never of the thread count. OpenBLAS rounds a row differently depending on
    where it sits in a call (its kernels work in tiles, edge tiles differently), so a kernel
    that cut its GEMM per thread gave results that changed with the thread count. With blocks
    fixed by the shape, every row goes through the same call whatever the threads; threads take
    whole blocks. Blocks stay large: each call re-packs the other operand, so a GEMM is split
    along the operand that is cheaper to re-pack (see dense.pyx)."""
    cdef int b = n // target
    return b if b > 1 else 1


cdef enum:
    GEMM_ROW_BLOCK = 64    # rows per block in row-wise passes (activations, softmax)
    GEMM_COL_BLOCK = 256   # features per GEMM call (columns of y and dx, rows of dW)
