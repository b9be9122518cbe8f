"""Callbacks on real fits: EarlyStopping, ReduceLROnPlateau, LearningRateScheduler, ModelCheckpoint,
CSVLogger, TerminateOnNaN, LambdaCallback, History.plot.

Monitored sequences are injected with a LambdaCallback placed before the callback under test (the
logs dict of an epoch is shared by the callbacks in list order), so each test knows exactly at
which epoch something must happen, while the model really trains."""
import csv
import math
import sys

import numpy as np
import pytest

import cydnn
from cydnn import callbacks, layers, optimizers, schedules


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


def _model(lr=0.1, optimizer=None, seed=0):
    cydnn.set_random_seed(seed)
    model = cydnn.Sequential([layers.Dense(8, activation="tanh", input_shape=(6,), dtype="float64"),
                              layers.Dense(2, activation="softmax", dtype="float64")])
    model.compile(optimizer or optimizers.SGD(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _inject(key, values):
    """A callback that writes values[epoch] into the epoch logs under ``key``."""
    return callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.__setitem__(key, values[epoch]))


# ============================================================== EarlyStopping
def test_early_stopping_stops_when_patience_runs_out():
    x, y = _data()
    model = _model()
    es = callbacks.EarlyStopping(patience=2)
    seq = [1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6]
    history = model.fit(x, y, epochs=7, batch_size=16, verbose=0, callbacks=[_inject("val_loss", seq), es])
    # best 0.8 at epoch 1; epochs 2 and 3 do not improve -> stop at the end of epoch 3
    assert len(history.history["loss"]) == 4
    assert history.epoch == [0, 1, 2, 3]
    assert es.stopped_epoch == 3 and es.best == 0.8 and es.best_epoch == 1
    assert model.optimizer.iterations == 4 * 4  # 4 epochs of 4 batches were really trained


def test_early_stopping_restore_best_weights():
    x, y = _data()
    model = _model()
    seen = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(model.get_weights()))
    es = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    seq = [1.0, 0.8, 0.9, 0.85, 0.95]
    model.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=[_inject("val_loss", seq), record, es])
    assert len(seen) == 4
    for w, best, last in zip(model.get_weights(), seen[1], seen[-1]):
        np.testing.assert_array_equal(w, best)
        assert not np.array_equal(best, last)
    # restoring writes into the model's packed parameters: training continues from them
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert not np.array_equal(model.get_weights()[0], seen[1][0])


def test_early_stopping_min_delta_and_max_mode():
    x, y = _data()
    # an improvement must beat the best by more than min_delta: 0.95 is not 0.1 below 1.0
    model = _model()
    h = model.fit(x, y, epochs=4, verbose=0, callbacks=[_inject("val_loss", [1.0, 0.95, 0.92, 0.9]),
                                                        callbacks.EarlyStopping(min_delta=0.1, patience=1)])
    assert len(h.history["loss"]) == 2
    # accuracy is maximized in mode="auto"
    model = _model()
    es = callbacks.EarlyStopping(monitor="val_accuracy", patience=1)
    h = model.fit(x, y, epochs=4, verbose=0, callbacks=[_inject("val_accuracy", [0.5, 0.6, 0.55, 0.7]), es])
    assert es.direction == "max" and es.best == 0.6 and len(h.history["loss"]) == 3
    # mode="min" forces the other direction: 0.6 is then no improvement over 0.5
    model = _model()
    h = model.fit(x, y, epochs=4, verbose=0, callbacks=[_inject("val_accuracy", [0.5, 0.6, 0.55, 0.7]),
                                                        callbacks.EarlyStopping("val_accuracy", mode="min")])
    assert len(h.history["loss"]) == 2


def test_early_stopping_baseline_and_start_from_epoch():
    x, y = _data()
    seq = [1.0, 0.9, 0.95, 0.97, 0.99]
    # without a baseline the improvement at epoch 1 resets the wait: patience 2 lasts to epoch 3
    h = _model().fit(x, y, epochs=5, verbose=0, callbacks=[_inject("val_loss", seq),
                                                           callbacks.EarlyStopping(patience=2)])
    assert len(h.history["loss"]) == 4
    # with a baseline never reached, the wait is never reset: stop at the first non-improvement
    # once patience epochs have passed (Keras semantics)
    h = _model().fit(x, y, epochs=5, verbose=0, callbacks=[_inject("val_loss", seq),
                                                           callbacks.EarlyStopping(patience=2, baseline=0.5)])
    assert len(h.history["loss"]) == 3
    # warm-up epochs are ignored: the rising start does not count
    seq = [0.1, 0.2, 1.0, 1.1, 1.2]
    h = _model().fit(x, y, epochs=5, verbose=0, callbacks=[_inject("val_loss", seq),
                                                           callbacks.EarlyStopping(patience=1)])
    assert len(h.history["loss"]) == 2
    es = callbacks.EarlyStopping(patience=1, start_from_epoch=2)
    h = _model().fit(x, y, epochs=5, verbose=0, callbacks=[_inject("val_loss", seq), es])
    assert len(h.history["loss"]) == 4 and es.best == 1.0


