"""The one thread knob: set_num_threads/get_num_threads, results that do not depend on the thread
count (bit for bit), and SciPy's BLAS pinned to one thread so OpenMP's pool is the only one."""
import os
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import cydnn
from helpers import subprocess_env
from cydnn import layers, optimizers


def test_set_and_get():
    cydnn.set_num_threads(1)
    assert cydnn.get_num_threads() == 1
    cydnn.set_num_threads(2)
    assert cydnn.get_num_threads() == (2 if cydnn.openmp_enabled() else 1)


def test_this_build_has_openmp():
    assert cydnn.openmp_enabled(), "the kernels were built without OpenMP: every kernel runs on one core"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_invalid_thread_counts_are_rejected(bad):
    before = cydnn.get_num_threads()
    with pytest.raises(ValueError, match=r"set_num_threads: expected a positive int, received n="):
        cydnn.set_num_threads(bad)
    assert cydnn.get_num_threads() == before


def _train(n_threads, dtype="float32"):
    """A few steps of an MLP big enough that every kernel splits its work (dense rows, loss rows,
    optimizer and clipnorm over > 16384 parameters)."""
    cydnn.set_num_threads(n_threads)
    cydnn.set_floatx(dtype)
    cydnn.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((250, 64))
    y = rng.integers(0, 10, 250)
    model = cydnn.Sequential([layers.Dense(256, activation="relu", input_shape=(64,)),
                              layers.Dense(32, activation="gelu"), layers.Dropout(0.1),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(1e-3, clipnorm=1.0), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=50, epochs=2, verbose=0)
    return model.get_weights(), model.predict(x, batch_size=125), hist.history["loss"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_is_identical_at_one_and_two_threads(dtype):
    w1, p1, l1 = _train(1, dtype)
    w2, p2, l2 = _train(2, dtype)
    assert l1 == l2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(p1, p2)
    assert sum(w.size for w in w1) > 16384


def test_kernels_at_one_and_two_threads_on_odd_sizes():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 13)).astype(np.float32)
    results = []
    for n in (1, 2):
        cydnn.set_num_threads(n)
        cydnn.set_random_seed(3)
        layer = layers.Dense(5, activation="softmax")
        y = layer(x)
        layer.forward(x, training=True)
        dx = layer.backward(np.ones_like(y))
        loss = cydnn.losses.CategoricalCrossentropy(from_logits=True)(np.eye(5)[np.arange(7) % 5], y)
        results.append((y, dx, [g.copy() for g in layer.grads], loss))
    (y1, dx1, g1, l1), (y2, dx2, g2, l2) = results
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a, b)
    assert l1 == l2


def _scipy_blas_threads():
    import scipy.linalg.cython_blas  # noqa: F401  (make sure SciPy's BLAS is loaded)
    infos = [i for i in threadpool_info() if i["user_api"] == "blas"
             and "scipy" in os.path.basename(os.path.dirname(i["filepath"]))]
    if not infos:  # SciPy linked to a system BLAS: cydnn pins every BLAS then
        infos = [i for i in threadpool_info() if i["user_api"] == "blas"]
    return [i["num_threads"] for i in infos]


def test_scipy_blas_is_pinned_to_one_thread():
    threads = _scipy_blas_threads()
    assert threads and all(n == 1 for n in threads), threads
    cydnn.set_num_threads(2)  # the knob moves OpenMP only
    assert all(n == 1 for n in _scipy_blas_threads())


def _in_subprocess(code, **env):
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(**env), capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_default_thread_count():
    """The machine's cores by default (no environment variables needed); OMP_NUM_THREADS wins."""
    code = "import cydnn; print(cydnn.get_num_threads())"
    assert int(_in_subprocess(code, OMP_NUM_THREADS=None)) == len(os.sched_getaffinity(0))
    assert _in_subprocess(code, OMP_NUM_THREADS="1") == "1"


@pytest.mark.parametrize("act", ["relu", "tanh", "softmax"])
@pytest.mark.parametrize("shape", [(128, 784, 512), (200, 300, 600), (64, 128, 512)])
def test_dense_kernels_identical_at_any_thread_count_when_work_really_splits(shape, act):
    """Shapes big enough that the kernels use every thread (several GEMM blocks): forward,
    dW, db and dx are bit-for-bit the same at 1, 2 and 3 threads. (The model tests above are
    small enough to stay on one thread.) Before blocks were fixed by the shape, OpenBLAS's
    Haswell kernels gave different last bits when the rows were split per thread."""
    m, k, n = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k)).astype(np.float32)
    layer = layers.Dense(n, activation=act)
    layer(x)
    dy = rng.standard_normal((m, n)).astype(np.float32)
    results = []
    for t in (1, 2, 3):
        cydnn.set_num_threads(t)
        y = layer.forward(x, training=True).copy()
        dx = layer.backward(dy).copy()
        results.append([y, dx] + [g.copy() for g in layer.grads])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)
