"""Pooling layers: gradients by central differences (float64), parity with PyTorch (forward and
input gradient), a NumPy reference for "same" padding (padded cells never count), shapes, errors."""
import numpy as np
import pytest

import cydnn
from cydnn import layers
from cydnn.layers.convolutional import axis_padding
from helpers import check_layer_gradients


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def reference_pool(x, pool, strides, padding, op):
    """NumPy pooling over NHWC x counting only real cells (TF semantics for 'same')."""
    n, h, w, c = x.shape
    pads = [axis_padding(padding, a, (h, w)[a], pool[a], strides[a], 1) for a in range(2)]
    oh = (h + sum(pads[0]) - pool[0]) // strides[0] + 1
    ow = (w + sum(pads[1]) - pool[1]) // strides[1] + 1
    y = np.empty((n, oh, ow, c))
    for p in range(oh):
        for q in range(ow):
            r0, c0 = p * strides[0] - pads[0][0], q * strides[1] - pads[1][0]
            win = x[:, max(r0, 0):min(r0 + pool[0], h), max(c0, 0):min(c0 + pool[1], w), :]
            y[:, p, q, :] = op(win, axis=(1, 2))
    return y


POOL2D_GRID = [
    # pool, strides, padding, input (h, w)
    ((2, 2), None, "valid", (6, 6)),
    ((2, 2), None, "valid", (7, 5)),
    ((3, 3), (2, 2), "valid", (7, 8)),
    ((2, 2), None, "same", (5, 7)),
    ((3, 3), (1, 1), "same", (4, 5)),
    ((3, 2), (2, 3), "same", (7, 7)),
    ((2, 3), (1, 2), "valid", (5, 6)),
    ((1, 1), (2, 2), "same", (5, 5)),
    ((4, 4), (3, 3), "same", (5, 6)),
]


@pytest.mark.parametrize("cls,op", [(layers.MaxPooling2D, np.max), (layers.AveragePooling2D, np.mean)])
@pytest.mark.parametrize("pool,strides,padding,hw", POOL2D_GRID)
def test_pool2d_reference_and_gradients(cls, op, pool, strides, padding, hw):
    layer = cls(pool, strides=strides, padding=padding, dtype="float64")
    x = rand(2, *hw, 3)
    y = layer(x)
    np.testing.assert_allclose(y, reference_pool(x, layer.pool_size, layer.strides, padding, op), rtol=1e-12)
    assert y.shape == layer.compute_output_shape(x.shape)
    check_layer_gradients(layer, x)


@pytest.mark.parametrize("cls,op", [(layers.MaxPooling1D, np.max), (layers.AveragePooling1D, np.mean)])
@pytest.mark.parametrize("pool,strides,padding,width", [(2, None, "valid", 9), (3, 2, "same", 8), (3, 1, "same", 5),
                                                         (4, 3, "valid", 11), (2, 3, "same", 7)])
def test_pool1d_reference_and_gradients(cls, op, pool, strides, padding, width):
    layer = cls(pool, strides=strides, padding=padding, dtype="float64")
    x = rand(2, width, 3)
    y = layer(x)
    ref = reference_pool(x[:, None], (1, pool), (1, layer.strides[0]),
                         padding if padding == "valid" else ((0, 0),) + (axis_padding("same", 0, width, pool,
                                                                                       layer.strides[0], 1),), op)
    np.testing.assert_allclose(y, ref[:, 0], rtol=1e-12)
    check_layer_gradients(layer, x)


