"""The one thread knob: OpenMP threads for cydnn's kernels, BLAS pinned to one thread.

cydnn runs a single thread pool, OpenMP's. Each kernel splits its work into blocks and every
OpenMP thread calls a single-threaded BLAS on its own block. Letting SciPy's OpenBLAS start its
own pthreads next to OpenMP's workers measured 5x slower on 2 cores (see DESIGN.md), so at import
the OpenBLAS that SciPy ships is limited to one thread. NumPy's own BLAS is left alone.
"""
import os

from ._kernels import _parallel

__all__ = ["set_num_threads", "get_num_threads", "openmp_enabled"]


def _default_threads():
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _pin_scipy_blas():
    """Limit the BLAS behind scipy.linalg.cython_blas to one thread (threadpoolctl)."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's OpenBLAS so it can be found)
    from threadpoolctl import ThreadpoolController

    controllers = [c for c in ThreadpoolController().lib_controllers
                   if c.user_api == "blas" and "scipy" in os.path.basename(os.path.dirname(c.filepath))]
    if not controllers:  # SciPy linked to a system BLAS: pin every BLAS rather than oversubscribe
        controllers = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    for c in controllers:
        c.set_num_threads(1)


_pin_scipy_blas()
_num_threads = 1 if not _parallel.openmp_enabled() else _default_threads()
_parallel.set_threads(_num_threads)


def set_num_threads(n):
    """Use ``n`` threads in every cydnn kernel (OpenMP); BLAS stays single-threaded inside them."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, received n={n!r}")
    _num_threads = n if _parallel.openmp_enabled() else 1
    _parallel.set_threads(_num_threads)


def get_num_threads():
    """Threads the kernels use (1 when cydnn was built without OpenMP)."""
    return _num_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return _parallel.openmp_enabled()
