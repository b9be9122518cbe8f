# Activation math, the one place it is written: scalar forward f(z) and derivative f'(z) given
# z and y = f(z), plus row-block helpers (softmax is row-wise). Cimported by activations.pyx
# (standalone Activation layers) and dense.pyx (bias + activation fused after the GEMM).
# The codes are defined here only: activations.pyx exports them by name (CODES) to cydnn/activations.py.
from cython cimport floating
from libc.math cimport exp, log1p, tanh, atan, erf, fabs, sqrt
from _fastmath cimport fast_expf, fast_tanhf, fast_sigmoidf

cdef enum:
    LINEAR = 0
    HEAVISIDE = 1
    SIGN = 2
    SIGMOID = 3
    TANH = 4
    ARCTAN = 5
    RELU = 6
    LEAKY_RELU = 7
    ELU = 8
    SOFTPLUS = 9
    GELU = 10
    SWISH = 11
    SELU = 12
    SOFTSIGN = 13
    RELU6 = 14
    HARD_SIGMOID = 15
    EXPONENTIAL = 16
    SOFTMAX = 100

# constants as C macros: a .pxd holding module-level variables would need a runtime module
cdef extern from *:
    """
    #define CYDNN_SELU_ALPHA 1.6732632423543772848170429916717
    #define CYDNN_SELU_SCALE 1.0507009873554804934193349852946
    #define CYDNN_INV_SQRT2 0.70710678118654752440
    #define CYDNN_INV_SQRT_2PI 0.39894228040143267794
    """
    double SELU_ALPHA "CYDNN_SELU_ALPHA"
    double SELU_SCALE "CYDNN_SELU_SCALE"
    double INV_SQRT2 "CYDNN_INV_SQRT2"
    double INV_SQRT_2PI "CYDNN_INV_SQRT_2PI"


cdef inline double sigmoid(double z) noexcept nogil:
    # two branches so exp never overflows
    cdef double e
    if z >= 0:
        return 1.0 / (1.0 + exp(-z))
    e = exp(z)
    return e / (1.0 + e)


cdef inline double act_forward(int code, double alpha, double z) noexcept nogil:
    """y = f(z) for an elementwise activation."""
    if code == RELU:
        return z if z > 0 else 0.0
    elif code == LINEAR:
        return z
    elif code == SIGMOID:
        return sigmoid(z)
    elif code == TANH:
        return tanh(z)
    elif code == HEAVISIDE:
        return 1.0 if z >= 0 else 0.0
    elif code == SIGN:
        return 1.0 if z > 0 else (-1.0 if z < 0 else 0.0)
    elif code == ARCTAN:
        return atan(z)
    elif code == LEAKY_RELU:
        return z if z > 0 else alpha * z
    elif code == ELU:
        return z if z > 0 else alpha * (exp(z) - 1.0)
    elif code == SOFTPLUS:
        # log(1 + e^z) = max(z, 0) + log1p(e^-|z|), stable for large |z|
        return (z if z > 0 else 0.0) + log1p(exp(-fabs(z)))
    elif code == GELU:
        return 0.5 * z * (1.0 + erf(z * INV_SQRT2))
    elif code == SWISH:
        return z * sigmoid(z)
    elif code == SELU:
        return SELU_SCALE * (z if z > 0 else SELU_ALPHA * (exp(z) - 1.0))
    elif code == SOFTSIGN:
        return z / (1.0 + fabs(z))
    elif code == RELU6:
        return 0.0 if z < 0 else (6.0 if z > 6 else z)
    elif code == HARD_SIGMOID:
        return 0.0 if z < -3 else (1.0 if z > 3 else z / 6.0 + 0.5)
    elif code == EXPONENTIAL:
        return exp(z)
    return z