@pytest.mark.parametrize("cls,op", [(layers.GlobalAveragePooling2D, np.mean), (layers.GlobalMaxPooling2D, np.max)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pool2d(cls, op, keepdims):
    layer = cls(keepdims=keepdims, dtype="float64")
    x = rand(3, 4, 5, 2)
    y = layer(x)
    np.testing.assert_allclose(y, op(x, axis=(1, 2), keepdims=keepdims), rtol=1e-12)
    assert y.shape == ((3, 1, 1, 2) if keepdims else (3, 2))
    check_layer_gradients(layer, x)


@pytest.mark.parametrize("cls,op", [(layers.GlobalAveragePooling1D, np.mean), (layers.GlobalMaxPooling1D, np.max)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pool1d(cls, op, keepdims):
    layer = cls(keepdims=keepdims, dtype="float64")
    x = rand(3, 7, 2)
    y = layer(x)
    np.testing.assert_allclose(y, op(x, axis=1, keepdims=keepdims), rtol=1e-12)
    check_layer_gradients(layer, x)


def test_max_pool_gradient_goes_to_the_argmax_only():
    x = np.array([[1., 5., 2., 0.], [3., 4., 9., 1.]]).reshape(1, 2, 4, 1)
    layer = layers.MaxPool2D(dtype="float64")
    assert layer(x).ravel().tolist() == [5.0, 9.0]
    layer.forward(x, training=True)
    dx = layer.backward(np.array([10., 20.]).reshape(1, 1, 2, 1))
    assert dx.reshape(2, 4).tolist() == [[0, 10, 0, 0], [0, 0, 20, 0]]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hw,c", [((6, 8), 1), ((7, 5), 6), ((28, 28), 6), ((4, 6), 300)])
def test_max_pool_2x2_ties_go_to_the_first_cell(dtype, hw, c):
    # the 2x2 stride-2 path compares rows first; ties (many here: values 0..2, as after a ReLU)
    # must still go to the window's first cell in row-major order, like every other window
    x = np.random.default_rng(3).integers(0, 3, (2, *hw, c)).astype(dtype)
    layer = layers.MaxPooling2D(dtype=dtype)
    y = layer(x, training=True)
    oh, ow = hw[0] // 2, hw[1] // 2
    win = x[:, :2 * oh, :2 * ow].reshape(2, oh, 2, ow, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(2, oh, ow, c, 4)
    np.testing.assert_array_equal(y, win.max(axis=-1))
    dy = np.random.default_rng(4).standard_normal(y.shape).astype(dtype)
    first = np.zeros_like(win)
    np.put_along_axis(first, win.argmax(axis=-1)[..., None], dy[..., None], axis=-1)
    expected = np.zeros_like(x)
    expected[:, :2 * oh, :2 * ow] = first.reshape(2, oh, ow, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(
        2, 2 * oh, 2 * ow, c)
    np.testing.assert_array_equal(layer.backward(dy), expected)


@pytest.mark.parametrize("hw,c", [((2, 2), 1), ((2, 4), 1), ((4, 2), 3), ((2, 6), 5), ((6, 4), 7)])
def test_max_pool_2x2_writes_nothing_past_the_batch(hw, c):
    # the 2x2 path writes whole vectors of channels, spilling into the next outputs; never past
    # the last image's
    from cydnn._kernels import pool as _pool
    x = rand(2, *hw, c).astype(np.float32)
    oh, ow = hw[0] // 2, hw[1] // 2
    y_all = np.full((3, oh, ow, c), 7.0, np.float32)
    am_all = np.full((3, oh, ow, c), -7, np.int32)
    _pool.max_pool2d_forward(x, y_all[:2], am_all[:2], 2, 2, 2, 2, 0, 0, 1)
    assert (y_all[2] == 7.0).all() and (am_all[2] == -7).all()
    np.testing.assert_array_equal(y_all[:2], layers.MaxPooling2D()(x))


def test_average_same_divides_by_real_cells():
    # 3x3 of ones, pool 2 stride 2 "same": every window averages to 1 (the padding is not counted)
    y = layers.AveragePooling2D(2, padding="same")(np.ones((1, 3, 3, 1)))
    np.testing.assert_array_equal(y, np.ones((1, 2, 2, 1)))


# ------------------------------------------------------------------------- PyTorch parity
@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 2, "valid"), (3, 1, "same"),
                                                  (3, 2, "same"), (2, 2, "same")])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2d_matches_torch(pool, strides, padding, kind):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    layer = cls(pool, strides=strides, padding=padding, dtype="float64")
    x = rand(2, 9, 8, 3)
    y = layer(x)
    s = layer.strides
    (t, b), (le, r) = [axis_padding(padding, a, x.shape[1 + a], layer.pool_size[a], s[a], 1) for a in range(2)]
    xt = torch.tensor(x, requires_grad=True)
    xc = xt.permute(0, 3, 1, 2)
    if kind == "max":
        # padded cells never win: pad with -inf
        yt = F.max_pool2d(F.pad(xc, (le, r, t, b), value=float("-inf")), layer.pool_size, s)
    else:
        # average over real cells only: sum of padded input / count of real cells
        ones = torch.ones_like(xc[:, :1])
        num = F.avg_pool2d(F.pad(xc, (le, r, t, b)), layer.pool_size, s, divisor_override=1)
        den = F.avg_pool2d(F.pad(ones, (le, r, t, b)), layer.pool_size, s, divisor_override=1)
        yt = num / den
    yt = yt.permute(0, 2, 3, 1)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    dy = rand(*y.shape, seed=2)
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    (yt * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool1d_and_global_match_torch(kind):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = rand(2, 11, 3)
    xt = torch.tensor(x, requires_grad=True)
    layer = (layers.MaxPooling1D if kind == "max" else layers.AveragePooling1D)(3, strides=2, dtype="float64")
    fn = F.max_pool1d if kind == "max" else F.avg_pool1d
    yt = fn(xt.permute(0, 2, 1), 3, 2).permute(0, 2, 1)
    y = layer(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    dy = rand(*y.shape, seed=1)
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    (yt * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12)

    x4 = rand(2, 5, 4, 3)
    xt = torch.tensor(x4, requires_grad=True)
    glob = (layers.GlobalMaxPooling2D if kind == "max" else layers.GlobalAveragePooling2D)(dtype="float64")
    yt = xt.amax(dim=(1, 2)) if kind == "max" else xt.mean(dim=(1, 2))
    y = glob(x4)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    dy = rand(*y.shape, seed=2)
    glob.forward(x4, training=True)
    dx = glob.backward(dy)
    (yt * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12)


# ------------------------------------------------------------------------- protocol and errors
def test_aliases_defaults_and_config():
    assert layers.MaxPool2D is layers.MaxPooling2D and layers.MaxPool1D is layers.MaxPooling1D
    assert layers.AvgPool2D is layers.AveragePooling2D
    p = layers.MaxPooling2D()
    assert (p.pool_size, p.strides, p.padding) == ((2, 2), (2, 2), "valid")
    assert layers.MaxPooling1D().pool_size == (2,)
    assert layers.AveragePooling2D((3, 2), strides=1).strides == (1, 1)
    assert layers.GlobalAveragePooling2D().keepdims is False
    for layer in [layers.MaxPooling2D((3, 2), strides=(1, 2), padding="same"), layers.AveragePooling1D(4),
                  layers.GlobalMaxPooling2D(keepdims=True)]:
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == {**layer.get_config(), "name": clone.name}
    assert layers.MaxPooling2D().ensure_built((None, 28, 28, 6)) == (None, 14, 14, 6)
    assert layers.MaxPooling2D(padding="same").ensure_built((None, 7, 7, 2)) == (None, 4, 4, 2)
    assert not layers.MaxPooling2D().weights


def test_pooling_results_do_not_depend_on_thread_count():
    x = rand(9, 32, 32, 16).astype(np.float32)   # above the kernels' per-thread work grain
    out = []
    for n in (1, 2):
        cydnn.set_num_threads(n)
        row = []
        for layer in [layers.MaxPooling2D(3, 2, "same"), layers.AveragePooling2D(3, 2, "same"),
                      layers.GlobalAveragePooling2D()]:
            y = layer(x, training=True)
            row += [y.copy(), layer.backward(np.ones_like(y)).copy()]
        out.append(row)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make,match", [
    (lambda: layers.MaxPooling2D(0), r"MaxPooling2D 'max_pooling2d\w*': expected pool_size to be an int or a tuple "
                                     r"of 2 ints, each positive, received pool_size=0"),
    (lambda: layers.MaxPooling2D(2, strides=(1, 0)), r"received strides=\(1, 0\)"),
    (lambda: layers.AveragePooling1D(2.0), r"AveragePooling1D .*received pool_size=2.0"),
    (lambda: layers.MaxPooling2D(padding="causal"), r"expected padding .*received padding='causal'"),
    (lambda: layers.MaxPooling2D(padding=1), r"expected padding to be 'valid' or 'same', received padding=1"),
    (lambda: layers.GlobalMaxPooling2D(data_format="channels_first"), r"channels_last"),
])
def test_invalid_configuration(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_invalid_inputs():
    with pytest.raises(ValueError, match=r"MaxPooling2D 'p': expected input of rank 4 \(batch, height, width, "
                                         r"channels\), received shape \(2, 8, 3\)"):
        layers.MaxPooling2D(name="p")(np.zeros((2, 8, 3)))
    with pytest.raises(ValueError, match=r"AveragePooling2D 'a': expected the padded input to be at least as large "
                                         r"as the pool window along spatial axis 2 .*received input shape \(1, 4, 2, 1\)"):
        layers.AveragePooling2D(3, name="a")(np.zeros((1, 4, 2, 1)))
    with pytest.raises(ValueError, match=r"GlobalAveragePooling1D 'g': expected input of rank 3"):
        layers.GlobalAveragePooling1D(name="g")(np.zeros((2, 3, 4, 5)))
    pool = layers.MaxPooling1D(name="m")
    pool(np.zeros((1, 6, 2)))
    with pytest.raises(ValueError, match=r"MaxPooling1D 'm': expected input with 2 channels \(last axis\), "
                                         r"received shape \(1, 6, 3\)"):
        pool(np.zeros((1, 6, 3)))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pool1d_matches_torch(kind, keepdims):
    torch = pytest.importorskip("torch")
    x = rand(3, 9, 4)
    xt = torch.tensor(x, requires_grad=True)
    layer = (layers.GlobalMaxPooling1D if kind == "max" else layers.GlobalAveragePooling1D)(
        keepdims=keepdims, dtype="float64")
    yt = xt.amax(dim=1, keepdim=keepdims) if kind == "max" else xt.mean(dim=1, keepdim=keepdims)
    y = layer(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    dy = rand(*y.shape, seed=3)
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    (yt * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("cls,padding,shape,torch_pad", [
    (layers.ZeroPadding2D, ((1, 2), (0, 3)), (2, 3, 4, 2), (0, 0, 0, 3, 1, 2)),
    (layers.ZeroPadding1D, (2, 1), (2, 5, 3), (0, 0, 2, 1)),
])
def test_zero_padding_matches_torch(cls, padding, shape, torch_pad):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = rand(*shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.pad(xt, torch_pad)   # pads the last axes first: channels (none), then width, then height
    layer = cls(padding, dtype="float64")
    y = layer(x)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    dy = rand(*y.shape, seed=4)
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    (yt * torch.tensor(dy)).sum().backward()
    np.testing.assert_array_equal(dx, xt.grad.numpy())
