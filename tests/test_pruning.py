"""Pruning: exact magnitude masks (global and per layer), masks kept through optimizer steps,
schedules, the pruning callback, strip, and the lottery-ticket procedure."""
import numpy as np
import pytest

import cydnn
from cydnn import callbacks, layers, optimizers, pruning


def mlp(seed=0, optimizer=None, bn=False):
    cydnn.set_random_seed(seed)
    stack = [layers.InputLayer(shape=(64,)), layers.Dense(48, activation="relu", name="h1")]
    if bn:
        stack.append(layers.BatchNormalization(name="bn"))
    stack += [layers.Dense(24, activation="relu", name="h2"), layers.Dense(10, activation="softmax", name="out")]
    model = cydnn.Sequential(stack)
    model.compile(optimizer or optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def digits():
    (x, y), (xt, yt) = cydnn.datasets.load_digits()
    return (x.reshape(len(x), -1).astype(np.float32) / 16.0, y), (xt.reshape(len(xt), -1).astype(np.float32) / 16.0,
                                                                  yt)


KERNELS = ["h1/kernel", "h2/kernel", "out/kernel"]


def kernel(model, key):
    layer, name = key.split("/")
    layer = model.get_layer(layer)
    return layer.weights[layer.weight_names.index(name)]


# ---------------------------------------------------------------------------------------------
# masks
def test_prunable_weights_are_the_kernels_by_default():
    model = mlp(bn=True)
    assert list(pruning.prunable_weights(model)) == KERNELS
    every = list(pruning.prunable_weights(model, kernels_only=False))
    assert every == ["h1/kernel", "h1/bias", "bn/gamma", "bn/beta", "h2/kernel", "h2/bias", "out/kernel", "out/bias"]


@pytest.mark.parametrize("target", [0.0, 0.3, 0.5, 0.8, 0.95])
def test_global_magnitude_masks_reach_the_sparsity_exactly_and_prune_the_smallest(target):
    model = mlp()
    masks = pruning.magnitude_masks(model, target)
    assert list(masks) == KERNELS and all(m.dtype == bool for m in masks.values())
    n = sum(m.size for m in masks.values())
    assert sum(m.size - m.sum() for m in masks.values()) == round(target * n)
    assert pruning.sparsity(masks) == pytest.approx(round(target * n) / n)
    pruned = np.concatenate([np.abs(kernel(model, k))[~m] for k, m in masks.items()])
    kept = np.concatenate([np.abs(kernel(model, k))[m] for k, m in masks.items()])
    if pruned.size and kept.size:
        assert pruned.max() <= kept.min()
    # the global ranking prunes the layers unevenly
    if target == 0.8:
        per_layer = [1 - masks[k].mean() for k in KERNELS]
        assert max(per_layer) - min(per_layer) > 0.01


def test_per_layer_masks_prune_each_layer_to_the_fraction():
    model = mlp()
    masks = pruning.magnitude_masks(model, 0.7, scope="layer")
    for k, m in masks.items():
        assert m.size - m.sum() == round(0.7 * m.size)
        w = np.abs(kernel(model, k))
        assert w[~m].max() <= w[m].min()


def test_ties_are_broken_deterministically_and_counts_stay_exact():
    model = mlp()
    for k in KERNELS:
        kernel(model, k)[...] = 1.0  # every magnitude equal
    masks = pruning.magnitude_masks(model, 0.5)
    n = sum(m.size for m in masks.values())
    assert sum(m.size - m.sum() for m in masks.values()) == round(0.5 * n)
    again = pruning.magnitude_masks(model, 0.5)
    assert all(np.array_equal(masks[k], again[k]) for k in masks)


def test_previous_masks_stay_pruned():
    model = mlp()
    first = pruning.magnitude_masks(model, 0.5)
    # make pruned weights large: without the previous masks they would be kept
    for k, m in first.items():
        w = kernel(model, k)
        w[~m] = 100.0
    second = pruning.magnitude_masks(model, 0.6, masks=first)
    for k in KERNELS:
        assert not np.any(second[k] & ~first[k])
    n = sum(m.size for m in second.values())
    assert sum(m.size - m.sum() for m in second.values()) == round(0.6 * n)
    lower = pruning.magnitude_masks(model, 0.2, masks=first)  # sparsity never decreases
    assert all(np.array_equal(lower[k], first[k]) for k in KERNELS)


def test_apply_masks_and_mask_errors():
    model = mlp()
    masks = pruning.magnitude_masks(model, 0.5)
    pruning.apply_masks(model, masks)
    for k, m in masks.items():
        assert np.all(kernel(model, k)[~m] == 0) and np.all(kernel(model, k)[m] != 0)
    assert pruning.sparsity(model) == pytest.approx(pruning.sparsity(masks))
    assert all(np.array_equal(a, masks[k]) for k, a in pruning.masks_from_weights(model).items())
    with pytest.raises(ValueError, match="unknown weight 'nope/kernel'"):
        pruning.apply_masks(model, {"nope/kernel": np.ones(3, bool)})
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        pruning.apply_masks(model, {"h1/kernel": np.ones((2, 2), bool)})
    with pytest.raises(ValueError, match="sparsity"):
        pruning.magnitude_masks(model, 1.5)
    with pytest.raises(ValueError, match="scope"):
        pruning.magnitude_masks(model, 0.5, scope="network")


# ---------------------------------------------------------------------------------------------
# masks through optimizer steps
class AssertPrunedAfterEachBatch(callbacks.Callback):
    def __init__(self, masks):
        super().__init__()
        self.masks, self.checked = masks, 0

    def on_train_batch_end(self, batch, logs=None):
        model = self.model
        for k, m in self.masks.items():
            assert np.all(kernel(model, k)[~m] == 0)
            layer = model.get_layer(k.split("/")[0])
            off, n = model._layout[(layer.name, 0)]
            for slot in model.optimizer._slots.values():  # momentum / moments cleared too
                assert np.all(slot[off:off + n][~m.reshape(-1)] == 0)
        self.checked += 1


@pytest.mark.parametrize("make_opt", [lambda: optimizers.SGD(0.05, momentum=0.9),
                                      lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                                      lambda: optimizers.Adam(0.005), lambda: optimizers.RMSprop(0.002, momentum=0.5)])
def test_masks_survive_optimizer_steps(make_opt, digits):
    (x, y), _ = digits
    model = mlp(optimizer=make_opt())
    model.fit(x, y, epochs=1, verbose=0)  # optimizer state exists for every weight
    masks = pruning.magnitude_masks(model, 0.8)
    checker = AssertPrunedAfterEachBatch(masks)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[pruning.MaskCallback(masks), checker])
    assert checker.checked == 2 * 23
    assert pruning.sparsity(model) == pytest.approx(pruning.sparsity(masks))
    # without the callback the momentum and gradients grow the pruned weights back
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert pruning.sparsity(model) < 0.4  # some stay 0: the digits' always-blank pixels get no gradient


