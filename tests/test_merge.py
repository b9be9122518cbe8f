"""Merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot): output
shapes, float64 finite-difference gradients of every input (broadcasting, three inputs, every
Dot layout), PyTorch parity of forward and gradients, masks, configs, and error messages."""
import numpy as np
import pytest

from cydnn import layers
from helpers import check_layer_gradients


def _inputs(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def _built(layer, xs):
    layer(xs)  # builds on first use (float64 layers)
    return layer


CASES = [  # (id, layer factory, input shapes, output shape)
    ("add", lambda: layers.Add(dtype="float64"), [(3, 4), (3, 4)], (3, 4)),
    ("add3", lambda: layers.Add(dtype="float64"), [(3, 4), (3, 4), (3, 4)], (3, 4)),
    ("add_broadcast", lambda: layers.Add(dtype="float64"), [(2, 3, 4), (2, 1, 4), (2, 3, 1)], (2, 3, 4)),
    ("subtract", lambda: layers.Subtract(dtype="float64"), [(3, 4), (3, 4)], (3, 4)),
    ("subtract_broadcast", lambda: layers.Subtract(dtype="float64"), [(3, 1), (3, 5)], (3, 5)),
    ("multiply", lambda: layers.Multiply(dtype="float64"), [(3, 4), (3, 4)], (3, 4)),
    ("multiply3_broadcast", lambda: layers.Multiply(dtype="float64"), [(2, 3, 4), (2, 3, 1), (2, 1, 4)], (2, 3, 4)),
    ("average", lambda: layers.Average(dtype="float64"), [(3, 4), (3, 4), (3, 4)], (3, 4)),
    ("average_broadcast", lambda: layers.Average(dtype="float64"), [(3, 4), (3, 1)], (3, 4)),
    ("maximum", lambda: layers.Maximum(dtype="float64"), [(3, 4), (3, 4), (3, 4)], (3, 4)),
    ("minimum", lambda: layers.Minimum(dtype="float64"), [(3, 4), (3, 4)], (3, 4)),
    ("maximum_broadcast", lambda: layers.Maximum(dtype="float64"), [(3, 4), (3, 1)], (3, 4)),
    ("concat_last", lambda: layers.Concatenate(dtype="float64"), [(3, 2), (3, 4), (3, 1)], (3, 7)),
    ("concat_time", lambda: layers.Concatenate(axis=1, dtype="float64"), [(2, 3, 4), (2, 5, 4)], (2, 8, 4)),
    ("concat_mid_of_4d", lambda: layers.Concatenate(axis=2, dtype="float64"), [(2, 3, 1, 2), (2, 3, 2, 2)],
     (2, 3, 3, 2)),
    ("dot_vectors", lambda: layers.Dot(axes=1, dtype="float64"), [(4, 5), (4, 5)], (4, 1)),
    ("dot_seq_seq", lambda: layers.Dot(axes=2, dtype="float64"), [(2, 3, 4), (2, 5, 4)], (2, 3, 5)),
    ("dot_seq_vec", lambda: layers.Dot(axes=(2, 1), dtype="float64"), [(2, 3, 4), (2, 4)], (2, 3)),
    ("dot_vec_seq", lambda: layers.Dot(axes=(-1, -1), dtype="float64"), [(2, 4), (2, 3, 4)], (2, 3)),
    ("dot_axis1", lambda: layers.Dot(axes=1, dtype="float64"), [(2, 4, 3), (2, 4, 5)], (2, 3, 5)),
    ("dot_normalized", lambda: layers.Dot(axes=1, normalize=True, dtype="float64"), [(4, 5), (4, 5)], (4, 1)),
    ("dot_normalized_seq", lambda: layers.Dot(axes=2, normalize=True, dtype="float64"), [(2, 3, 4), (2, 2, 4)],
     (2, 3, 2)),
]


@pytest.mark.parametrize("make,shapes,out_shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_merge_output_shapes(make, shapes, out_shape):
    layer = make()
    y = layer(_inputs(shapes))
    assert y.shape == out_shape
    assert layer.compute_output_shape([(None,) + s[1:] for s in shapes]) == (None,) + out_shape[1:]
    assert layer.output_shape == (None,) + out_shape[1:]


@pytest.mark.parametrize("make,shapes,out_shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_merge_gradients_match_finite_differences(make, shapes, out_shape):
    xs = _inputs(shapes, seed=1)
    layer = _built(make(), xs)
    dx, grads = check_layer_gradients(layer, xs, rtol=1e-6, atol=1e-9)
    assert [d.shape for d in dx] == [x.shape for x in xs] and grads == []
    ids = [id(d) for d in layer.backward(np.ones(out_shape))]
    assert len(set(ids)) == len(ids)  # a buffer of its own per input


def test_maximum_and_minimum_send_the_gradient_to_the_first_input_on_ties():
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[1.0, 5.0, 3.0]])
    for layer in (layers.Maximum(dtype="float64"), layers.Minimum(dtype="float64")):
        layer([a, b])
        layer.forward([a, b])
        da, db = layer.backward(np.array([[10.0, 20.0, 30.0]]))
        won_by_b = 20.0 if isinstance(layer, layers.Maximum) else 0.0
        np.testing.assert_array_equal(da, [[10.0, 20.0 - won_by_b, 30.0]])
        np.testing.assert_array_equal(db, [[0.0, won_by_b, 0.0]])


def test_no_input_gradients_when_not_needed():
    layer = layers.Add(dtype="float64")
    xs = _inputs([(2, 3), (2, 3)])
    layer(xs)
    layer.need_input_grad = False
    layer.forward(xs)
    assert layer.backward(np.ones((2, 3))) == [None, None]


def test_call_on_arrays_returns_a_new_array_of_the_layer_dtype():
    layer = layers.Add()
    a, b = [[1, 2]], [[3, 4]]
    y = layer([a, b])
    assert y.dtype == np.float32 and y.tolist() == [[4.0, 6.0]]
    y2 = layer([a, b])
    assert y2 is not y and not np.shares_memory(y, y2)
    assert layers.add([np.ones((1, 2)), np.ones((1, 2))]).tolist() == [[2.0, 2.0]]
    assert layers.concatenate([np.ones((1, 2)), np.zeros((1, 1))]).tolist() == [[1.0, 1.0, 0.0]]


# ============================================================ PyTorch parity
def _torch_parity(layer, xs, torch_fn):
    torch = pytest.importorskip("torch")
    layer(xs)
    y = layer.forward(xs)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    dxs = layer.backward(dy)
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    ty = torch_fn(torch, ts)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    for d, t in zip(dxs, ts):
        np.testing.assert_allclose(d, t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_add_matches_torch():
    _torch_parity(layers.Add(dtype="float64"), _inputs([(4, 3, 5), (4, 1, 5), (4, 3, 5)]),
                  lambda torch, t: t[0] + t[1] + t[2])


def test_subtract_matches_torch():
    _torch_parity(layers.Subtract(dtype="float64"), _inputs([(4, 5), (4, 5)]), lambda torch, t: t[0] - t[1])


def test_multiply_matches_torch():
    _torch_parity(layers.Multiply(dtype="float64"), _inputs([(4, 5), (4, 1), (4, 5)]),
                  lambda torch, t: t[0] * t[1] * t[2])


def test_average_matches_torch():
    _torch_parity(layers.Average(dtype="float64"), _inputs([(4, 5), (4, 5), (4, 5)]),
                  lambda torch, t: torch.stack(t).mean(0))


def test_maximum_minimum_match_torch():
    _torch_parity(layers.Maximum(dtype="float64"), _inputs([(4, 5), (4, 5)]), lambda torch, t: torch.maximum(*t))
    _torch_parity(layers.Minimum(dtype="float64"), _inputs([(4, 5), (4, 5)]), lambda torch, t: torch.minimum(*t))


def test_concatenate_matches_torch():
    _torch_parity(layers.Concatenate(dtype="float64"), _inputs([(4, 2), (4, 3)]), lambda torch, t: torch.cat(t, -1))
    _torch_parity(layers.Concatenate(axis=1, dtype="float64"), _inputs([(2, 3, 4), (2, 1, 4)]),
                  lambda torch, t: torch.cat(t, 1))


def test_dot_matches_torch():
    _torch_parity(layers.Dot(axes=2, dtype="float64"), _inputs([(2, 3, 4), (2, 5, 4)]),
                  lambda torch, t: torch.bmm(t[0], t[1].transpose(1, 2)))
    _torch_parity(layers.Dot(axes=1, normalize=True, dtype="float64"), _inputs([(4, 6), (4, 6)]),
                  lambda torch, t: torch.nn.functional.cosine_similarity(t[0], t[1], dim=1, eps=0)[:, None])


# ============================================================ masks, config
def test_elementwise_merge_ands_masks():
    layer = layers.Add()
    xs = [np.zeros((2, 3, 4)), np.zeros((2, 3, 4))]
    m1 = np.array([[1, 1, 0], [1, 1, 1]], dtype=bool)
    m2 = np.array([[1, 0, 0], [1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(layer.compute_mask(xs, [m1, m2]), m1 & m2)
    np.testing.assert_array_equal(layer.compute_mask(xs, [None, m2]), m2)
    assert layer.compute_mask(xs, None) is None and layer.compute_mask(xs, [None, None]) is None


def test_concatenate_masks_join_along_time_and_and_along_features():
    xs = [np.zeros((2, 3, 4)), np.zeros((2, 2, 4))]
    m1 = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)
    joined = layers.Concatenate(axis=1).compute_mask(xs, [m1, None])
    np.testing.assert_array_equal(joined, np.concatenate([m1, np.ones((2, 2), bool)], axis=1))
    same_t = [np.zeros((2, 3, 4)), np.zeros((2, 3, 1))]
    m2 = np.array([[1, 0, 1], [1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(layers.Concatenate().compute_mask(same_t, [m1, m2]), m1 & m2)


@pytest.mark.parametrize("layer", [layers.Add(name="plus"), layers.Concatenate(axis=1), layers.Dot(axes=(2, 1),
                                                                                                   normalize=True),
                                   layers.Subtract(), layers.Maximum(dtype="float64")])
def test_merge_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


# ============================================================ errors
def test_error_incompatible_shapes():
    with pytest.raises(ValueError, match=r"Add 'bad': expected inputs of the same shape \(or size 1 on an axis, to "
                                         r"broadcast\), received shapes \[\(None, 4\), \(None, 5\)\]"):
        layers.Add(name="bad")([np.zeros((2, 4)), np.zeros((2, 5))])
    with pytest.raises(ValueError, match=r"Multiply 'm': expected inputs of equal rank, received shapes "
                                         r"\[\(None, 4\), \(None, 2, 4\)\]"):
        layers.Multiply(name="m")([np.zeros((2, 4)), np.zeros((2, 2, 4))])


def test_error_batch_sizes_differ():
    with pytest.raises(ValueError, match=r"Average 'avg': expected inputs with the same batch size, received shapes "
                                         r"\[\(2, 4\), \(3, 4\)\]"):
        layers.Average(name="avg")([np.zeros((2, 4)), np.zeros((3, 4))])


def test_error_wrong_number_of_inputs():
    with pytest.raises(ValueError, match=r"Add 'one': expected a list of at least 2 inputs, received 1"):
        layers.Add(name="one")([np.zeros((2, 4))])
    with pytest.raises(ValueError, match=r"Subtract 'three': expected a list of exactly 2 inputs, received 3"):
        layers.Subtract(name="three")([np.zeros((2, 4))] * 3)
    with pytest.raises(TypeError, match=r"Add 'notlist': expected a list of at least 2 inputs, received ndarray"):
        layers.Add(name="notlist")(np.zeros((2, 4)))


def test_error_concatenate_shapes_and_axis():
    with pytest.raises(ValueError, match=r"Concatenate 'c': expected inputs whose sizes match except on the "
                                         r"concatenation axis 2, received shapes \[\(None, 3, 4\), \(None, 5, 4\)\]: "
                                         r"sizes \[3, 5\] on axis 1"):
        layers.Concatenate(name="c")([np.zeros((2, 3, 4)), np.zeros((2, 5, 4))])
    with pytest.raises(ValueError, match=r"Concatenate 'c0': expected axis in \[1, 1\] or \[-1, -1\] \(not the batch "
                                         r"axis\) for inputs of rank 2, received axis=0"):
        layers.Concatenate(axis=0, name="c0")([np.zeros((2, 3)), np.zeros((2, 3))])
    with pytest.raises(TypeError, match=r"Concatenate 'cf': expected axis to be an int, received axis=1.5"):
        layers.Concatenate(axis=1.5, name="cf")


def test_error_dot_sizes_and_ranks():
    with pytest.raises(ValueError, match=r"Dot 'd': expected equal sizes on the dot axes \(1, 1\), received shapes "
                                         r"\[\(None, 4\), \(None, 5\)\] \(sizes 4 and 5\)"):
        layers.Dot(axes=1, name="d")([np.zeros((2, 4)), np.zeros((2, 5))])
    with pytest.raises(ValueError, match=r"Dot 'd4': expected two inputs of rank 2 or 3, received shapes"):
        layers.Dot(axes=1, name="d4")([np.zeros((2, 4, 1, 1)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match=r"Dot 'dax': expected axes to be an int or a pair of ints, received "
                                         r"axes=\(1, 2, 3\)"):
        layers.Dot(axes=(1, 2, 3), name="dax")
