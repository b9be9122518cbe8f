# core/_blas.pxd: the one place cydnn calls BLAS (row-major GEMM over SciPy's Fortran BLAS), and
# nothing else; how many threads call it, and on which rows, is core/_threads.pxd's business.
#
# Row-major C (m x n) = op(A) (m x k) @ op(B) (k x n) is column-major C^T = op(B)^T @ op(A)^T,
# so we call ?gemm with the operands swapped and m/n exchanged; the leading dimensions are the
# row strides of the row-major arrays. BLAS threads are pinned to 1 by cydnn.threads: kernels
# call gemm from inside their own OpenMP blocks, and one thread pool is all we ever run.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


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
