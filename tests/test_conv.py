"""Conv1D, Conv2D, DepthwiseConv2D and ZeroPadding1D/2D: gradients by central differences (float64),
parity with PyTorch on identical weights (forward and every gradient), shapes, configuration
errors, thread-count independence."""
import numpy as np
import pytest

import cydnn
from cydnn import layers
from cydnn._kernels import conv as _conv
from cydnn.layers.convolutional import axis_padding
from helpers import check_layer_gradients

F64 = dict(dtype="float64", bias_initializer="glorot_uniform")


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def use_direct(monkeypatch, on):
    """Let the direct kernels take the layers they apply to (planes: stride and dilation 1, few
    channels, as by default; filters as lanes: any multiple of 16 filters, dilation 1), or none."""
    monkeypatch.setattr(_conv, "DIRECT_BELOW", 16 if on else 0)
    monkeypatch.setattr(_conv, "LANES_MAX_FILTERS", 10 ** 9 if on else 0)


@pytest.fixture(params=["rows", "transposed", "direct", "direct-level0", "direct-level1"])
def layout(request, monkeypatch):
    """Run a test with each way to a convolution: patches as rows (im2col), as columns
    (im2col_transposed), or the direct kernels wherever they apply, at the widest SIMD level this
    CPU runs, at the portable level 0 and at level 1 (AVX2; clamped to what the CPU runs)."""
    monkeypatch.setattr(_conv, "TRANSPOSED_BELOW", 0 if request.param == "rows" else 10 ** 9)
    use_direct(monkeypatch, "direct" in request.param)
    _conv.direct_level(int(request.param[-1]) if "level" in request.param else -1)
    yield request.param
    _conv.direct_level(-1)


# ------------------------------------------------------------------------- gradient checks
CONV2D_GRID = [
    # kernel, strides, padding, dilation, input (h, w)
    ((3, 3), 1, "valid", 1, (5, 6)),
    ((3, 3), 1, "same", 1, (5, 6)),
    ((3, 2), 2, "same", 1, (7, 5)),
    ((2, 3), 2, "valid", 1, (7, 8)),
    ((3, 3), 1, "same", 2, (7, 6)),
    ((3, 3), 2, "valid", 2, (9, 7)),
    ((2, 2), 3, "same", 1, (7, 5)),
    ((1, 1), 1, "valid", 1, (4, 5)),        # pointwise: no im2col
    ((1, 1), 2, "same", 1, (5, 5)),
    ((3, 3), 1, 1, 1, (4, 5)),
    ((2, 3), 1, ((1, 0), (2, 1)), 1, (5, 4)),
    ((4, 4), 1, "valid", 1, (4, 4)),        # kernel as large as the input
    ((5, 5), 1, "same", 1, (3, 3)),         # kernel larger than the input, padded
]


@pytest.mark.parametrize("kernel,strides,padding,dilation,hw", CONV2D_GRID)
def test_conv2d_gradients(kernel, strides, padding, dilation, hw, layout):
    layer = layers.Conv2D(3, kernel, strides=strides, padding=padding, dilation_rate=dilation, **F64)
    check_layer_gradients(layer, rand(2, *hw, 2))


@pytest.mark.parametrize("kernel,strides,padding,dilation", [(5, 1, "same", 1), (3, 2, "same", 1), (3, 1, "valid", 2),
                                                             ((2, 4), 1, ((2, 0), (1, 3)), 1)])
def test_single_channel_conv2d_gradients(kernel, strides, padding, dilation, layout):
    # grey images: the transposed layout copies whole rows here (its stride-1, 1-channel fast path)
    layer = layers.Conv2D(4, kernel, strides=strides, padding=padding, dilation_rate=dilation, **F64)
    check_layer_gradients(layer, rand(3, 7, 6, 1))


# filters as vector lanes: a multiple of 16 filters, any stride and padding
LANES_GRID = [
    # kernel, strides, padding, input (h, w), channels (kw * channels >= 16 at stride 1: not planes)
    ((3, 3), 1, "valid", (5, 6), 6),
    ((3, 2), 2, "same", (7, 5), 3),
    ((2, 3), 3, ((1, 0), (2, 1)), (7, 8), 2),
    ((1, 1), 1, "valid", (4, 5), 17),
    ((5, 5), 1, "valid", (9, 9), 6),      # LeNet's second layer, on a smaller image
]


