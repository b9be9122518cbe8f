"""Embedding and Masking: lookups, masks, float64 gradient checks, PyTorch parity, fixed-order
scatter-add (thread-count independence), id validation and errors."""
import numpy as np
import pytest

import cydnn
from cydnn import layers
from helpers import check_layer_gradients, numeric_grad


# ---------------------------------------------------------------- Embedding
def test_lookup_shapes_weights_and_default_initializer():
    layer = layers.Embedding(50, 8)
    ids = np.random.default_rng(0).integers(0, 50, (4, 7))
    out = layer(ids)
    assert out.shape == (4, 7, 8) and out.dtype == np.float32
    assert layer.weight_names == ["embeddings"] and layer.embeddings.shape == (50, 8)
    np.testing.assert_array_equal(out, layer.embeddings[ids])
    # Keras' "uniform": RandomUniform(-0.05, 0.05)
    assert np.abs(layer.embeddings).max() <= 0.05 and layer.embeddings.std() > 0.02
    assert layer.compute_output_shape((None, 7)) == (None, 7, 8)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64, np.uint64, np.float32, np.float64])
def test_ids_of_any_integer_dtype_or_floats_holding_integers(dtype):
    layer = layers.Embedding(100, 3)
    ids = np.array([[0, 5, 99], [42, 7, 1]])
    np.testing.assert_array_equal(layer(ids.astype(dtype)), layer.embeddings[ids])


def test_ids_of_other_ranks():
    layer = layers.Embedding(10, 2)
    ids = np.arange(12).reshape(2, 3, 2) % 10
    assert layer(ids).shape == (2, 3, 2, 2)
    single = layers.Embedding(10, 2)
    assert single(np.array([3, 4])).shape == (2, 2)


def test_mask_zero():
    ids = np.array([[3, 1, 0, 0], [2, 0, 5, 0]])
    assert layers.Embedding(6, 2).compute_mask(ids) is None
    mask = layers.Embedding(6, 2, mask_zero=True).compute_mask(ids)
    np.testing.assert_array_equal(mask, ids != 0)
    assert mask.dtype == bool


def test_gradient_check_float64():
    rng = np.random.default_rng(0)
    layer = layers.Embedding(7, 3, dtype="float64")
    ids = np.array([[0, 3, 3, 6], [1, 3, 0, 2]], dtype=np.float64)  # repeated ids accumulate
    dx, grads = check_layer_gradients(layer, ids)
    assert dx is None  # no gradient with respect to ids
    assert np.all(grads[0][[4, 5]] == 0)  # rows never looked up get zero gradient
    dy = rng.standard_normal((2, 4, 3))
    layer.forward(ids)
    layer.backward(dy)
    np.testing.assert_allclose(layer.grads[0][3], dy[0, 1] + dy[0, 2] + dy[1, 1])


def test_accumulate_grads_adds():
    layer = layers.Embedding(5, 2, dtype="float64")
    ids = np.array([[1, 2, 1]])
    dy = np.ones((1, 3, 2))
    layer(ids)
    layer.forward(ids)
    layer.backward(dy)
    first = layer.grads[0].copy()
    layer.accumulate_grads = True
    layer.forward(ids)
    layer.backward(dy)
    np.testing.assert_array_equal(layer.grads[0], 2 * first)
    np.testing.assert_array_equal(first[1], [2, 2])


def test_matches_torch_embedding_forward_and_gradient():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    layer = layers.Embedding(30, 6)
    ids = rng.integers(0, 30, (8, 11))
    out = layer(ids)
    dy = rng.standard_normal(out.shape).astype(np.float32)
    layer.forward(ids)
    layer.backward(dy)
    emb = torch.nn.Embedding(30, 6)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(layer.embeddings))
    tout = emb(torch.tensor(ids))
    tout.backward(torch.tensor(dy))
    np.testing.assert_array_equal(out, tout.detach().numpy())
    np.testing.assert_allclose(layer.grads[0], emb.weight.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_scatter_add_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 20, (64, 50))  # 64 x 50 x 40 values: enough work for every thread
    ids[:, 30:] = 0  # skewed: padding everywhere
    dy = rng.standard_normal((64, 50, 40)).astype(np.float32)
    results = []
    for n in (1, 2, 3, 5):
        cydnn.set_num_threads(n)
        layer = layers.Embedding(20, 40, embeddings_initializer="random_normal")
        layer(ids)
        layer.forward(ids)
        layer.backward(dy)
        results.append(layer.grads[0].copy())
    for r in results[1:]:
        np.testing.assert_array_equal(results[0], r)
    ref = np.zeros((20, 40))
    np.add.at(ref, ids.reshape(-1), dy.reshape(-1, 40).astype(np.float64))
    np.testing.assert_allclose(results[0], ref, rtol=1e-4, atol=1e-4)


def test_out_of_range_and_non_integer_ids_are_refused():
    layer = layers.Embedding(10, 2, name="emb")
    with pytest.raises(ValueError, match=r"Embedding 'emb': expected ids in \[0, 10\) \(input_dim=10\), "
                                         r"received id 10 at index \(1, 0\)"):
        layer(np.array([[1, 2], [10, 3]]))
    with pytest.raises(ValueError, match=r"received id -1 at index \(0, 1\)"):
        layer(np.array([[1, -1]]))
    with pytest.raises(ValueError, match=r"received id 12 at index \(0, 0\)"):
        layer(np.array([[12.0, 1.0]]))
    with pytest.raises(ValueError, match=r"received id nan"):
        layer(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"Embedding 'emb': expected integer ids in \[0, 10\), received "
                                         r"non-integer id 2.5 at index \(0, 1\)"):
        layer(np.array([[1.0, 2.5]]))
    with pytest.raises(TypeError, match=r"Embedding 'emb': expected integer ids .*received dtype <U1"):
        layer(np.array([["a", "b"]]))