def test_early_stopping_on_real_loss_and_verbose_message(capsys):
    x, y = _data()
    # nothing beats the first epoch by 10: stop after 1 + patience epochs
    es = callbacks.EarlyStopping(monitor="loss", min_delta=10, patience=2, verbose=1)
    h = _model().fit(x, y, epochs=10, verbose=0, callbacks=[es])
    assert len(h.history["loss"]) == 3
    assert "Epoch 3: early stopping" in capsys.readouterr().out


def test_early_stopping_real_validation_loss_on_digits():
    (x, y), (xt, yt) = cydnn.datasets.load_digits()
    x, xt = x.reshape(len(x), -1)[:300] / 16.0, xt.reshape(len(xt), -1) / 16.0
    y = y[:300]
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    es = callbacks.EarlyStopping(patience=3, restore_best_weights=True)
    h = model.fit(x, y, epochs=200, batch_size=32, verbose=0, validation_data=(xt, yt), callbacks=[es])
    val = h.history["val_loss"]
    best = int(np.argmin(val))
    assert 0 < es.stopped_epoch < 199 and len(val) == best + 4  # stopped patience epochs after the minimum
    assert model.evaluate(xt, yt) == pytest.approx(val[best], rel=1e-5)  # the best weights are back


def test_monitored_key_missing_warns_and_training_continues():
    x, y = _data()
    with pytest.warns(RuntimeWarning, match=r"`val_loss`.*Available: loss, accuracy"):
        h = _model().fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.EarlyStopping(patience=0)])
    assert len(h.history["loss"]) == 3
    with pytest.warns(RuntimeWarning, match="val_loss"):
        _model().fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.ReduceLROnPlateau(patience=0)])


def test_callback_argument_errors():
    with pytest.raises(ValueError, match="mode 'auto', 'min' or 'max'.*received mode='bogus'"):
        callbacks.EarlyStopping(mode="bogus")
    with pytest.raises(ValueError, match="patience"):
        callbacks.EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="factor in \\(0, 1\\)"):
        callbacks.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="min_lr"):
        callbacks.ReduceLROnPlateau(min_lr=-1)
    with pytest.raises(TypeError, match="schedule"):
        callbacks.LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match="separator"):
        callbacks.CSVLogger("x.csv", separator=",,")
    with pytest.raises(TypeError, match="unknown hook 'on_epoch_finish'"):
        callbacks.LambdaCallback(on_epoch_finish=print)
    x, y = _data()
    with pytest.raises(ValueError, match="cannot tell whether monitor='val_weirdness'.*mode='min'"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.EarlyStopping("val_weirdness")])


# ============================================================== ReduceLROnPlateau
def _plateau_run(cooldown):
    x, y = _data()
    model = _model(lr=0.1)
    after = []
    rl = callbacks.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=cooldown, min_lr=0.03)
    seq = [1.0, 0.9] + [0.9] * 8
    h = model.fit(x, y, epochs=10, batch_size=32, verbose=0,
                  callbacks=[_inject("val_loss", seq), rl,
                             callbacks.LambdaCallback(on_epoch_end=lambda e, logs: after.append(
                                 model.optimizer.learning_rate))])
    return h.history["learning_rate"], after


def test_reduce_lr_on_plateau_lowers_rate_after_patience_and_stops_at_min_lr():
    during, after = _plateau_run(cooldown=0)
    # epochs 2, 3 do not improve on 0.9 -> halve at the end of epoch 3, again 2 epochs later, then min_lr
    assert after == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03, 0.03])
    # logs['learning_rate'] is the rate used during the epoch
    assert during == pytest.approx([0.1] + after[:-1])


def test_reduce_lr_on_plateau_cooldown_delays_the_next_reduction():
    during, after = _plateau_run(cooldown=2)
    # after the reduction at epoch 3, epochs 4 (cooldown) and 5 (cooldown ends) do not count
    assert after == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03])
    assert during == pytest.approx([0.1] + after[:-1])