@pytest.mark.parametrize("filters", [16, 32])
@pytest.mark.parametrize("kernel,strides,padding,hw,channels", LANES_GRID)
def test_conv2d_lanes_gradients(kernel, strides, padding, hw, channels, filters, layout):
    layer = layers.Conv2D(filters, kernel, strides=strides, padding=padding, **F64)
    check_layer_gradients(layer, rand(2, *hw, channels))
    assert layer.context(None).plan.mode == (_conv.LANES if "direct" in layout else _conv.PATCHES)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softmax", "elu"])
def test_conv2d_fused_activation_gradients(activation):
    layer = layers.Conv2D(3, 3, padding="same", activation=activation, **F64)
    check_layer_gradients(layer, rand(2, 4, 5, 2))


def test_conv2d_without_bias_and_chunked_batch(monkeypatch, layout):
    # a tiny patch budget forces one image per chunk; 5 images over several reduction groups
    monkeypatch.setattr(_conv, "CHUNK_BYTES", 1)
    monkeypatch.setattr(_conv, "MAX_GROUPS", 3)
    layer = layers.Conv2D(2, 2, use_bias=False, **F64)
    check_layer_gradients(layer, rand(5, 4, 3, 2))
    assert len(layer.weights) == 1


CONV1D_GRID = [
    (3, 1, "valid", 1, 9),
    (3, 2, "same", 1, 9),
    (3, 1, "causal", 2, 8),
    (2, 3, "causal", 1, 10),
    (4, 1, "same", 3, 7),
    (1, 1, "valid", 1, 6),
    (3, 1, (2, 1), 1, 5),
]


@pytest.mark.parametrize("kernel,strides,padding,dilation,width", CONV1D_GRID)
def test_conv1d_gradients(kernel, strides, padding, dilation, width, layout):
    layer = layers.Conv1D(3, kernel, strides=strides, padding=padding, dilation_rate=dilation, **F64)
    check_layer_gradients(layer, rand(2, width, 2))


DEPTHWISE_GRID = [
    ((3, 3), 1, "valid", 1, 1, (5, 6)),
    ((3, 3), 1, "same", 2, 1, (5, 6)),
    ((3, 2), 2, "same", 1, 1, (7, 6)),
    ((3, 3), 1, "same", 1, 2, (7, 6)),
    ((2, 2), 2, "valid", 3, 2, (7, 7)),
    ((1, 1), 1, "valid", 2, 1, (3, 4)),
]


@pytest.mark.parametrize("kernel,strides,padding,multiplier,dilation,hw", DEPTHWISE_GRID)
def test_depthwise_gradients(kernel, strides, padding, multiplier, dilation, hw):
    layer = layers.DepthwiseConv2D(kernel, strides=strides, padding=padding, depth_multiplier=multiplier,
                                   dilation_rate=dilation, **F64)
    check_layer_gradients(layer, rand(2, *hw, 3))


def test_depthwise_fused_activation_gradients():
    layer = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="tanh", **F64)
    check_layer_gradients(layer, rand(2, 4, 4, 2))


@pytest.mark.parametrize("cls,padding,shape", [(layers.ZeroPadding2D, ((1, 2), (0, 3)), (2, 3, 4, 2)),
                                               (layers.ZeroPadding2D, 1, (2, 2, 2, 3)),
                                               (layers.ZeroPadding1D, (2, 1), (2, 4, 3))])
def test_zero_padding(cls, padding, shape):
    layer = cls(padding, dtype="float64")
    x = rand(*shape)
    y = layer(x)
    pads = layer.padding
    inner = (slice(None),) + tuple(slice(a, a + s) for s, (a, _) in zip(shape[1:-1], pads)) + (slice(None),)
    np.testing.assert_array_equal(y[inner], x)
    assert y.sum() == pytest.approx(x.sum())
    assert y.shape == layer.compute_output_shape(x.shape)
    check_layer_gradients(layer, x)


