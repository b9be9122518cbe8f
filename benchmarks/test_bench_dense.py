"""Kernel micro-benchmarks for the dense path (pytest-benchmark; not part of the test suite).

    pytest benchmarks/test_bench_dense.py --benchmark-group-by=param:threads

The fused dense forward (GEMM + bias + ReLU) is compared with the BLAS's own sgemm on the same
shape at one thread, the bound it should reach (target: 90% of the BLAS's throughput).
"""
import numpy as np
import pytest
import scipy.linalg.blas as blas

import cydnn
from cydnn._kernels import dense as dense_k

M, K, N = 128, 784, 512


@pytest.fixture
def operands():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((K, N)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    return x, w, b, np.empty((M, N), np.float32)


def test_blas_sgemm_reference(benchmark, operands):
    """SciPy's OpenBLAS sgemm, one thread (cydnn pins it), row-major via the transposed call."""
    x, w, _, _ = operands
    wt, xt = w.T, x.T  # Fortran-ordered views: C^T = W^T X^T without copies
    benchmark(lambda: blas.sgemm(1.0, wt, xt))


@pytest.mark.parametrize("threads", [1, 2])
def test_dense_forward_relu(benchmark, operands, threads):
    x, w, b, z = operands
    cydnn.set_num_threads(threads)
    benchmark(lambda: dense_k.dense_forward(x, w, b, z, z, 6, 0.0, threads))


@pytest.mark.parametrize("threads", [1, 2])
def test_dense_backward_relu(benchmark, operands, threads):
    x, w, b, z = operands
    dense_k.dense_forward(x, w, b, z, z, 6, 0.0, threads)
    dy = np.random.default_rng(1).standard_normal((M, N)).astype(np.float32)
    dz, dw, db, dx = np.empty_like(dy), np.empty_like(w), np.empty_like(b), np.empty_like(x)
    benchmark(lambda: dense_k.dense_backward(x, w, z, z, dy, dz, dw, db, dx, 6, 0.0, False, threads))