def test_masks_with_gradient_accumulation(digits):
    (x, y), _ = digits
    model = mlp(optimizer=optimizers.Adam(0.005))
    masks = pruning.magnitude_masks(model, 0.6)
    model.fit(x, y, epochs=1, batch_size=32, gradient_accumulation_steps=3, verbose=0,
              callbacks=[pruning.MaskCallback(masks)])
    for k, m in masks.items():
        assert np.all(kernel(model, k)[~m] == 0)


# ---------------------------------------------------------------------------------------------
# schedules and the pruning callback
def test_constant_sparsity_schedule():
    s = pruning.ConstantSparsity(0.7, begin_step=10, end_step=50, frequency=20)
    assert [s.should_update(t) for t in (0, 9, 10, 20, 30, 50, 51, 70)] == \
        [False, False, True, False, True, True, False, False]
    assert s(30) == (True, 0.7)
    forever = pruning.ConstantSparsity(0.5, frequency=5)
    assert forever.should_update(1000) and not forever.should_update(1001)


def test_polynomial_decay_schedule():
    s = pruning.PolynomialDecay(0.1, 0.9, begin_step=100, end_step=300, power=3, frequency=30)
    assert s.sparsity(0) == pytest.approx(0.1) and s.sparsity(100) == pytest.approx(0.1)
    assert s.sparsity(200) == pytest.approx(0.9 - 0.8 * 0.5 ** 3)
    assert s.sparsity(300) == pytest.approx(0.9) and s.sparsity(10_000) == pytest.approx(0.9)
    values = [s.sparsity(t) for t in range(100, 301)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert s.should_update(100) and s.should_update(130) and s.should_update(300) and not s.should_update(301)
    with pytest.raises(ValueError, match="end_step"):
        pruning.PolynomialDecay(0.0, 0.5, begin_step=10, end_step=5)
    with pytest.raises(ValueError, match="end_step=-1"):
        pruning.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=-1)