def test_reduce_lr_on_plateau_really_changes_the_step_size():
    """The SGD update uses the reduced rate: each full-batch step equals -lr * gradient, with the
    gradient taken by a probe model at the same weights."""
    x, y = _data()
    model = _model(lr=0.2)
    rl = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=100.0)
    w = []
    model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[
        callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: w.append(model.get_weights())), rl])
    w.append(model.get_weights())
    # epoch 0 sets the best; epochs 1 and 2 miss it by 100 and halve the rate at their end
    assert model.optimizer.learning_rate == pytest.approx(0.05)
    probe = _model(lr=1.0)
    for e, lr in enumerate([0.2, 0.2, 0.1]):
        probe.set_weights(w[e])
        probe.train_on_batch(x, y)
        for before, after, probed in zip(w[e], w[e + 1], probe.get_weights()):
            np.testing.assert_allclose(after - before, lr * (probed - before), rtol=1e-10, atol=1e-14)


def test_rate_callbacks_refuse_a_schedule():
    x, y = _data()
    model = _model(optimizer=optimizers.SGD(schedules.ExponentialDecay(0.1, 10, 0.5)))
    for cb in (callbacks.ReduceLROnPlateau(), callbacks.LearningRateScheduler(lambda e, lr: lr)):
        with pytest.raises(ValueError, match="learning_rate is a schedule"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[cb])


# ============================================================== LearningRateScheduler
def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    x, y = _data()
    model = _model(lr=0.1)
    in_batches = []
    spy = callbacks.LambdaCallback(on_train_batch_begin=lambda b, logs: in_batches.append(
        model.optimizer.learning_rate))
    sched = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 if epoch == 0 else lr * 0.5)
    h = model.fit(x, y, epochs=4, batch_size=32, verbose=0, callbacks=[sched, spy])
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert in_batches == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125])
    # the one-argument form schedule(epoch), and an int result
    model = _model()
    h = model.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda epoch: 1 + epoch)])
    assert h.history["learning_rate"] == [1.0, 2.0, 3.0]


def test_learning_rate_scheduler_rejects_bad_results(capsys):
    x, y = _data()
    with pytest.raises(ValueError, match="finite float >= 0, returned 'fast' for epoch=0"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda e, lr: "fast")])
    _model().fit(x, y, epochs=1, verbose=0,
                 callbacks=[callbacks.LearningRateScheduler(lambda e, lr: 0.02, verbose=1)])
    assert "Epoch 1: LearningRateScheduler setting learning rate to 0.02." in capsys.readouterr().out


# ============================================================== ModelCheckpoint
def test_model_checkpoint_writes_loadable_files_per_epoch(tmp_path):
    x, y = _data()
    model = _model()
    saved = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: saved.append(model.get_weights()))
    ck = callbacks.ModelCheckpoint(str(tmp_path / "ckpt" / "model-{epoch:02d}-{val_loss:.2f}.cydnn"))
    model.fit(x, y, epochs=3, verbose=0, callbacks=[_inject("val_loss", [0.5, 0.25, 0.125]), record, ck])
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["model-01-0.50.cydnn", "model-02-0.25.cydnn", "model-03-0.12.cydnn"]
    loaded = cydnn.saving.load_model(tmp_path / "ckpt" / "model-02-0.25.cydnn")
    for a, b in zip(loaded.get_weights(), saved[1]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x), _predict_with(model, saved[1], x), rtol=1e-12)


def _predict_with(model, weights, x):
    current = model.get_weights()
    model.set_weights(weights)
    out = model.predict(x)
    model.set_weights(current)
    return out


def test_model_checkpoint_save_best_only_weights_only(tmp_path):
    x, y = _data()
    model = _model()
    saved = []
    path = tmp_path / "best.weights.npz"
    ck = callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True, save_weights_only=True)
    contents = []
    seq = [1.0, 0.7, 0.9, 0.6, 0.8]
    model.fit(x, y, epochs=5, verbose=0, callbacks=[
        _inject("val_loss", seq),
        callbacks.LambdaCallback(on_epoch_end=lambda e, logs: saved.append(model.get_weights())), ck,
        callbacks.LambdaCallback(on_epoch_end=lambda e, logs: contents.append(path.read_bytes()))])
    # written at epochs 0, 1, 3 (improvements) only
    assert [contents[i] == contents[i - 1] for i in range(1, 5)] == [False, True, False, True]
    assert ck.best == 0.6
    fresh = _model(seed=1)
    fresh.load_weights(path, by_name=False)  # a fresh model has new layer names
    for a, b in zip(fresh.get_weights(), saved[3]):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_every_n_batches_and_bad_format(tmp_path):
    x, y = _data()
    ck = callbacks.ModelCheckpoint(str(tmp_path / "b-{epoch}-{batch}.weights.npz"), save_weights_only=True,
                                   save_freq=3)
    _model().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[ck])  # 8 batches: saves after 3 and 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b-1-3.weights.npz", "b-2-2.weights.npz"]
    ck = callbacks.ModelCheckpoint(str(tmp_path / "m-{val_acc}.cydnn"))
    with pytest.raises(KeyError, match="cannot format filepath.*val_acc"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[ck])


