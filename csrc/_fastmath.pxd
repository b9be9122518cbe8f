# Vectorizable float32 exp / tanh / sigmoid (csrc/_fastmath.h), for kernels' float32 paths.
cdef extern from "_fastmath.h":
    float fast_expf "cydnn_fast_expf"(float x) noexcept nogil
    float fast_tanhf "cydnn_fast_tanhf"(float x) noexcept nogil
    float fast_sigmoidf "cydnn_fast_sigmoidf"(float x) noexcept nogil
