# Elementwise activations (and row-wise softmax), forward and backward, over 2-D row-major views.
# The math lives in _activation.pxd; this module only splits rows across OpenMP threads.
from cython cimport floating
from cython.parallel cimport prange
from _activation cimport *
from _threads cimport block_start, threads_for_work, ELEMENT_GRAIN

# The activation codes by Keras name, for cydnn/activations.py: the numbers are _activation.pxd's
# enum, written nowhere else.
CODES = {
    "linear": LINEAR, "heaviside": HEAVISIDE, "sign": SIGN, "sigmoid": SIGMOID, "tanh": TANH,
    "arctan": ARCTAN, "relu": RELU, "leaky_relu": LEAKY_RELU, "elu": ELU, "softplus": SOFTPLUS,
    "gelu": GELU, "swish": SWISH, "selu": SELU, "softsign": SOFTSIGN, "relu6": RELU6,
    "hard_sigmoid": HARD_SIGMOID, "exponential": EXPONENTIAL, "softmax": SOFTMAX,
}


def activation_forward(int code, double alpha,
                       const floating[:, ::1] z,  # IN  pre-activation (rows, n)
                       floating[:, ::1] y,        # OUT f(z), may be z itself
                       int n_threads):
    """y := f(z)."""
    cdef int rows = z.shape[0], n = z.shape[1], t
    cdef int nb = threads_for_work(<long long>rows * n, ELEMENT_GRAIN, rows, n_threads)
    if rows == 0:
        return
    for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
        rows_forward(code, alpha, &z[0, 0], &y[0, 0], block_start(rows, nb, t), block_start(rows, nb, t + 1), n)


def activation_backward(int code, double alpha,
                        const floating[:, ::1] z,   # IN  pre-activation
                        const floating[:, ::1] y,   # IN  f(z)
                        const floating[:, ::1] dy,  # IN  dL/dy
                        floating[:, ::1] dz,        # OUT dL/dz, may be dy itself
                        int n_threads):
    """dz := dy * f'(z) (softmax: the row-wise Jacobian-vector product)."""
    cdef int rows = z.shape[0], n = z.shape[1], t
    cdef int nb = threads_for_work(<long long>rows * n, ELEMENT_GRAIN, rows, n_threads)
    if rows == 0:
        return
    for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
        rows_backward(code, alpha, &z[0, 0], &y[0, 0], &dy[0, 0], &dz[0, 0],
                      block_start(rows, nb, t), block_start(rows, nb, t + 1), n)