# ============================================================== CSVLogger
def test_csv_logger_writes_header_and_rows(tmp_path):
    x, y = _data()
    path = tmp_path / "log.csv"
    model = _model()
    h = model.fit(x, y, epochs=3, verbose=0, validation_split=0.25, callbacks=[callbacks.CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keys = sorted(h.history)
    assert rows[0] == ["epoch"] + keys == ["epoch", "accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"]
    assert len(rows) == 4
    for epoch, row in enumerate(rows[1:]):
        assert int(row[0]) == epoch
        assert [float(v) for v in row[1:]] == [h.history[k][epoch] for k in keys]  # full precision
    # append: the header is not repeated, rows continue; a separator of one character
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.25, callbacks=[callbacks.CSVLogger(path, append=True)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 6 and rows[0][0] == "epoch" and [r[0] for r in rows[1:]] == ["0", "1", "2", "0", "1"]
    path2 = tmp_path / "semi.csv"
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(path2, separator=";")])
    assert path2.read_text().splitlines()[0] == "epoch;accuracy;learning_rate;loss"


# ============================================================== TerminateOnNaN
def test_terminate_on_nan_stops_at_the_first_invalid_batch(capsys):
    x, y = _data()
    x = x.copy()
    x[40] = np.nan  # sample 40 lies in batch 2 (batch_size 16, no shuffling)
    batches = []
    h = _model().fit(x, y, epochs=5, batch_size=16, shuffle=False, verbose=0,
                     callbacks=[callbacks.TerminateOnNaN(),
                                callbacks.LambdaCallback(on_batch_end=lambda b, logs: batches.append(b))])
    assert batches == [0, 1, 2]
    assert len(h.history["loss"]) == 1 and math.isnan(h.history["loss"][0])
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out


# ============================================================== LambdaCallback and the hook order
def test_lambda_callback_hooks_fire_in_order():
    x, y = _data(n=8)
    events = []
    cb = callbacks.LambdaCallback(
        on_train_begin=lambda logs: events.append("train_begin"),
        on_epoch_begin=lambda epoch, logs: events.append(f"epoch_begin {epoch}"),
        on_batch_begin=lambda batch, logs: events.append(f"batch_begin {batch}"),
        on_train_batch_end=lambda batch, logs: events.append(f"batch_end {batch} {sorted(logs)}"),
        on_epoch_end=lambda epoch, logs: events.append(f"epoch_end {epoch} {sorted(logs)}"),
        on_train_end=lambda logs: events.append("train_end"))
    _model().fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[cb])
    batch = ["batch_begin 0", "batch_end 0 ['accuracy', 'loss']", "batch_begin 1", "batch_end 1 ['accuracy', 'loss']"]
    epoch_end = "['accuracy', 'learning_rate', 'loss']"
    assert events == (["train_begin", "epoch_begin 0"] + batch + [f"epoch_end 0 {epoch_end}", "epoch_begin 1"]
                      + batch + [f"epoch_end 1 {epoch_end}", "train_end"])


def test_subclass_with_keras_batch_alias_and_evaluate_hooks():
    class Counter(callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches, self.test_batches = 0, 0

        def on_batch_end(self, batch, logs=None):  # Keras' alias of on_train_batch_end
            self.batches += 1

        def on_test_batch_end(self, batch, logs=None):
            self.test_batches += 1

    x, y = _data()
    c = Counter()
    model = _model()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[c])
    assert c.batches == 8
    model.evaluate(x, y, batch_size=32, callbacks=[c])
    assert c.test_batches == 2


# ============================================================== History.plot
def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    x, y = _data()
    h = _model().fit(x, y, epochs=4, verbose=0, validation_split=0.25)
    path = tmp_path / "plots" / "history.png"
    fig = h.plot(path=path)
    try:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
        assert titles == ["loss", "accuracy"]
        loss_ax = fig.axes[0]
        labels = [line.get_label() for line in loss_ax.get_lines()]
        assert labels == ["training", "validation"]
        np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), h.history["loss"])
        np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), h.history["val_loss"])
        assert list(loss_ax.get_lines()[0].get_xdata()) == [1, 2, 3, 4]
    finally:
        plt.close(fig)
    fig = h.plot(metrics=["val_accuracy", "learning_rate"])
    try:
        assert [ax.get_title() for ax in fig.axes] == ["accuracy", "learning_rate"]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match=r"no recorded quantity \['auc'\]"):
        h.plot(metrics=["auc"])


def test_history_plot_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    h = callbacks.History()
    h.history, h.epoch = {"loss": [1.0, 0.5]}, [0, 1]
    with pytest.raises(ImportError, match=r"pip install cydnn\[plot\]"):
        h.plot()