def test_wrong_rank_after_build():
    layer = layers.Embedding(10, 2, name="emb")
    layer(np.zeros((2, 5), dtype=int))
    assert layer(np.zeros((3, 9), dtype=int)).shape == (3, 9, 2)  # another length is fine
    with pytest.raises(ValueError, match=r"Embedding 'emb': expected ids of rank 2 \(shape \(None, None\)\), "
                                         r"received shape \(2, 5, 1\)"):
        layer(np.zeros((2, 5, 1), dtype=int))


def test_a_vocabulary_beyond_float32_integers_warns():
    layer = layers.Embedding(2 ** 24 + 10, 1, embeddings_initializer="zeros", name="big")
    with pytest.warns(UserWarning, match=r"Embedding 'big': input_dim=16777226 exceeds 2\*\*24"):
        layer.ensure_built((None, 3))
    ids = np.array([[2 ** 24 + 1, 0, 5]])  # integer ids are used as they are
    layer.forward(ids)
    layer.backward(np.ones((1, 3, 1), dtype=np.float32))
    assert layer.grads[0][2 ** 24 + 1, 0] == 1 and layer.grads[0][2 ** 24, 0] == 0


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match=r"expected input_dim to be a positive int, received input_dim=0"):
        layers.Embedding(0, 3)
    with pytest.raises(ValueError, match=r"expected output_dim to be a positive int, received output_dim=2.5"):
        layers.Embedding(4, 2.5)


def test_in_a_model_float_ids_round_trip_and_training_moves_only_used_rows():
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.Embedding(20, 4, input_length=3), layers.Flatten(), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    before = model.layers[0].get_weights()[0]
    model.fit(ids, np.array([1.0, -1.0]), epochs=2, verbose=0)
    after = model.layers[0].get_weights()[0]
    changed = np.flatnonzero(np.any(after != before, axis=1))
    np.testing.assert_array_equal(changed, [1, 2, 3, 4, 5, 6])
    with pytest.raises(ValueError, match=r"Embedding 'embedding.*': expected ids in \[0, 20\)"):
        model.predict(np.array([[1, 2, 25]]))


def test_regularizer_and_config_round_trip():
    layer = layers.Embedding(9, 3, embeddings_regularizer="l2", mask_zero=True, input_length=5)
    clone = layers.Embedding.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.mask_zero and clone._declared_input_shape == (None, 5)
    layer(np.ones((1, 5), dtype=int))
    assert layer.regularization_penalty() > 0


# ---------------------------------------------------------------- Masking
def _masked_data():
    x = np.random.default_rng(3).standard_normal((3, 5, 4))
    x[0, 1] = -1.0
    x[2, 3:] = -1.0
    x[1, 2, :2] = -1.0  # only some features equal the mask value: not masked
    return x


def test_masking_forward_and_mask():
    x = _masked_data()
    layer = layers.Masking(mask_value=-1.0)
    y = layer(x)
    keep = np.ones((3, 5), dtype=bool)
    keep[0, 1] = keep[2, 3] = keep[2, 4] = False
    np.testing.assert_array_equal(layer.compute_mask(x), keep)
    np.testing.assert_array_equal(y, x.astype(np.float32) * keep[..., None])
    assert np.all(y[0, 1] == 0)


def test_masking_gradient_check_float64():
    x = _masked_data()
    layer = layers.Masking(mask_value=-1.0, dtype="float64")
    layer(x)
    keep = layer.compute_mask(x)
    dy = np.random.default_rng(4).standard_normal(x.shape)
    layer.forward(x)
    dx = layer.backward(dy)

    def loss():
        return np.sum(layer.forward(x) * dy)

    num = numeric_grad(loss, x)
    # unmasked steps: central differences; masked steps are where the mask itself jumps, and the
    # gradient there is zero by definition (as in Keras)
    np.testing.assert_allclose(dx[keep], num[keep], rtol=1e-6, atol=1e-8)
    assert np.all(dx[~keep] == 0)


def test_masking_in_a_model_passes_the_mask_to_attention_pooling():
    x = _masked_data()
    model = cydnn.Sequential([layers.Masking(mask_value=-1.0, input_shape=(None, 4)),
                              layers.AttentionPooling(query_initializer="glorot_uniform")])
    model.predict(x)
    scores = model.layers[1].last_attention_scores
    assert scores[0, 1] == 0 and np.all(scores[2, 3:] == 0)


def test_masking_errors_and_config():
    with pytest.raises(ValueError, match=r"Masking 'mk': expected input of rank 3 \(batch, time, features\), "
                                         r"received shape \(2, 4\)"):
        layers.Masking(name="mk")(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"expected mask_value to be a number, received mask_value='x'"):
        layers.Masking(mask_value="x")
    layer = layers.Masking(mask_value=2.0)
    assert layers.Masking.from_config(layer.get_config()).get_config() == layer.get_config()
