"""Learning on sequences with the examples' data and models (examples/sunspots_lstm.py,
sequence_classification.py, attention_lstm.py): each reaches a stated score on held-out data
with a fixed seed, and each script runs end to end."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import cydnn
from helpers import subprocess_env
from cydnn import layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lstm_forecasts_sunspots_better_than_the_naive_forecast():
    """Yearly sunspots, 12-year windows, train on the first 80% of the series: the LSTM's
    held-out MSE is at most 0.6 x that of "next year = this year" (about 0.3 x is typical)."""
    ex = _example("sunspots_lstm")
    cydnn.set_random_seed(0)
    (x_train, y_train), (x_test, y_test), _ = ex.sunspot_windows(window=12)
    assert (len(x_train), len(x_test)) == (235, 62)
    model = ex.sunspot_lstm(window=12, units=32)
    model.compile(optimizer=cydnn.optimizers.Adam(0.01), loss="mse")
    model.fit(x_train, y_train, batch_size=32, epochs=60, verbose=0)
    lstm_mse = float(np.mean((model.predict(x_test)[:, 0] - y_test) ** 2))
    naive_mse = float(np.mean((x_test[:, -1, 0] - y_test) ** 2))
    assert lstm_mse <= 0.6 * naive_mse, f"LSTM MSE {lstm_mse:.4f} vs naive {naive_mse:.4f} (standardized units)"


def test_embedding_mask_zero_lstm_classifies_variable_length_sequences():
    """Padded sequences of 4-24 tokens, label: more 1s than 2s. >= 97% held-out accuracy after
    10 epochs, and the padding does not change any prediction (the mask skips it)."""
    ex = _example("sequence_classification")
    cydnn.set_random_seed(0)
    x_train, y_train, _ = ex.count_sequences(2000, seed=1)
    x_test, y_test, lengths = ex.count_sequences(500, seed=2)
    model = ex.sequence_classifier(units=16)
    model.compile(optimizer=cydnn.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=10, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test)
    assert accuracy >= 0.97, f"held-out accuracy {accuracy:.4f}"
    short = lengths <= 12
    full = model.predict(x_test[short])
    # Padding changes no prediction. Not bit for bit: inputs of another length are another GEMM
    # shape, whose blocks (fixed by the shape, csrc/core/_threads.pxd fixed_blocks) round differently;
    # float32 precision is the claim.
    np.testing.assert_allclose(model.predict(x_test[short][:, :12]), full, rtol=2e-6, atol=1e-9)
    np.testing.assert_allclose(model.predict(np.pad(x_test[short], ((0, 0), (0, 24)))), full, rtol=2e-6, atol=1e-9)


@pytest.mark.slow
def test_attention_pooling_lstm_learns_the_marked_step_where_the_last_state_lags():
    """Sign of the value at a marked step of 100, 2 epochs, seeds 0-4: LSTM + AttentionPooling
    reaches >= 95% held-out accuracy with every seed and puts > 10x the uniform weight on the
    marked step, while the same LSTM read from its last state is, in the median, at least 10
    points behind.

    2 epochs, not the example's 3: two thirds of the cost, and the attention model has learned
    by then. Over seeds 0-7 (these 3000 training sequences): attention 97.0-98.8% after 2 epochs
    (97.6-99.4% after 3), the last state 48.8-51.8% after 2 epochs, every seed at chance. The
    median stays the claim, not every run: the last state does learn the task now and then
    (after 3 epochs, 91% with seed 0 and 85% with seed 6, about 50% otherwise)."""
    ex = _example("attention_lstm")
    x_train, y_train, _ = ex.marked_sequences(3000, 100, seed=1)
    x_test, y_test, marker = ex.marked_sequences(1000, 100, seed=2)
    accuracy = {ex.attention_lstm: [], ex.last_state_lstm: []}
    for seed in range(5):
        for make in accuracy:
            cydnn.set_random_seed(seed)
            model = make(100, 16)
            model.compile(optimizer=cydnn.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
            model.fit(x_train, y_train, batch_size=32, epochs=2, verbose=0)
            accuracy[make].append(model.evaluate(x_test, y_test)[1])
            if make is ex.attention_lstm and seed == 0:
                model.predict(x_test, batch_size=1000)
                weights = model.layers[1].last_attention_scores
                np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
                at_marker = weights[np.arange(1000), marker].mean()
                assert at_marker > 10 / 100, f"mean attention weight at the marked step {at_marker:.3f}"
    attention, last_state = accuracy[ex.attention_lstm], accuracy[ex.last_state_lstm]
    assert min(attention) >= 0.95, accuracy
    assert np.median(last_state) <= min(attention) - 0.10, accuracy


@pytest.mark.slow
def test_luong_attention_in_a_functional_model_learns_the_marked_step():
    """The final LSTM state queries the LSTM outputs through Attention: >= 95% after 6 epochs.
    Unclipped Adam(0.01) on this model ends anywhere from 50% to 98% after 3 epochs depending on
    the seed and on float32 rounding; with clipnorm=1 every one of seeds 0..7 reached 97-100%."""
    ex = _example("attention_lstm")
    x_train, y_train, _ = ex.marked_sequences(3000, 100, seed=1)
    x_test, y_test, _ = ex.marked_sequences(1000, 100, seed=2)
    cydnn.set_random_seed(0)
    model = ex.luong_attention_lstm(100, 16)
    assert any(isinstance(layer, layers.Attention) for layer in model.layers)
    model.compile(optimizer=cydnn.optimizers.Adam(0.01, clipnorm=1.0), loss="binary_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=6, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test)
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.4f}"


def test_time_distributed_dense_labels_every_step():
    """Sequence labelling: at every step, have there been more 1s than 2s so far? An LSTM with
    return_sequences and TimeDistributed(Dense) gets >= 95% of the held-out steps right."""
    rng = np.random.default_rng(0)

    def data(n):
        ids = rng.integers(1, 6, (n, 20))
        running = np.cumsum(ids == 1, axis=1) - np.cumsum(ids == 2, axis=1)
        return ids, (running > 0).astype(np.float32)[..., None]

    x_train, y_train = data(2000)
    x_test, y_test = data(500)
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.Embedding(6, 8, input_shape=(20,)),
                              layers.LSTM(16, return_sequences=True),
                              layers.TimeDistributed(layers.Dense(1, activation="sigmoid"))])
    model.compile(optimizer=cydnn.optimizers.Adam(0.01), loss="binary_crossentropy")
    model.fit(x_train, y_train, batch_size=32, epochs=8, verbose=0)
    accuracy = np.mean((model.predict(x_test) > 0.5) == (y_test > 0.5))
    assert accuracy >= 0.95, f"per-step held-out accuracy {accuracy:.4f}"


@pytest.mark.parametrize("script, args, expect", [
    ("sunspots_lstm.py", ["--epochs", "2"], "x naive"),
    ("sequence_classification.py", ["--epochs", "1"], "held-out accuracy"),
    ("attention_lstm.py", ["--epochs", "1", "--steps", "30"], "attention pooling: mean weight"),
])
def test_example_scripts_run(script, args, expect):
    env = subprocess_env()
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout, out.stdout
