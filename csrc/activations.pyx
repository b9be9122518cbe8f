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


cdef void rows_split(int code, double alpha,
                     const floating* z,   # IN  pre-activation (rows, n)
                     const floating* y,   # IN  f(z) (backward only, else NULL)
                     const floating* dy,  # IN  dL/dy (backward only, else NULL)
                     floating* out,       # OUT forward: f(z), may be z; backward: dL/dz, may be dy
                     int rows, int n, int n_threads, bint backward) noexcept nogil:
    """out := f(z) (forward) or dy * f'(z) (backward), blocks of rows split across threads."""
    cdef int nb = threads_for_work(<long long>rows * n, ELEMENT_GRAIN, rows, n_threads)
    cdef int t
    for t in prange(nb, schedule="static", num_threads=nb):
        if backward:
            rows_backward(code, alpha, z, y, dy, out, block_start(rows, nb, t),
                          block_start(rows, nb, t + 1), n)
        else:
            rows_forward(code, alpha, z, out, block_start(rows, nb, t), block_start(rows, nb, t + 1), n)


def activation_forward(int code, double alpha,
                       const floating[:, ::1] z,  # IN  pre-activation (rows, n)
                       floating[:, ::1] y,        # OUT f(z), may be z itself
                       int n_threads):
    """y := f(z)."""
    if z.shape[0] > 0:
        rows_split(code, alpha, &z[0, 0], NULL, NULL, &y[0, 0], z.shape[0], z.shape[1], n_threads, False)


def activation_backward(int code, double alpha,
                        const floating[:, ::1] z,   # IN  pre-activation
                        const floating[:, ::1] y,   # IN  f(z)
                        const floating[:, ::1] dy,  # IN  dL/dy
                        floating[:, ::1] dz,        # OUT dL/dz, may be dy itself
                        int n_threads):
    """dz := dy * f'(z) (softmax: the row-wise Jacobian-vector product)."""
    if z.shape[0] > 0:
        rows_split(code, alpha, &z[0, 0], &y[0, 0], &dy[0, 0], &dz[0, 0], z.shape[0], z.shape[1],
                   n_threads, True)
