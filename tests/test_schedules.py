"""Learning-rate schedules: values against Keras' formulas at chosen steps (worked by hand),
argument checks, (de)serialization through optimizer configs and saved models, and real fits
whose SGD steps must follow the schedule step by step."""
import math

import numpy as np
import pytest

import cydnn
from cydnn import layers, optimizers, schedules


# ============================================================== values (Keras formulas)
@pytest.mark.parametrize("schedule, expected", [
    # initial * rate ** (step / decay_steps)
    (schedules.ExponentialDecay(0.1, 10, 0.5), {0: 0.1, 5: 0.1 * 0.5 ** 0.5, 10: 0.05, 25: 0.1 * 0.5 ** 2.5}),
    (schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True), {0: 0.1, 9: 0.1, 10: 0.05, 19: 0.05, 25: 0.025}),
    # initial / (1 + rate * step / decay_steps)
    (schedules.InverseTimeDecay(0.1, 10, 0.5), {0: 0.1, 5: 0.08, 20: 0.05}),
    (schedules.InverseTimeDecay(0.1, 10, 0.5, staircase=True), {9: 0.1, 15: 0.1 / 1.5, 20: 0.05}),
    # (initial - end) * (1 - step / decay_steps) ** power + end, clamped (or cycling)
    (schedules.PolynomialDecay(0.1, 10, end_learning_rate=0.01, power=2.0), {0: 0.1, 5: 0.0325, 10: 0.01, 20: 0.01}),
    (schedules.PolynomialDecay(0.1, 10, end_learning_rate=0.01, power=2.0, cycle=True),
     {0: 0.1, 10: 0.01, 15: 0.09 * 0.25 ** 2 + 0.01}),
    # initial * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)
    (schedules.CosineDecay(0.1, 100, alpha=0.1),
     {0: 0.1, 25: 0.1 * (0.45 * (1 + math.cos(math.pi / 4)) + 0.1), 50: 0.055, 100: 0.01, 200: 0.01}),
    # linear warmup from initial to warmup_target, then cosine decay from warmup_target
    (schedules.CosineDecay(0.0, 100, warmup_target=0.2, warmup_steps=10),
     {0: 0.0, 5: 0.1, 10: 0.2, 60: 0.1, 110: 0.0, 500: 0.0}),
    # values[i] on (boundaries[i-1], boundaries[i]]
    (schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), {0: 1.0, 10: 1.0, 11: 0.5, 20: 0.5, 21: 0.1}),
    # halve every 10 epochs of 19 steps
    (schedules.StepDecay(0.1, drop=0.5, epochs_drop=10, steps_per_epoch=19),
     {0: 0.1, 189: 0.1, 190: 0.05, 379: 0.05, 380: 0.025}),
    # divide by 10 every 3 epochs of 5 steps
    (schedules.StepDecay(1.0, drop=0.1, epochs_drop=3, steps_per_epoch=5), {14: 1.0, 15: 0.1, 30: 0.01}),
])
def test_schedule_values(schedule, expected):
    for step, value in expected.items():
        assert schedule(step) == pytest.approx(value, rel=1e-12, abs=1e-15), (schedule, step)
        assert schedule(np.int64(step)) == pytest.approx(value, rel=1e-12, abs=1e-15)


def test_cosine_without_warmup_target_ignores_warmup_steps():
    a = schedules.CosineDecay(0.1, 100, warmup_steps=50)
    b = schedules.CosineDecay(0.1, 100)
    assert [a(s) for s in (0, 30, 70)] == [b(s) for s in (0, 30, 70)]


@pytest.mark.parametrize("make, match", [
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), "decay_steps to be a positive int, received decay_steps=0"),
    (lambda: schedules.ExponentialDecay(-0.1, 10, 0.5), "initial_learning_rate to be a finite float > 0"),
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.0), "decay_rate to be a positive float"),
    (lambda: schedules.InverseTimeDecay(0.1, 10, -1), "decay_rate to be a finite float >= 0"),
    (lambda: schedules.PolynomialDecay(0.1, 10, power=0), "power"),
    (lambda: schedules.CosineDecay(0.1, 100, alpha=1.5), r"alpha in \[0, 1\]"),
    (lambda: schedules.CosineDecay(0.1, 100, warmup_target=float("nan")), "warmup_target"),
    (lambda: schedules.CosineDecay(0.1, 100, warmup_steps=-5), "warmup_steps"),
    (lambda: schedules.PiecewiseConstantDecay([10], [1.0]), r"len\(boundaries\) == len\(values\) - 1"),
    (lambda: schedules.PiecewiseConstantDecay([10, 5], [1.0, 0.5, 0.1]), "strictly increasing"),
    (lambda: schedules.PiecewiseConstantDecay([10], [1.0, -2]), r"values\[1\]"),
    (lambda: schedules.StepDecay(0.1, drop=0.0, steps_per_epoch=10), r"drop in \(0, 1\]"),
    (lambda: schedules.StepDecay(0.1, drop=2.0, steps_per_epoch=10), r"drop in \(0, 1\]"),
    (lambda: schedules.StepDecay(0.1, epochs_drop=0, steps_per_epoch=10), "epochs_drop"),
    (lambda: schedules.StepDecay(0.1, steps_per_epoch=0), "steps_per_epoch"),
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.5)(-1), "step count >= 0"),
])
def test_schedule_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_step_decay_needs_steps_per_epoch():
    with pytest.raises(TypeError, match="steps_per_epoch"):
        schedules.StepDecay(0.1, 0.5, 10)


