# OpenMP thread count for cydnn's kernels (set), with serial stand-ins when built without OpenMP
# (core/_omp.h). Python code goes through cydnn.threads, which also pins BLAS; kernels take
# n_threads explicitly and decide their own share through core/_threads.pxd.
cdef extern from "_omp.h":
    int cydnn_omp_enabled()
    void cydnn_omp_set_threads(int n)


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(cydnn_omp_enabled())


def set_threads(int n):
    """omp_set_num_threads(n) (nothing without OpenMP)."""
    cydnn_omp_set_threads(n)