class RecordSparsity(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(pruning.sparsity(self.model))


def test_pruning_callback_reaches_final_sparsity_exactly_and_keeps_learning(digits):
    (x, y), (xt, yt) = digits
    model = mlp(optimizer=optimizers.Adam(0.003))
    steps_per_epoch = int(np.ceil(len(x) / 64))
    end = 4 * steps_per_epoch
    schedule = pruning.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=end, frequency=10)
    cb, rec = pruning.PruningCallback(schedule), RecordSparsity()
    model.fit(x, y, epochs=10, batch_size=64, verbose=0, callbacks=[cb, rec])
    n = sum(kernel(model, k).size for k in KERNELS)
    assert cb.sparsity == round(0.9 * n) / n
    assert pruning.sparsity(model) == pytest.approx(cb.sparsity)
    assert all(b >= a for a, b in zip(rec.values, rec.values[1:]))  # pruned weights never return
    assert rec.values[0] == 0.0  # step 0: sparsity 0
    assert rec.values[end // 2] < 0.85 and rec.values[end] == pytest.approx(cb.sparsity)  # masks set at end_step
    for k, m in cb.masks.items():
        assert np.all(kernel(model, k)[~m] == 0)
    assert model.evaluate(xt, yt, return_dict=True)["accuracy"] > 0.8  # 10% of the kernels still learn
    stripped = pruning.strip(model, cb.masks)
    assert stripped is model and pruning.sparsity(model) == pytest.approx(cb.sparsity)


def test_pruning_callback_per_layer_constant(digits):
    (x, y), _ = digits
    model = mlp()
    cb = pruning.PruningCallback(pruning.ConstantSparsity(0.5, begin_step=5, frequency=5), scope="layer")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[cb])
    for k, m in cb.masks.items():
        assert m.size - m.sum() == round(0.5 * m.size)
    with pytest.raises(TypeError, match="schedule"):
        pruning.PruningCallback(0.5)


def test_pruned_model_saves_and_its_masks_are_recovered(digits, tmp_path):
    (x, y), _ = digits
    model = mlp()
    masks = pruning.magnitude_masks(model, 0.75)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[pruning.MaskCallback(masks)])
    model.save(tmp_path / "pruned.cydnn")
    loaded = cydnn.load_model(tmp_path / "pruned.cydnn")
    recovered = pruning.masks_from_weights(loaded)
    assert all(np.array_equal(recovered[k], masks[k]) for k in KERNELS)
    loaded.fit(x, y, epochs=1, verbose=0, callbacks=[pruning.MaskCallback(recovered)])
    assert pruning.sparsity(loaded) == pytest.approx(pruning.sparsity(masks))