cdef inline double act_derivative(int code, double alpha, double z, double y) noexcept nogil:
    """f'(z), using y = f(z) where that is cheaper."""
    cdef double s
    if code == RELU:
        return 1.0 if z > 0 else 0.0
    elif code == LINEAR:
        return 1.0
    elif code == SIGMOID:
        return y * (1.0 - y)
    elif code == TANH:
        return 1.0 - y * y
    elif code == HEAVISIDE or code == SIGN:
        return 0.0  # piecewise constant: zero almost everywhere
    elif code == ARCTAN:
        return 1.0 / (1.0 + z * z)
    elif code == LEAKY_RELU:
        return 1.0 if z > 0 else alpha
    elif code == ELU:
        return 1.0 if z > 0 else y + alpha
    elif code == SOFTPLUS:
        return sigmoid(z)
    elif code == GELU:
        return 0.5 * (1.0 + erf(z * INV_SQRT2)) + z * INV_SQRT_2PI * exp(-0.5 * z * z)
    elif code == SWISH:
        s = sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    elif code == SELU:
        return SELU_SCALE if z > 0 else y + SELU_SCALE * SELU_ALPHA
    elif code == SOFTSIGN:
        s = 1.0 + fabs(z)
        return 1.0 / (s * s)
    elif code == RELU6:
        return 1.0 if (z > 0 and z < 6) else 0.0
    elif code == HARD_SIGMOID:
        return 1.0 / 6.0 if (z > -3 and z < 3) else 0.0
    elif code == EXPONENTIAL:
        return y
    return 1.0


cdef inline void rows_forward(int code, double alpha, const floating* z, floating* y,
                              Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n) noexcept nogil:
    """y[r0:r1, :] = f(z[r0:r1, :]) for rows of length n (softmax is taken per row)."""
    cdef Py_ssize_t r, j, e = r1 * n
    cdef double m, s
    cdef const floating* zr
    cdef floating* yr
    if code == SOFTMAX:
        for r in range(r0, r1):
            zr = z + r * n
            yr = y + r * n
            m = zr[0]
            for j in range(1, n):
                if zr[j] > m:
                    m = zr[j]
            for j in range(n):  # exp in its own loop, so the float32 one vectorizes
                if floating is float:
                    yr[j] = fast_expf(<float>(zr[j] - m))
                else:
                    yr[j] = exp(zr[j] - m)
            s = 0.0
            for j in range(n):
                s = s + yr[j]
            s = 1.0 / s
            for j in range(n):
                yr[j] = <floating>(yr[j] * s)
    elif code == RELU:
        for j in range(r0 * n, e):
            y[j] = z[j] if z[j] > 0 else 0
    elif code == LINEAR:
        if y != z:
            for j in range(r0 * n, e):
                y[j] = z[j]
    elif floating is float and code == TANH:
        # float32: vectorizable approximations (csrc/_fastmath.h); libm's, one element at a
        # time, made Dense(tanh) 17x slower than a linear Dense
        for j in range(r0 * n, e):
            y[j] = fast_tanhf(z[j])
    elif floating is float and code == SIGMOID:
        for j in range(r0 * n, e):
            y[j] = fast_sigmoidf(z[j])
    elif floating is float and code == SWISH:
        for j in range(r0 * n, e):
            y[j] = z[j] * fast_sigmoidf(z[j])
    else:
        for j in range(r0 * n, e):
            y[j] = <floating>act_forward(code, alpha, z[j])


cdef inline void rows_backward(int code, double alpha, const floating* z, const floating* y,
                               const floating* dy, floating* dz,
                               Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n) noexcept nogil:
    """dz[r0:r1, :] = dy * f'(z) (softmax: dz = y * (dy - <dy, y>) per row). dz may alias dy."""
    cdef Py_ssize_t r, j, e = r1 * n
    cdef double dot
    cdef floating g
    if code == SOFTMAX:
        for r in range(r0, r1):
            dot = 0.0
            for j in range(r * n, (r + 1) * n):
                dot = dot + dy[j] * y[j]
            for j in range(r * n, (r + 1) * n):
                dz[j] = <floating>(y[j] * (dy[j] - dot))
    elif code == RELU:
        # dy[j] read unconditionally: a branch-free select the compiler vectorises (the
        # conditional read compiled to a branch, mispredicted half the time on real data)
        for j in range(r0 * n, e):
            g = dy[j]
            dz[j] = g if z[j] > 0 else 0
    elif code == LINEAR:
        if dz != dy:
            for j in range(r0 * n, e):
                dz[j] = dy[j]
    elif code == TANH:
        for j in range(r0 * n, e):
            dz[j] = dy[j] * (1 - y[j] * y[j])
    elif code == SIGMOID:
        for j in range(r0 * n, e):
            dz[j] = dy[j] * y[j] * (1 - y[j])
    elif floating is float and code == SWISH:
        for j in range(r0 * n, e):
            dz[j] = dy[j] * (fast_sigmoidf(z[j]) * (1 + z[j] * (1 - fast_sigmoidf(z[j]))))
    else:
        for j in range(r0 * n, e):
            dz[j] = <floating>(dy[j] * act_derivative(code, alpha, z[j], y[j]))