# ------------------------------------------------------------------------- im2col / col2im
@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("filters,kernel,strides,padding,shape,mode", [
    (6, 5, 1, "same", (3, 28, 28, 1), 1),                # LeNet's first layer
    (9, (3, 5), 1, "same", (2, 7, 40, 3), 1),            # several column blocks, odd filter count, RGB
    (17, (2, 5), 1, ((1, 2), (3, 0)), (2, 6, 9, 2), 1),  # weight-gradient lanes over several blocks
    (4, 1, 1, "valid", (2, 3, 5, 7), 1),                 # pointwise
    (3, (4, 2), 1, "valid", (2, 4, 2, 1), 1),            # kernel as large as the input
    (7, (7, 3), 1, "same", (2, 9, 8, 2), 1),             # blocks of filters and kernel rows plus tails
    (16, 5, 1, "valid", (3, 14, 14, 6), 2),              # LeNet's second layer: filters as lanes
    (32, 3, 2, "same", (2, 9, 11, 8), 2),                # strided, padded, two blocks of filters
    (16, (3, 1), (1, 2), "valid", (2, 5, 23, 5), 2),     # a row longer than a block of positions
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_direct_path_matches_patches(filters, kernel, strides, padding, shape, mode, dtype, level, monkeypatch):
    # the direct kernels against im2col + GEMM on identical weights: forward, dx, dW, db
    x, r = rand(*shape).astype(dtype), None
    layer = layers.Conv2D(filters, kernel, strides=strides, padding=padding, activation="tanh", dtype=dtype,
                          bias_initializer="glorot_uniform")
    results = []
    for on in (False, True):
        use_direct(monkeypatch, on)
        layer._plans.clear()   # the path is chosen with the plan, once per input shape
        _conv.direct_level(level if on else -1)
        try:
            y = layer(x, training=True)
            r = rand(*y.shape, seed=5).astype(dtype) if r is None else r
            results.append([y.copy(), layer.backward(r).copy()] + [g.copy() for g in layer.grads])
        finally:
            _conv.direct_level(-1)
        assert layer.context(None).plan.mode == (mode if on else _conv.PATCHES)
    for a, b in zip(*results):
        # float32: sums over thousands of terms in other orders, judged against the largest entry
        tol = 1e-12 if dtype == "float64" else 1e-5
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


def test_direct_level_is_clamped_to_the_cpu():
    best = _conv.direct_level(-1)
    assert best in (0, 1, 2)
    assert _conv.direct_level(0) == 0
    assert _conv.direct_level(5) == best


def test_col2im_is_the_adjoint_of_im2col():
    # <im2col(x), c> == <x, col2im(c)> for every geometry: the backward pass is the true transpose
    x = rand(6, 7, 3)
    for kh, kw, sh, sw, pt, pl, dh, dw in [(3, 3, 1, 1, 1, 1, 1, 1), (2, 3, 2, 1, 0, 2, 2, 1),
                                           (3, 2, 2, 3, 2, 0, 1, 2), (5, 5, 1, 1, 2, 2, 1, 1)]:
        oh = (6 + 2 * pt - dh * (kh - 1) - 1) // sh + 1
        ow = (7 + 2 * pl - dw * (kw - 1) - 1) // sw + 1
        col = np.empty((oh * ow, kh * kw * 3))
        _conv.im2col_2d(x, col, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
        c = rand(*col.shape, seed=1)
        back = np.empty_like(x)
        _conv.col2im_2d(c, back, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
        assert np.sum(col * c) == pytest.approx(np.sum(x * back), rel=1e-12)
        # the transposed layout holds the same patches, and its col2im is the same adjoint
        colt = np.empty((kh * kw * 3, oh * ow))
        _conv.im2col_transposed_2d(x, colt, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
        np.testing.assert_array_equal(colt, col.T)
        back_t = np.empty_like(x)
        _conv.col2im_transposed_2d(np.ascontiguousarray(c.T), back_t, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
        np.testing.assert_allclose(back_t, back, rtol=1e-13, atol=1e-14)


# ------------------------------------------------------------------------- PyTorch parity
def torch_conv(torch, x, kernel, bias, strides, pads, dilation, groups=1, transpose_kernel=True):
    """PyTorch conv2d on NHWC data with explicit (top, bottom, left, right) padding; NHWC result."""
    import torch.nn.functional as F
    xt = torch.tensor(x, requires_grad=True)
    w = kernel.transpose(3, 2, 0, 1) if transpose_kernel else kernel
    wt = torch.tensor(np.ascontiguousarray(w), requires_grad=True)
    bt = None if bias is None else torch.tensor(bias, requires_grad=True)
    xp = F.pad(xt.permute(0, 3, 1, 2), (pads[2], pads[3], pads[0], pads[1]))
    y = F.conv2d(xp, wt, bt, stride=strides, dilation=dilation, groups=groups).permute(0, 2, 3, 1)
    return xt, wt, bt, y


def same_pads(layer, shape):
    p = [axis_padding(layer.padding, a, shape[1 + a], layer.kernel_size[a], layer.strides[a],
                      layer.dilation_rate[a]) for a in range(2)]
    return p[0] + p[1]


@pytest.mark.parametrize("kernel,strides,padding,dilation,activation", [
    (3, 1, "valid", 1, None),
    (3, 2, "same", 1, "relu"),
    (3, 1, "same", 2, "tanh"),
    ((5, 3), 2, "same", 1, None),
    (4, 2, "valid", 2, "relu"),
    (1, 1, "valid", 1, "sigmoid"),
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conv2d_matches_torch(kernel, strides, padding, dilation, activation, dtype, layout):
    torch = pytest.importorskip("torch")
    x = rand(3, 11, 10, 4).astype(dtype)
    layer = layers.Conv2D(6, kernel, strides=strides, padding=padding, dilation_rate=dilation,
                          activation=activation, dtype=dtype, bias_initializer="glorot_uniform")
    y = layer(x)
    xt, wt, bt, yt = torch_conv(torch, x, layer.kernel, layer.bias, layer.strides, same_pads(layer, x.shape),
                                layer.dilation_rate)
    if activation is not None:
        yt = getattr(torch, activation)(yt)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    r = rand(*y.shape, seed=3).astype(dtype)
    layer.forward(x, training=True)
    dx = layer.backward(r)
    (yt * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads[0], wt.grad.numpy().transpose(2, 3, 1, 0), **tol)
    np.testing.assert_allclose(layer.grads[1], bt.grad.numpy(), **tol)


@pytest.mark.parametrize("kernel,strides,padding,dilation", [(3, 1, "valid", 1), (3, 2, "same", 1),
                                                             (3, 1, "causal", 2), (5, 1, "same", 2)])
def test_conv1d_matches_torch(kernel, strides, padding, dilation, layout):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = rand(3, 17, 4)
    layer = layers.Conv1D(5, kernel, strides=strides, padding=padding, dilation_rate=dilation, **F64)
    y = layer(x)
    left, right = axis_padding(layer.padding, 0, 17, kernel, strides, dilation)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(np.ascontiguousarray(layer.kernel.transpose(2, 1, 0)), requires_grad=True)
    bt = torch.tensor(layer.bias, requires_grad=True)
    yt = F.conv1d(F.pad(xt.permute(0, 2, 1), (left, right)), wt, bt, stride=strides,
                  dilation=dilation).permute(0, 2, 1)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    r = rand(*y.shape, seed=4)
    layer.forward(x, training=True)
    dx = layer.backward(r)
    (yt * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads[0], wt.grad.numpy().transpose(2, 1, 0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads[1], bt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel,strides,padding,multiplier,dilation", [(3, 1, "valid", 1, 1), (3, 2, "same", 2, 1),
                                                                         (3, 1, "same", 3, 2), ((2, 4), 1, "same", 1, 1)])
def test_depthwise_matches_torch(kernel, strides, padding, multiplier, dilation):
    torch = pytest.importorskip("torch")
    x = rand(2, 9, 8, 3)
    layer = layers.DepthwiseConv2D(kernel, strides=strides, padding=padding, depth_multiplier=multiplier,
                                   dilation_rate=dilation, activation="relu", **F64)
    y = layer(x)
    kh, kw, c, m = layer.depthwise_kernel.shape
    # torch: groups=c, weight (c*m, 1, kh, kw) with output channel c*m + j, the same order as Keras
    w = layer.depthwise_kernel.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
    xt, wt, bt, yt = torch_conv(torch, x, w, layer.bias, layer.strides, same_pads(layer, x.shape),
                                layer.dilation_rate, groups=c, transpose_kernel=False)
    yt = torch.relu(yt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    r = rand(*y.shape, seed=5)
    layer.forward(x, training=True)
    dx = layer.backward(r)
    (yt * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    dk = wt.grad.numpy().reshape(c, m, kh, kw).transpose(2, 3, 0, 1)
    np.testing.assert_allclose(layer.grads[0], dk, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads[1], bt.grad.numpy(), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------- layer protocol
def test_weight_shapes_and_output_shapes():
    assert layers.Conv2D(8, (3, 5)).ensure_built((None, 10, 12, 3)) == (None, 8, 8, 8)
    conv = layers.Conv2D(8, 3)
    conv.ensure_built((None, 28, 28, 1))
    assert [w.shape for w in conv.weights] == [(3, 3, 1, 8), (8,)]
    assert conv.weight_names == ["kernel", "bias"]
    c1 = layers.Conv1D(4, 3, padding="causal")
    assert c1.ensure_built((None, 10, 2)) == (None, 10, 4)
    assert [w.shape for w in c1.weights] == [(3, 2, 4), (4,)]
    dw = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", strides=2)
    assert dw.ensure_built((None, 7, 8, 3)) == (None, 4, 4, 6)
    assert [w.shape for w in dw.weights] == [(3, 3, 3, 2), (6,)]
    assert dw.weight_names == ["depthwise_kernel", "bias"]
    assert layers.Conv2D(2, 3, padding="same").ensure_built((None, None, None, 3)) == (None, None, None, 2)


def test_keras_defaults_and_config_round_trip():
    conv = layers.Conv2D(4, 3)
    assert (conv.strides, conv.padding, conv.dilation_rate, conv.use_bias) == ((1, 1), "valid", (1, 1), True)
    assert conv.activation.name == "linear"
    conv = layers.Conv2D(4, (3, 2), strides=2, padding=((1, 0), (2, 2)), activation="relu", use_bias=False,
                         kernel_regularizer="l2")
    clone = layers.Conv2D.from_config(conv.get_config())
    assert clone.get_config() == {**conv.get_config(), "name": clone.name}
    for layer in [layers.Conv1D(3, 5, padding="causal", dilation_rate=2), layers.DepthwiseConv2D(3, depth_multiplier=2),
                  layers.ZeroPadding2D(((1, 2), (3, 4))), layers.ZeroPadding1D(2)]:
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == {**layer.get_config(), "name": clone.name}


def test_fused_activation_logits_and_backward_preactivation():
    layer = layers.Conv2D(3, 3, activation="sigmoid", **F64)
    x = rand(2, 5, 5, 2)
    y = layer(x)
    z = layer.logits
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-z)), rtol=1e-12)
    dz = rand(*z.shape, seed=2)
    layer.forward(x, training=True)
    dx_pre = layer.backward_preactivation(dz).copy()
    g_pre = [g.copy() for g in layer.grads]
    # the same as a linear layer with identical weights driven by dz
    lin = layers.Conv2D(3, 3, **F64)
    lin(x)
    lin.set_weights(layer.get_weights())
    lin.forward(x, training=True)
    np.testing.assert_allclose(dx_pre, lin.backward(dz), rtol=1e-12)
    for a, b in zip(g_pre, lin.grads):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_accumulate_grads_and_no_input_grad():
    layer = layers.Conv2D(3, 3, padding="same", **F64)
    x, r = rand(4, 5, 5, 2), rand(4, 5, 5, 3, seed=1)
    layer(x)
    layer.forward(x, training=True)
    layer.backward(r)
    once = [g.copy() for g in layer.grads]
    layer.accumulate_grads = True
    layer.need_input_grad = False
    layer.forward(x, training=True)
    assert layer.backward(r) is None
    for a, b in zip(layer.grads, once):
        np.testing.assert_allclose(a, 2 * b, rtol=1e-12)


# shapes well above the kernels' per-thread work grain (~1M multiply-adds), so 2 and 3 threads
# really split the batch
@pytest.mark.parametrize("make", [lambda: layers.Conv2D(16, 3, padding="same", activation="relu"),
                                  lambda: layers.Conv2D(32, 3, strides=2, activation="relu"),
                                  lambda: layers.Conv2D(15, (5, 1), padding="same", activation="relu"),
                                  lambda: layers.Conv1D(32, 5, strides=2),
                                  lambda: layers.DepthwiseConv2D(3, depth_multiplier=2)])
def test_results_do_not_depend_on_thread_count(make, monkeypatch, layout):
    monkeypatch.setattr(_conv, "CHUNK_BYTES", 64 * 1024)   # several chunks per group
    layer = make()
    x = rand(13, 20, 20, 8).astype(np.float32) if not isinstance(layer, layers.Conv1D) else \
        rand(13, 200, 16).astype(np.float32)
    r = None
    results = []
    before = cydnn.get_num_threads()
    try:
        for n in (1, 2, 3):
            cydnn.set_num_threads(n)
            y = layer(x, training=True)
            r = rand(*y.shape, seed=7).astype(np.float32) if r is None else r
            dx = layer.backward(r)
            results.append([y.copy(), dx.copy()] + [g.copy() for g in layer.grads])
    finally:
        cydnn.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize("make,match", [
    (lambda: layers.Conv2D(2.5, 3), r"Conv2D 'conv2d\w*': expected filters to be a positive int, received filters=2.5"),
    (lambda: layers.Conv2D("8", 3), r"expected filters to be a positive int, received filters='8'"),
    (lambda: layers.Conv2D(0, 3), r"received filters=0"),
    (lambda: layers.Conv2D(4, 0), r"expected kernel_size to be an int or a tuple of 2 ints, each positive, "
                                  r"received kernel_size=0"),
    (lambda: layers.Conv2D(4, (3, -1)), r"received kernel_size=\(3, -1\)"),
    (lambda: layers.Conv2D(4, (3, 3, 3)), r"kernel_size=\(3, 3, 3\)"),
    (lambda: layers.Conv2D(4, 3, strides=0), r"expected strides .* received strides=0"),
    (lambda: layers.Conv2D(4, 3, dilation_rate=(1, 0)), r"received dilation_rate=\(1, 0\)"),
    (lambda: layers.Conv2D(4, 3, padding="full"), r"expected padding to be one of 'valid', 'same'.*received padding='full'"),
    (lambda: layers.Conv2D(4, 3, padding="causal"), r"received padding='causal'"),
    (lambda: layers.Conv2D(4, 3, padding=-1), r"received padding=-1"),
    (lambda: layers.Conv2D(4, 3, data_format="channels_first"), r"channels_last"),
    (lambda: layers.Conv1D(4, (3, 3)), r"Conv1D .*expected kernel_size to be an int"),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=0), r"DepthwiseConv2D .*received depth_multiplier=0"),
])
def test_invalid_configuration(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_invalid_inputs_name_the_layer_expectation_and_shape():
    conv = layers.Conv2D(4, 3, name="c")
    with pytest.raises(ValueError, match=r"Conv2D 'c': expected input of rank 4 \(batch, height, width, channels\), "
                                         r"received shape \(3, 28, 28\)"):
        conv(np.zeros((3, 28, 28)))
    with pytest.raises(ValueError, match=r"Conv2D 'c': expected the padded input to be at least as large as the "
                                         r"kernel along spatial axis 1 \(3 cells .*received input shape \(1, 2, 5, 1\)"):
        conv(np.zeros((1, 2, 5, 1)))
    conv(np.zeros((1, 5, 5, 2)))
    with pytest.raises(ValueError, match=r"Conv2D 'c': expected input with 2 channels \(last axis\), "
                                         r"received shape \(1, 5, 5, 3\)"):
        conv(np.zeros((1, 5, 5, 3)))
    with pytest.raises(ValueError, match=r"Conv2D 'c': .*received input shape \(1, 2, 9, 2\)"):
        conv(np.zeros((1, 2, 9, 2)))
    dil = layers.Conv1D(2, 3, dilation_rate=3, name="d")
    with pytest.raises(ValueError, match=r"Conv1D 'd': .*\(7 cells with dilation 3\).*received input shape \(2, 6, 1\)"):
        dil(np.zeros((2, 6, 1)))
    with pytest.raises(ValueError, match=r"Conv1D 'e': expected input of rank 3 \(batch, width, channels\)"):
        layers.Conv1D(2, 3, name="e")(np.zeros((2, 6, 1, 1)))
    with pytest.raises(ValueError, match=r"DepthwiseConv2D 'f': expected input of rank 4"):
        layers.DepthwiseConv2D(3, name="f")(np.zeros((2, 6)))
    # "same" padding never fails, whatever the kernel
    assert layers.Conv2D(1, 7, padding="same")(np.zeros((1, 2, 3, 1))).shape == (1, 2, 3, 1)
