"""One model, several Python threads: predict and evaluate give exactly what sequential calls give.

Per-call state lives in contexts the model owns (a pool of them for inference), never on the
layers, and the kernels release the GIL, so the threads' calls really interleave. Before the
contexts, over half of such calls returned another thread's numbers.
"""
import threading

import numpy as np
import pytest

import cydnn
from cydnn import layers


def _sequential():
    return cydnn.Sequential([
        layers.InputLayer(shape=(8, 8, 1)),
        layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(2),
        layers.Reshape((16, 4)),
        layers.LSTM(6, return_sequences=True),
        layers.GlobalAveragePooling1D(),
        layers.Dropout(0.3),
        layers.Dense(3, activation="softmax"),
    ])


def _functional():
    inp = cydnn.Input(shape=(10, 5))
    shared = layers.Dense(6, activation="tanh")
    a, b = shared(inp), shared(layers.Dense(5)(inp))
    att = layers.Attention()([a, b])
    out = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(layers.Add()([att, a])))
    return cydnn.Model(inp, out)


def _run_threads(n_threads, jobs):
    """Run jobs (callables) from n_threads threads, all released at once; return their results."""
    results = [None] * len(jobs)
    errors = []
    start = threading.Barrier(n_threads)

    def worker(t):
        start.wait()
        try:
            for i in range(t, len(jobs), n_threads):
                results[i] = jobs[i]()
        except BaseException as e:  # noqa: BLE001 - reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("make,shape", [(_sequential, (8, 8, 1)), (_functional, (10, 5))])
def test_predict_and_evaluate_from_threads_match_sequential_calls(make, shape):
    cydnn.set_random_seed(5)
    model = make()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96,) + shape).astype(np.float32)
    y = rng.integers(0, 3, 96)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    # distinct inputs and batch sizes per job, so a mixed-up buffer shows as a wrong answer
    inputs = [rng.normal(size=(int(rng.integers(5, 40)),) + shape).astype(np.float32) for _ in range(12)]
    labels = [rng.integers(0, 3, len(xi)) for xi in inputs]
    expected_pred = [model.predict(xi, batch_size=7) for xi in inputs]
    expected_eval = [model.evaluate(xi, yi, batch_size=9) for xi, yi in zip(inputs, labels)]

    jobs = []
    for _ in range(4):
        for i, (xi, yi) in enumerate(zip(inputs, labels)):
            jobs.append(lambda xi=xi: ("predict", model.predict(xi, batch_size=7)))
            jobs.append(lambda xi=xi, yi=yi: ("evaluate", model.evaluate(xi, yi, batch_size=9)))
    results = _run_threads(4, jobs)
    for k, (kind, value) in enumerate(results):
        i = (k // 2) % len(inputs)
        if kind == "predict":
            np.testing.assert_array_equal(value, expected_pred[i])
        else:
            assert value == expected_eval[i]


def test_direct_model_calls_from_threads_match_sequential_calls():
    """model(x) on arrays (inference) takes its own contexts too."""
    cydnn.set_random_seed(1)
    model = _functional()
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(int(rng.integers(1, 20)), 10, 5)).astype(np.float32) for _ in range(10)]
    expected = [model(xi) for xi in inputs]
    results = _run_threads(3, [lambda xi=xi: model(xi) for xi in inputs * 5])
    for k, value in enumerate(results):
        np.testing.assert_array_equal(value, expected[k % len(inputs)])


def test_fit_from_two_threads_runs_one_call_at_a_time():
    """fit shares optimizer and metric state: calls from two threads take turns (the model's
    lock), so two threads each fitting one epoch give the weights of two sequential epochs."""
    def trained(two_threads):
        cydnn.set_random_seed(3)
        model = cydnn.Sequential([layers.InputLayer(shape=(4,)), layers.Dense(5, activation="relu"), layers.Dense(1)])
        model.compile(cydnn.optimizers.SGD(0.01), "mse")
        rng = np.random.default_rng(2)
        x, y = rng.normal(size=(64, 4)), rng.normal(size=(64, 1))
        fit = lambda: model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)  # noqa: E731
        if two_threads:
            _run_threads(2, [fit, fit])
        else:
            fit(), fit()
        return model.get_weights()

    for a, b in zip(trained(False), trained(True)):
        np.testing.assert_array_equal(a, b)


def test_a_layer_class_without_ctx_is_refused_when_defined():
    """Per-call state goes through ctx: a forward that cannot receive it is an error that says so
    at class definition, not a TypeError inside a model's step."""
    with pytest.raises(TypeError, match=r"OldStyle.forward: expected a keyword parameter ctx=None"):
        class OldStyle(layers.Layer):
            def forward(self, x, training=False):
                return x
