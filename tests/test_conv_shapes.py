"""Output-shape logic of the convolution and pooling layers, as properties (hypothesis):

    out = floor((in + pad_total - dilation * (k - 1) - 1) / stride) + 1

with pad_total 0 ("valid"), max((ceil(in / stride) - 1) * stride + dilation * (k - 1) + 1 - in, 0)
("same"), dilation * (k - 1) ("causal") or the explicit cells. The declared shape must equal the
shape of an actual forward pass, and a window larger than the padded input must be refused with
a ValueError naming the layer."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cydnn import layers

sizes = st.integers(1, 12)
kernels = st.integers(1, 5)
strides = st.integers(1, 4)
dilations = st.integers(1, 3)
settings.register_profile("cydnn", max_examples=60, deadline=None)
settings.load_profile("cydnn")


def expected_length(size, k, s, d, padding):
    eff = d * (k - 1) + 1
    if padding == "valid":
        total = 0
    elif padding == "same":
        total = max((math.ceil(size / s) - 1) * s + eff - size, 0)
    elif padding == "causal":
        total = eff - 1
    else:
        total = sum(padding)
    if size + total < eff:
        return None
    return (size + total - d * (k - 1) - 1) // s + 1


paddings_2d = st.one_of(st.sampled_from(["valid", "same"]),
                        st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                                  st.tuples(st.integers(0, 3), st.integers(0, 3))))


@given(h=sizes, w=sizes, kh=kernels, kw=kernels, sh=strides, sw=strides, dh=dilations, dw=dilations,
       padding=paddings_2d)
def test_conv2d_output_shape(h, w, kh, kw, sh, sw, dh, dw, padding):
    layer = layers.Conv2D(2, (kh, kw), strides=(sh, sw), padding=padding, dilation_rate=(dh, dw))
    pad_h = padding if isinstance(padding, str) else padding[0]
    pad_w = padding if isinstance(padding, str) else padding[1]
    oh, ow = expected_length(h, kh, sh, dh, pad_h), expected_length(w, kw, sw, dw, pad_w)
    x = np.zeros((2, h, w, 3), dtype=np.float32)
    if oh is None or ow is None:
        with pytest.raises(ValueError, match=r"Conv2D '.*': expected the padded input to be at least as large as "
                                             r"the kernel .*received input shape \(2, "):
            layer(x)
        return
    assert layer.compute_output_shape((None, h, w, 3)) == (None, oh, ow, 2)
    assert layer(x).shape == (2, oh, ow, 2)


@given(width=sizes, k=kernels, s=strides, d=dilations,
       padding=st.one_of(st.sampled_from(["valid", "same", "causal"]),
                         st.tuples(st.integers(0, 3), st.integers(0, 3))))
def test_conv1d_output_shape(width, k, s, d, padding):
    layer = layers.Conv1D(2, k, strides=s, padding=padding, dilation_rate=d)
    out = expected_length(width, k, s, d, padding)
    x = np.zeros((1, width, 2), dtype=np.float32)
    if out is None:
        with pytest.raises(ValueError, match=r"Conv1D '.*': expected the padded input"):
            layer(x)
        return
    assert layer.compute_output_shape((None, width, 2)) == (None, out, 2)
    assert layer(x).shape == (1, out, 2)


@given(h=sizes, w=sizes, k=kernels, s=strides, d=dilations, m=st.integers(1, 3),
       padding=st.sampled_from(["valid", "same"]))
def test_depthwise_output_shape(h, w, k, s, d, m, padding):
    layer = layers.DepthwiseConv2D(k, strides=s, padding=padding, dilation_rate=d, depth_multiplier=m)
    oh, ow = expected_length(h, k, s, d, padding), expected_length(w, k, s, d, padding)
    x = np.zeros((1, h, w, 2), dtype=np.float32)
    if oh is None or ow is None:
        with pytest.raises(ValueError, match=r"DepthwiseConv2D '.*': expected the padded input"):
            layer(x)
        return
    assert layer(x).shape == (1, oh, ow, 2 * m)


@given(h=sizes, w=sizes, ph=kernels, pw=kernels, sh=st.one_of(st.none(), strides), sw=strides,
       padding=st.sampled_from(["valid", "same"]), kind=st.sampled_from(["max", "avg"]))
def test_pool2d_output_shape(h, w, ph, pw, sh, sw, padding, kind):
    cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    layer = cls((ph, pw), strides=None if sh is None else (sh, sw), padding=padding)
    s = (ph, pw) if sh is None else (sh, sw)
    oh, ow = expected_length(h, ph, s[0], 1, padding), expected_length(w, pw, s[1], 1, padding)
    x = np.random.default_rng(0).standard_normal((2, h, w, 3)).astype(np.float32)
    if oh is None or ow is None:
        with pytest.raises(ValueError, match=r"Pooling2D '.*': expected the padded input to be at least as large as "
                                             r"the pool window"):
            layer(x)
        return
    y = layer(x)
    assert y.shape == (2, oh, ow, 3)
    # every window holds at least one real cell: outputs are finite and within the input's range
    assert np.all(np.isfinite(y)) and y.max() <= x.max() and y.min() >= x.min()


@given(width=sizes, p=kernels, s=st.one_of(st.none(), strides), padding=st.sampled_from(["valid", "same"]))
def test_pool1d_output_shape(width, p, s, padding):
    layer = layers.MaxPooling1D(p, strides=s, padding=padding)
    out = expected_length(width, p, p if s is None else s, 1, padding)
    x = np.zeros((1, width, 2), dtype=np.float32)
    if out is None:
        with pytest.raises(ValueError, match=r"MaxPooling1D '.*': expected the padded input"):
            layer(x)
        return
    assert layer(x).shape == (1, out, 2)


@given(h=sizes, w=sizes, pads=st.tuples(*[st.integers(0, 3)] * 4))
def test_zero_padding_output_shape(h, w, pads):
    t, b, le, r = pads
    layer = layers.ZeroPadding2D(((t, b), (le, r)))
    assert layer(np.ones((1, h, w, 2))).shape == (1, h + t + b, w + le + r, 2)