# ---------------------------------------------------------------------------------------------
# lottery ticket
def test_lottery_ticket_returns_the_expected_masks_and_rewound_weights(digits):
    (x, y), (xt, yt) = digits
    model = mlp(seed=5, bn=True)
    initial = model.get_weights()
    keys = [f"{l.name}/{n}" for l in model.layers for n in l.weight_names]
    ticket = pruning.lottery_ticket(model, x, y, sparsity=0.8, epochs=8, batch_size=64, verbose=0)

    for a, b in zip(ticket.initial_weights, initial):
        np.testing.assert_array_equal(a, b)
    # masks: the global 80% smallest magnitudes of the dense trained kernels
    dense = dict(zip(keys, ticket.dense_weights))
    scores = np.concatenate([np.abs(dense[k]).reshape(-1) for k in KERNELS])
    threshold_count = round(0.8 * scores.size)
    expected_keep = np.ones(scores.size, bool)
    expected_keep[np.argsort(scores, kind="stable")[:threshold_count]] = False
    off = 0
    for k in KERNELS:
        m = ticket.masks[k]
        np.testing.assert_array_equal(m.reshape(-1), expected_keep[off:off + m.size])
        off += m.size
    assert ticket.sparsities == [pytest.approx(threshold_count / scores.size)]
    # rewound: initial values where kept, zero where pruned; biases and BN rewound, not pruned
    for k, w0, wr in zip(keys, initial, ticket.rewound_weights):
        expected = w0 * ticket.masks[k] if k in ticket.masks else w0
        np.testing.assert_array_equal(wr, expected)
    # retrained with the mask: pruned weights still zero, the ticket learned
    for k, m in ticket.masks.items():
        assert np.all(kernel(model, k)[~m] == 0)
    assert len(ticket.histories) == 2
    assert model.optimizer.iterations == 8 * 23  # the optimizer restarted for the retraining
    assert model.evaluate(xt, yt, return_dict=True)["accuracy"] > 0.85


def test_iterative_lottery_ticket_and_no_retrain(digits):
    (x, y), _ = digits
    model = mlp(seed=6)
    initial = model.get_weights()
    ticket = pruning.lottery_ticket(model, x, y, sparsity=0.84, rounds=2, retrain=False, epochs=1, verbose=0)
    assert ticket.sparsities[0] == pytest.approx(0.6, abs=1e-3)  # 1 - sqrt(1 - 0.84)
    assert ticket.sparsities[1] == pytest.approx(0.84, abs=1e-3)
    assert len(ticket.histories) == 2  # dense, round 1 (the last round is not retrained)
    for a, b in zip(model.get_weights(), ticket.rewound_weights):  # left at the rewound ticket
        np.testing.assert_array_equal(a, b)
    for a, b, k in zip(initial, model.get_weights(), [f"{l.name}/{n}" for l in model.layers for n in l.weight_names]):
        np.testing.assert_array_equal(b, a * ticket.masks[k] if k in ticket.masks else a)
    assert model.optimizer.iterations == 0 and not model.optimizer._slots


def test_random_reinit_draws_new_weights_and_keeps_masks():
    model = mlp(seed=7)
    before = model.get_weights()
    masks = pruning.magnitude_masks(model, 0.5)
    pruning.random_reinit(model, masks, seed=123)
    after = model.get_weights()
    assert not np.array_equal(before[0], after[0])
    kept = masks["h1/kernel"]
    assert after[0][kept].std() == pytest.approx(before[0].std(), rel=0.2)  # the same initializer
    assert np.all(after[0][~masks["h1/kernel"]] == 0)
    again = mlp(seed=7)
    pruning.random_reinit(again, masks, seed=123)
    np.testing.assert_array_equal(again.get_weights()[0], after[0])


def test_lottery_ticket_requires_a_compiled_model():
    model = cydnn.Sequential([layers.InputLayer(shape=(3,)), layers.Dense(2)])
    with pytest.raises(RuntimeError, match="compile"):
        pruning.lottery_ticket(model, np.ones((4, 3)), np.ones((4, 2)))


def test_mask_callback_follows_a_repacked_model(digits):
    """Freezing a layer re-packs the flat parameter buffer; the callback rebuilds its flat mask."""
    (x, y), _ = digits
    model = mlp(optimizer=optimizers.SGD(0.05, momentum=0.9))
    masks = pruning.magnitude_masks(model, 0.7)
    cb = pruning.MaskCallback(masks)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[cb])
    model.get_layer("h1").trainable = False
    h1 = model.get_layer("h1").kernel.copy()
    checker = AssertPrunedAfterEachBatch({k: m for k, m in masks.items() if not k.startswith("h1")})
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[cb, checker])
    assert checker.checked == 23
    np.testing.assert_array_equal(model.get_layer("h1").kernel, h1)
    assert np.all(h1[~masks["h1/kernel"]] == 0)
