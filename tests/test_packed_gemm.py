"""The packed-panel kernels of the recurrent steps (csrc/core/_packed_gemm.h) at every SIMD level:
products against NumPy, row results that do not depend on the rows around them (what lets the
recurrence split its batch by the thread count), levels 1 and 2 bit-identical, and the recurrent
layers' gradients at the portable level."""
import numpy as np
import pytest

from cydnn import layers
from cydnn._kernels import recurrent as _k
from helpers import check_layer_gradients

LEVELS = [0, 1, 2]
SHAPES = [(1, 128, 512), (1, 512, 128), (1, 7, 5), (1, 3, 100), (3, 5, 100), (13, 17, 33), (25, 40, 31),
          (64, 128, 512), (32, 512, 128), (7, 64, 192)]


@pytest.fixture
def level(request):
    yield _k.packed_level(request.param)
    _k.packed_level(-1)


def product(a, b, transpose_b=False, out=None, accumulate=False, transpose_a=False):
    m, n = a.shape[1] if transpose_a else a.shape[0], b.shape[0] if transpose_b else b.shape[1]
    out = np.zeros((m, n), a.dtype) if out is None else out
    _k.packed_product(a, b, out, transpose_a, transpose_b, accumulate)
    return out


@pytest.mark.parametrize("level", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("transpose_b", [False, True])
def test_product_matches_numpy(level, dtype, rtol, shape, transpose_b):
    m, k, n = shape
    rng = np.random.default_rng(m * 1000 + k + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if transpose_b else (k, n)).astype(dtype)
    bb = b.T if transpose_b else b
    expect = a.astype(np.float64) @ bb.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(bb).astype(np.float64)   # error bound per entry
    got = product(a, b, transpose_b)
    assert np.all(np.abs(got - expect) <= rtol * scale)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    acc = product(a, b, transpose_b, out=c0.copy(), accumulate=True)   # the sum continues from C
    assert np.all(np.abs(acc - (c0 + expect)) <= rtol * (scale + np.abs(c0)))


@pytest.mark.parametrize("level", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 3, 7), (13, 300, 100), (128, 3200, 512), (32, 129, 64),
                                   (100, 257, 33), (7, 0, 9)])
def test_transposed_product_matches_numpy(level, dtype, rtol, shape):
    """The weight gradients' a.T @ b: K in chunks (the running sums go through C exactly), rows
    of C in blocks of tiles, partial panels; with accumulate each sum continues from C."""
    m, k, n = shape
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((k, m)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    expect = a.T.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a.T).astype(np.float64) @ np.abs(b).astype(np.float64)
    got = product(a, b, transpose_a=True, out=np.full((m, n), np.nan, dtype))
    assert np.all(np.abs(got - expect) <= rtol * scale)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    acc = product(a, b, transpose_a=True, out=c0.copy(), accumulate=True)
    assert np.all(np.abs(acc - (c0 + expect)) <= rtol * (scale + np.abs(c0)))


