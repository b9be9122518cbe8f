"""Learning-rate schedules: the rate as a function of the optimizer's step count.

A schedule is passed wherever a learning rate is::

    lr = cydnn.schedules.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5)
    model.compile(optimizer=cydnn.optimizers.SGD(learning_rate=lr), loss="mse")

The optimizer calls ``schedule(optimizer.iterations)`` before each update, so ``step`` counts
optimizer steps (batches; with ``gradient_accumulation_steps=k`` one step per k batches), from 0.
``StepDecay`` thinks in epochs and needs ``steps_per_epoch`` to convert.

Formulas and argument names are Keras' (``keras.optimizers.schedules``); every schedule has
``get_config``/``from_config``, and ``serialize``/``deserialize`` turn one into a dict and back
(used by ``Optimizer.get_config`` when a model is saved). A plain function ``step -> rate`` also
works as a learning rate, but cannot be saved: subclass ``LearningRateSchedule`` (and register it
with ``@cydnn.register_serializable()``) for that.
"""
import math

import numpy as np

from ._validation import check_fraction, check_positive_float, check_positive_int
from .registry import get_registered_object


class LearningRateSchedule:
    """Base class: ``schedule(step) -> float`` and a config to rebuild it."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


# ------------------------------------------------------------------ argument checks
def _rate(value, who, name, allow_zero=True):
    """A finite learning rate (>= 0, or > 0 when allow_zero is False)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = None
    if v is None or isinstance(value, bool) or not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{who}: expected {name} to be a finite float {bound}, received {name}={value!r}")
    return v


def _step(step, who):
    s = float(step)
    if not s >= 0:
        raise ValueError(f"{who}: expected a step count >= 0, received step={step!r}")
    return s