# ============================================================== (de)serialization
ALL = [schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True), schedules.InverseTimeDecay(0.1, 7, 0.3),
       schedules.PolynomialDecay(0.1, 10, 0.001, 0.5, cycle=True),
       schedules.CosineDecay(0.01, 50, alpha=0.2, warmup_target=0.1, warmup_steps=5),
       schedules.PiecewiseConstantDecay([3, 8], [0.3, 0.2, 0.1]),
       schedules.StepDecay(0.2, drop=0.5, epochs_drop=2, steps_per_epoch=3)]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_serialize_round_trip_through_the_optimizer_config(schedule):
    d = schedules.serialize(schedule)
    assert d["class_name"] == type(schedule).__name__
    back = schedules.deserialize(d)
    assert type(back) is type(schedule) and back.get_config() == schedule.get_config()
    for cls in (optimizers.SGD, optimizers.Adam, optimizers.RMSprop, optimizers.Adagrad, optimizers.AdamW):
        opt = cls(learning_rate=schedule)
        cfg = opt.get_config()
        assert cfg["learning_rate"] == d
        rebuilt = optimizers.get(optimizers.serialize(opt))
        assert [rebuilt.learning_rate(s) for s in range(0, 30, 3)] == [schedule(s) for s in range(0, 30, 3)]


def test_registered_custom_schedule_round_trips_and_plain_functions_are_refused():
    @cydnn.register_serializable(package="TestSchedules")
    class Halving(schedules.LearningRateSchedule):
        def __init__(self, start):
            self.start = start

        def __call__(self, step):
            return self.start / (1 + step)

        def get_config(self):
            return {"start": self.start}

    d = schedules.serialize(Halving(0.3))
    assert d == {"class_name": "TestSchedules>Halving", "config": {"start": 0.3}}
    assert schedules.deserialize(d)(2) == pytest.approx(0.1)
    with pytest.raises(TypeError, match="cannot save learning_rate=.*LearningRateSchedule"):
        optimizers.SGD(learning_rate=lambda step: 0.1).get_config()
    with pytest.raises(ValueError, match="unknown schedule 'Warp'"):
        schedules.deserialize({"class_name": "Warp", "config": {}})


def test_a_saved_model_keeps_its_schedule_and_step_count(tmp_path):
    cydnn.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = x.sum(axis=1, keepdims=True)
    sched = schedules.CosineDecay(0.05, 20, warmup_target=0.1, warmup_steps=4)
    model = cydnn.Sequential([layers.Dense(1, input_shape=(3,), dtype="float64")])
    model.compile(optimizers.SGD(learning_rate=sched, momentum=0.9), "mse")
    model.fit(x, y, epochs=3, batch_size=10, verbose=0)
    model.save(tmp_path / "m.cydnn")
    loaded = cydnn.load_model(tmp_path / "m.cydnn")
    assert isinstance(loaded.optimizer.learning_rate, schedules.CosineDecay)
    assert loaded.optimizer.learning_rate.get_config() == sched.get_config()
    assert loaded.optimizer.iterations == 6
    assert loaded.optimizer.current_learning_rate() == pytest.approx(sched(6))
    # resuming takes the same steps as continuing
    model.fit(x, y, epochs=2, batch_size=10, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=2, batch_size=10, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12)


# ============================================================== used in a real fit
def _reference_sgd(w, b, x, y, batch_size, epochs, lr_at):
    """Plain NumPy mini-batch SGD on mean squared error (mean over samples and outputs, as
    Keras), batches in order, rate lr_at(step)."""
    step = 0
    for _ in range(epochs):
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            r = xb @ w + b - yb
            scale = 2.0 / r.size
            gw, gb = scale * xb.T @ r, scale * r.sum(axis=0)
            lr = lr_at(step)
            w, b = w - lr * gw, b - lr * gb
            step += 1
    return w, b


@pytest.mark.parametrize("schedule", ALL + [schedules.PiecewiseConstantDecay([3], [0.1, 0.0])],
                         ids=lambda s: repr(s))
def test_fit_follows_the_schedule_step_by_step(schedule):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 4))
    y = x @ rng.normal(size=(4, 2)) + 0.3
    model = cydnn.Sequential([layers.Dense(2, input_shape=(4,), dtype="float64")])
    model.compile(optimizers.SGD(learning_rate=schedule), "mse")
    w0, b0 = model.get_weights()
    h = model.fit(x, y, epochs=4, batch_size=10, shuffle=False, verbose=0)  # 3 steps per epoch
    w, b = _reference_sgd(w0, b0, x, y, 10, 4, schedule)
    np.testing.assert_allclose(model.get_weights()[0], w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.get_weights()[1], b, rtol=1e-10, atol=1e-12)
    assert model.optimizer.iterations == 12
    # logs['learning_rate']: the rate the next step will use
    assert h.history["learning_rate"] == pytest.approx([schedule(3 * (e + 1)) for e in range(4)])


def test_a_zero_rate_phase_freezes_the_weights():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))
    model = cydnn.Sequential([layers.Dense(1, input_shape=(3,), dtype="float64")])
    model.compile(optimizers.Adam(learning_rate=schedules.PiecewiseConstantDecay([3], [0.1, 0.0])), "mse")
    snapshots = []
    model.fit(x, y, epochs=4, batch_size=10, verbose=0, callbacks=[
        cydnn.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(model.get_weights()))])
    # steps 0..3 (epochs 0 and 1) move the weights, steps 4.. use rate 0
    assert not np.array_equal(snapshots[0][0], snapshots[1][0])
    for later in snapshots[2:]:
        np.testing.assert_array_equal(later[0], snapshots[1][0])