@pytest.mark.parametrize("level", LEVELS, indirect=True)
def test_transposed_product_entries_do_not_depend_on_the_block(level):
    """Any block of columns of C (a thread's share of a weight gradient) gets the same bits."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal((700, 40)).astype(np.float32)
    b = rng.standard_normal((700, 160)).astype(np.float32)
    whole = product(a, b, transpose_a=True)
    for lo, hi in [(0, 32), (32, 96), (96, 160), (0, 64)]:
        np.testing.assert_array_equal(product(a, np.ascontiguousarray(b[:, lo:hi]), transpose_a=True),
                                      whole[:, lo:hi])
    for lo, hi in [(0, 12), (12, 40), (5, 6)]:
        np.testing.assert_array_equal(product(np.ascontiguousarray(a[:, lo:hi]), b, transpose_a=True),
                                      whole[lo:hi])


def weight_grads(b, parts, accumulate=False, outs=None):
    if outs is None:
        outs = [np.full((1 if p is None else p.shape[1], b.shape[1]), np.nan, b.dtype) for p in parts]
    _k.packed_weight_grads(b, list(parts), outs, accumulate)
    return outs


@pytest.mark.parametrize("level", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes,k,n", [((32, 128, None), 3200, 512), ((5, None, 3, None), 300, 70),
                                       ((150, 100, None), 129, 40), ((None,), 257, 33), ((1, 11), 1, 5)])
def test_stacked_weight_gradients_in_one_pass(level, dtype, sizes, k, n):
    """The layers' kernel, recurrent-kernel and bias gradients in one pass over b: every part gets
    the bits it gets alone, a None part gets the column sums in row order (the running sum of
    np.add.accumulate), more rows than one block (150 + 100) included; accumulate continues each."""
    rng = np.random.default_rng(k + n)
    b = rng.standard_normal((k, n)).astype(dtype)
    parts = [None if m is None else rng.standard_normal((k, m)).astype(dtype) for m in sizes]
    got = weight_grads(b, parts)
    for p, g in zip(parts, got):
        if p is None:
            np.testing.assert_array_equal(g[0], np.add.accumulate(b, axis=0)[-1])
        else:
            np.testing.assert_array_equal(g, product(p, b, transpose_a=True))
    c0 = [rng.standard_normal(g.shape).astype(dtype) for g in got]
    acc = weight_grads(b, parts, accumulate=True, outs=[c.copy() for c in c0])
    for p, c, a in zip(parts, c0, acc):
        if p is None:
            np.testing.assert_array_equal(a[0], np.add.accumulate(np.vstack([c, b]), axis=0)[-1])
        else:
            np.testing.assert_array_equal(a, product(p, b, transpose_a=True, out=c.copy(), accumulate=True))


def test_stacked_weight_gradients_reject_mismatched_parts():
    b = np.zeros((6, 4), np.float32)
    with pytest.raises(ValueError, match=r"part 0 \(5, 3\)\.T @ \(6, 4\)"):
        weight_grads(b, [np.zeros((5, 3), np.float32)])
    with pytest.raises(ValueError, match=r"column sums\) must be \(1, 4\)"):
        _k.packed_weight_grads(b, [None], [np.zeros((2, 4), np.float32)], False)
    with pytest.raises(ValueError, match="1 to 4 parts"):
        _k.packed_weight_grads(b, [None] * 5, [np.zeros((1, 4), np.float32)] * 5, False)


@pytest.mark.parametrize("level", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_row_does_not_depend_on_the_rows_around_it(level, dtype):
    """Any block of rows gives each row the bits it gets alone: the recurrence may cut the batch
    by the thread count."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((29, 128)).astype(dtype)
    b = rng.standard_normal((128, 200)).astype(dtype)
    whole = product(a, b)
    for lo, hi in [(0, 1), (3, 4), (5, 17), (17, 29), (0, 13), (28, 29)]:
        np.testing.assert_array_equal(product(np.ascontiguousarray(a[lo:hi]), b), whole[lo:hi])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_levels_give_identical_bits(dtype):
    """AVX2 and AVX-512 both fuse each multiply-add of the same sums (on a CPU without AVX-512
    both requests run level 1)."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal((37, 128)).astype(dtype)
    b = rng.standard_normal((128, 300)).astype(dtype)
    try:
        _k.packed_level(2)
        two = [product(a, b), product(b, b, transpose_a=True)]
        _k.packed_level(1)
        one = [product(a, b), product(b, b, transpose_a=True)]
    finally:
        _k.packed_level(-1)
    for x, y in zip(one, two):
        np.testing.assert_array_equal(x, y)


def test_levels_are_clamped_to_the_cpu():
    best = _k.packed_level(-1)
    assert best in (0, 1, 2)
    assert _k.packed_level(99) == best
    assert _k.packed_level(0) == 0
    _k.packed_level(-1)


def test_a_short_scratch_is_an_error_not_an_overrun():
    """The workspace sizes the packing scratch itself and refuses a short one from alloc, before any
    kernel runs."""
    u = 8
    x = np.zeros((2, 3, 4), np.float32)
    layer = layers.LSTM(u)
    layer(x)

    def alloc(key, shape, dtype):   # the forward pass packs 4 x 32 + 8 x 32 = 384 values
        return np.zeros(200 if key == "packed" else shape, dtype)
    with pytest.raises(ValueError, match="alloc\\('packed'"):
        _k.Workspace("lstm", alloc, 2, 3, 4, u, np.float32)
    ws = _k.Workspace("lstm", lambda key, shape, dtype: np.zeros(shape, dtype), 2, 3, 4, u, np.float32)
    assert ws.packed.shape[0] >= 384
    ws.start()
    _k.rnn_forward(ws, x, (layer.kernel, layer.recurrent_kernel, layer.bias), _k.Options(n_threads=1))


@pytest.mark.parametrize("level", [0, 1], indirect=True)
@pytest.mark.parametrize("kind,kw", [("LSTM", {}), ("GRU", {}), ("GRU", {"reset_after": False}),
                                     ("SimpleRNN", {})])
def test_recurrent_gradients_at_narrower_levels(level, kind, kw):
    """The float64 gradient checks of test_recurrent run the widest level; these run the others."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 2))
    layer = getattr(layers, kind)(3, dtype="float64", return_sequences=True, **kw)
    layer(x)
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in layer.get_weights()])
    check_layer_gradients(layer, x)
