"""Transfer learning: freezing layers (weights and BatchNormalization statistics), unfreezing,
optimizer state kept across the model's re-packing, and a pretrained base reused by name."""
import numpy as np
import pytest

import cydnn
from cydnn import layers, optimizers


def data(n=96, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    return x, y % classes


def base_and_head(bn=False):
    base = [layers.Dense(8, activation="relu", name="base_dense")]
    if bn:
        base.append(layers.BatchNormalization(name="base_bn", momentum=0.5))
    head = [layers.Dense(3, activation="softmax", name="head")]
    model = cydnn.Sequential([layers.InputLayer(shape=(6,))] + base + head)
    return model


def slot_segment(model, slot, layer_name, index):
    off, n = model._layout[(layer_name, index)]
    return model.optimizer._slots[slot][off:off + n].copy()


@pytest.mark.parametrize("make_opt", [lambda: optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01),
                                      lambda: optimizers.Adam(0.01), lambda: optimizers.AdamW(0.01)])
def test_frozen_weights_unchanged_bit_for_bit_others_change(make_opt):
    cydnn.set_random_seed(0)
    x, y = data()
    model = base_and_head()
    model.compile(make_opt(), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)  # the optimizer has state for every weight now
    model.get_layer("base_dense").trainable = False
    frozen = model.get_layer("base_dense").get_weights()
    head = model.get_layer("head").get_weights()
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    for a, b in zip(frozen, model.get_layer("base_dense").get_weights()):
        assert a.tobytes() == b.tobytes()  # bit for bit (weight decay and momentum included)
    for a, b in zip(head, model.get_layer("head").get_weights()):
        assert not np.array_equal(a, b)
    assert model.count_params() == sum(w.size for w in model.weights)
    assert [w.shape for w in model.trainable_weights] == [(8, 3), (3,)]


def test_unfreezing_trains_again_and_keeps_optimizer_state_of_trainable_weights():
    cydnn.set_random_seed(1)
    x, y = data()
    model = base_and_head()
    model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    head_m = slot_segment(model, "m", "head", 0)
    head_v = slot_segment(model, "v", "head", 0)
    base_m = slot_segment(model, "m", "base_dense", 0)

    model.get_layer("base_dense").trainable = False
    model.fit(x, y, epochs=0, verbose=0)  # re-packs the flat buffer, no step
    assert ("base_dense", 0) not in model._layout
    np.testing.assert_array_equal(slot_segment(model, "m", "head", 0), head_m)
    np.testing.assert_array_equal(slot_segment(model, "v", "head", 0), head_v)

    model.fit(x, y, epochs=1, verbose=0)
    kernel = model.get_layer("base_dense").kernel.copy()
    model.get_layer("base_dense").trainable = True
    model.fit(x, y, epochs=0, verbose=0)
    # a weight that was frozen comes back with fresh (zero) state; the head keeps its own
    np.testing.assert_array_equal(slot_segment(model, "m", "base_dense", 0), 0)
    assert np.any(base_m != 0)
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(kernel, model.get_layer("base_dense").kernel)


def test_frozen_batch_normalization_uses_and_keeps_its_moving_statistics():
    cydnn.set_random_seed(2)
    x, y = data()
    x = x * 3.0 + 1.0  # statistics far from the initial (0, 1)
    model = base_and_head(bn=True)
    model.compile(optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    bn = model.get_layer("base_bn")
    bn.trainable = False
    before = bn.get_weights()  # gamma, beta, moving_mean, moving_variance
    assert not np.allclose(before[2], 0)
    # frozen: a training-mode forward is the inference forward (moving statistics, not the batch's)
    np.testing.assert_allclose(model(x[:10], training=True), model(x[:10], training=False), rtol=1e-6, atol=1e-7)
    head = model.get_layer("head").kernel.copy()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(before, bn.get_weights()):
        assert a.tobytes() == b.tobytes()
    assert not np.array_equal(head, model.get_layer("head").kernel)

    bn.trainable = True  # unfrozen: batch statistics again, and the moving averages move
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(before[2], bn.get_weights()[2])


def test_pretrained_base_loaded_by_name_into_a_new_model(tmp_path):
    cydnn.set_random_seed(3)
    x, y = data()
    pre = base_and_head(bn=True)
    pre.compile("adam", "sparse_categorical_crossentropy")
    pre.fit(x, y, epochs=2, verbose=0)
    pre.save_weights(tmp_path / "pre.weights.npz")

    new = cydnn.Sequential([layers.InputLayer(shape=(6,)), layers.Dense(8, activation="relu", name="base_dense"),
                            layers.BatchNormalization(name="base_bn"), layers.Dense(5, activation="softmax",
                                                                                   name="head")])
    with pytest.warns(UserWarning, match="head"):
        new.load_weights(tmp_path / "pre.weights.npz", skip_mismatch=True)
    for name in ("base_dense", "base_bn"):
        for a, b in zip(pre.get_layer(name).get_weights(), new.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for name in ("base_dense", "base_bn"):
        new.get_layer(name).trainable = False
    new.compile("adam", "sparse_categorical_crossentropy")
    y5 = np.random.default_rng(0).integers(0, 5, len(x))
    new.fit(x, y5, epochs=2, verbose=0)
    for name in ("base_dense", "base_bn"):
        for a, b in zip(pre.get_layer(name).get_weights(), new.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_frozen_conv_base_fine_tunes_a_new_head():
    cydnn.set_random_seed(4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    model = cydnn.Sequential([layers.InputLayer(shape=(8, 8, 1)), layers.Conv2D(4, 3, activation="relu", name="c1"),
                              layers.MaxPool2D(2), layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile(optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.get_layer("c1").trainable = False
    conv = model.get_layer("c1").get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    for a, b in zip(conv, model.get_layer("c1").get_weights()):
        assert a.tobytes() == b.tobytes()
