# OpenMP thread count for cydnn's kernels (get/set), with serial stand-ins when built without OpenMP.
# Python code goes through cydnn.threads, which also pins BLAS; kernels take n_threads explicitly.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int cydnn_openmp_enabled(void) { return 1; }
    static int cydnn_omp_max_threads(void) { return omp_get_max_threads(); }
    static int cydnn_omp_num_procs(void) { return omp_get_num_procs(); }
    static void cydnn_omp_set_threads(int n) { omp_set_num_threads(n); }
    #else
    static int cydnn_openmp_enabled(void) { return 0; }
    static int cydnn_omp_max_threads(void) { return 1; }
    static int cydnn_omp_num_procs(void) { return 1; }
    static void cydnn_omp_set_threads(int n) { (void)n; }
    #endif
    """
    int cydnn_openmp_enabled()
    int cydnn_omp_max_threads()
    int cydnn_omp_num_procs()
    void cydnn_omp_set_threads(int n)


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(cydnn_openmp_enabled())


def num_procs():
    """Processors available to OpenMP (1 in a serial build)."""
    return cydnn_omp_num_procs()


def max_threads():
    return cydnn_omp_max_threads()


def set_threads(int n):
    cydnn_omp_set_threads(n)