# ------------------------------------------------------------------ schedules
class StepDecay(LearningRateSchedule):
    """Multiply the rate by ``drop`` every ``epochs_drop`` epochs (a staircase).

        rate(epoch) = initial_learning_rate * drop ** floor(epoch / epochs_drop)

    Epochs 0 .. epochs_drop-1 use the initial rate, the next ``epochs_drop`` epochs
    ``initial * drop``, and so on. The optimizer counts steps (batches), not epochs, so give
    ``steps_per_epoch = math.ceil(n_train / batch_size)``; epoch = floor(step / steps_per_epoch).

    Examples (600 training samples, batch_size=32 -> 19 steps per epoch)::

        StepDecay(0.1, drop=0.5, epochs_drop=10, steps_per_epoch=19)  # halve every 10 epochs
        StepDecay(0.1, drop=0.1, epochs_drop=30, steps_per_epoch=19)  # divide by 10 every 30

    Args:
        initial_learning_rate: the rate of the first ``epochs_drop`` epochs (> 0).
        drop: the factor applied at each drop, in (0, 1] (default 0.5: halve).
        epochs_drop: epochs between drops (positive int, default 10).
        steps_per_epoch: optimizer steps in one epoch (positive int, required).
    """

    def __init__(self, initial_learning_rate, drop=0.5, epochs_drop=10, *, steps_per_epoch, name="StepDecay"):
        who = "StepDecay"
        self.initial_learning_rate = _rate(initial_learning_rate, who, "initial_learning_rate", allow_zero=False)
        self.drop = check_fraction(drop, who, "drop", low_open=True, high_open=False)
        self.epochs_drop = check_positive_int(epochs_drop, who, "epochs_drop")
        self.steps_per_epoch = check_positive_int(steps_per_epoch, who, "steps_per_epoch")
        self.name = name

    def __call__(self, step):
        epoch = math.floor(_step(step, "StepDecay") / self.steps_per_epoch)
        return self.initial_learning_rate * self.drop ** (epoch // self.epochs_drop)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "drop": self.drop,
                "epochs_drop": self.epochs_drop, "steps_per_epoch": self.steps_per_epoch, "name": self.name}


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; with ``staircase=True``
    the exponent is floored, so the rate drops by ``decay_rate`` once every ``decay_steps`` steps.
    (Keras' ExponentialDecay.)"""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        who = "ExponentialDecay"
        self.initial_learning_rate = _rate(initial_learning_rate, who, "initial_learning_rate", allow_zero=False)
        self.decay_steps = check_positive_int(decay_steps, who, "decay_steps")
        self.decay_rate = check_positive_float(decay_rate, who, "decay_rate")
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step):
        p = _step(step, "ExponentialDecay") / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (floored ratio with
    ``staircase=True``). (Keras' InverseTimeDecay.)"""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        who = "InverseTimeDecay"
        self.initial_learning_rate = _rate(initial_learning_rate, who, "initial_learning_rate", allow_zero=False)
        self.decay_steps = check_positive_int(decay_steps, who, "decay_steps")
        self.decay_rate = _rate(decay_rate, who, "decay_rate")
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step):
        p = _step(step, "InverseTimeDecay") / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """From ``initial_learning_rate`` to ``end_learning_rate`` over ``decay_steps`` steps:
    ``(initial - end) * (1 - step / decay_steps) ** power + end``, then constant at ``end``
    (with ``cycle=True`` decay_steps grows to the next multiple of itself instead). (Keras'.)"""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name="PolynomialDecay"):
        who = "PolynomialDecay"
        self.initial_learning_rate = _rate(initial_learning_rate, who, "initial_learning_rate", allow_zero=False)
        self.decay_steps = check_positive_int(decay_steps, who, "decay_steps")
        self.end_learning_rate = _rate(end_learning_rate, who, "end_learning_rate")
        self.power = check_positive_float(power, who, "power")
        self.cycle = bool(cycle)
        self.name = name

    def __call__(self, step):
        s = _step(step, "PolynomialDecay")
        decay_steps = float(self.decay_steps)
        if self.cycle:
            decay_steps *= max(1.0, math.ceil(s / decay_steps))  # step 0 -> one period, as Keras
        else:
            s = min(s, decay_steps)
        frac = 1.0 - s / decay_steps
        return (self.initial_learning_rate - self.end_learning_rate) * frac ** self.power + self.end_learning_rate

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle,
                "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay with optional linear warmup (Keras' CosineDecay, after Loshchilov & Hutter).

    Without warmup (``warmup_target=None``)::

        rate = initial * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)

    With ``warmup_target`` set, the rate first rises linearly from ``initial_learning_rate`` to
    ``warmup_target`` over ``warmup_steps`` steps, then decays from ``warmup_target`` as above
    over the next ``decay_steps`` steps. ``alpha`` is the final rate as a fraction of the start.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        who = "CosineDecay"
        self.initial_learning_rate = _rate(initial_learning_rate, who, "initial_learning_rate")
        self.decay_steps = check_positive_int(decay_steps, who, "decay_steps")
        self.alpha = check_fraction(alpha, who, "alpha", high_open=False)
        self.warmup_target = None if warmup_target is None else _rate(warmup_target, who, "warmup_target")
        self.warmup_steps = check_positive_int(warmup_steps, who, "warmup_steps", allow_zero=True)
        self.name = name

    def _decay(self, step, start):
        frac = min(step, self.decay_steps) / self.decay_steps
        return start * ((1.0 - self.alpha) * 0.5 * (1.0 + math.cos(math.pi * frac)) + self.alpha)

    def __call__(self, step):
        s = _step(step, "CosineDecay")
        if self.warmup_target is None:
            return self._decay(s, self.initial_learning_rate)
        if s < self.warmup_steps:
            return self.initial_learning_rate + (self.warmup_target - self.initial_learning_rate) * s / self.warmup_steps
        return self._decay(s - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class PiecewiseConstantDecay(LearningRateSchedule):
    """A constant rate per interval of steps (Keras' PiecewiseConstantDecay).

    ``values[0]`` while step <= boundaries[0], ``values[i]`` while boundaries[i-1] < step <=
    boundaries[i], ``values[-1]`` after the last boundary. E.g. ``PiecewiseConstantDecay([1000,
    2000], [0.1, 0.01, 0.001])``. ``boundaries`` must increase strictly and be one shorter than
    ``values``.
    """

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        who = "PiecewiseConstantDecay"
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"{who}: expected len(boundaries) == len(values) - 1 (one value per interval), "
                             f"received {len(boundaries)} boundaries and {len(values)} values")
        for i, b in enumerate(boundaries):
            check_positive_int(b, who, f"boundaries[{i}]", allow_zero=True)
        if any(b1 >= b2 for b1, b2 in zip(boundaries, boundaries[1:])):
            raise ValueError(f"{who}: expected strictly increasing boundaries, received boundaries={boundaries}")
        self.boundaries = [int(b) for b in boundaries]
        self.values = [_rate(v, who, f"values[{i}]") for i, v in enumerate(values)]
        self.name = name

    def __call__(self, step):
        s = _step(step, "PiecewiseConstantDecay")
        # index of the first boundary >= step: values[i] applies on (boundaries[i-1], boundaries[i]]
        return self.values[int(np.searchsorted(self.boundaries, s, side="left"))]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values), "name": self.name}


_CLASSES = {c.__name__: c for c in (StepDecay, ExponentialDecay, InverseTimeDecay, PolynomialDecay, CosineDecay,
                                    PiecewiseConstantDecay)}


def serialize(schedule):
    """``{"class_name": ..., "config": ...}`` for a LearningRateSchedule (what optimizers save)."""
    if not isinstance(schedule, LearningRateSchedule):
        raise TypeError(f"schedules.serialize: cannot save learning_rate={schedule!r}: only LearningRateSchedule "
                        f"objects have a config. Use a cydnn.schedules class, subclass LearningRateSchedule "
                        f"(registered with @cydnn.register_serializable()), or a float learning rate")
    class_name = getattr(type(schedule), "_registered_name", type(schedule).__name__)
    return {"class_name": class_name, "config": schedule.get_config()}


def deserialize(config):
    """The schedule a ``serialize`` dict describes (built-in or registered custom classes)."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"schedules.deserialize: expected a dict with 'class_name' and 'config', received {config!r}")
    name = config["class_name"]
    cls = _CLASSES.get(name) or get_registered_object(name)
    if cls is None:
        raise ValueError(f"schedules.deserialize: unknown schedule {name!r}. Known: {', '.join(sorted(_CLASSES))}; "
                         f"a custom schedule must be registered with @cydnn.register_serializable() before loading")
    return cls.from_config(config.get("config", {}))
