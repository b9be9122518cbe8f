"""Optimizers (Keras names and defaults; update formulas as PyTorch's torch.optim).

An optimizer updates one flat parameter buffer from one flat gradient buffer with a single
fused kernel (csrc/optim.pyx); models pack every trainable weight into such a buffer. Gradient
clipping runs first: ``clipvalue`` (elementwise), ``clipnorm`` (each variable's norm) or
``global_clipnorm`` (the norm over all variables). ``learning_rate`` may be a float or a
schedule: any callable taking the step count (``optimizer.iterations``) and returning a rate.
"""
import math

import numpy as np

from . import schedules, threads
from ._kernels import optim as _k
from ._validation import unknown_identifier


class Optimizer:
    def __init__(self, learning_rate=0.01, clipvalue=None, clipnorm=None, global_clipnorm=None,
                 weight_decay=0.0, name=None):
        who = type(self).__name__
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError(f"{who}: set clipnorm or global_clipnorm, not both "
                             f"(received clipnorm={clipnorm}, global_clipnorm={global_clipnorm})")
        for key, v in (("clipvalue", clipvalue), ("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm)):
            if v is not None and not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"{who}: expected {key} > 0 or None, received {key}={v!r}")
        if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
            raise ValueError(f"{who}: expected weight_decay >= 0, received weight_decay={weight_decay!r}")
        self.learning_rate = learning_rate
        self.clipvalue, self.clipnorm, self.global_clipnorm = clipvalue, clipnorm, global_clipnorm
        self.weight_decay = float(weight_decay)
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._slots = {}

    # ------------------------------------------------------------ learning rate
    @property
    def learning_rate(self):
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value):
        if callable(value):
            self._lr = value
            return
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not value >= 0:
            raise ValueError(f"{type(self).__name__}: expected learning_rate to be a float >= 0 or a schedule, "
                             f"received learning_rate={value!r}")
        self._lr = float(value)

    def current_learning_rate(self):
        """The rate the next step will use (a schedule is evaluated at ``iterations``)."""
        lr = self._lr
        return float(lr(self.iterations)) if callable(lr) else lr

    # ------------------------------------------------------------ slots
    def slot(self, name, like):
        """A state buffer shaped like the parameters, created (zeros) on first use."""
        s = self._slots.get(name)
        if s is None or s.shape != like.shape or s.dtype != like.dtype:
            s = self._slots[name] = np.full_like(like, self._slot_initial_value(name))
        return s

    def _slot_initial_value(self, name):
        """What a state buffer starts at (Adagrad's accumulator: initial_accumulator_value)."""
        return 0.0

    def remap_slots(self, old_layout, new_layout):
        """Keep each variable's state when a model re-packs its parameters (a layer frozen or
        unfrozen). Layouts map a variable key to its (offset, size) in the flat buffer."""
        for name, old in list(self._slots.items()):
            size = sum(n for _, n in new_layout.values())
            new = np.full(size, self._slot_initial_value(name), dtype=old.dtype)
            for key, (off, n) in new_layout.items():
                if key in old_layout:
                    o, m = old_layout[key]
                    if m == n:
                        new[off:off + n] = old[o:o + m]
            self._slots[name] = new

    # ------------------------------------------------------------ stepping
    def apply(self, params, grads, segments=None):
        """One step on flat buffers. ``segments`` (offset, size) per variable, for clipnorm."""
        nt = threads.get_num_threads()
        if self.clipvalue is not None:
            _k.clip_by_value(grads, self.clipvalue, nt)
        if self.clipnorm is not None:
            for off, n in (segments or [(0, grads.shape[0])]):
                g = grads[off:off + n]
                norm = math.sqrt(_k.sum_of_squares(g, nt))
                if norm > self.clipnorm:
                    _k.scale(g, self.clipnorm / norm, nt)
        if self.global_clipnorm is not None:
            norm = math.sqrt(_k.sum_of_squares(grads, nt))
            if norm > self.global_clipnorm:
                _k.scale(grads, self.global_clipnorm / norm, nt)
        lr = self.current_learning_rate()
        self.iterations += 1
        self._update(params, grads, lr, nt)

    def apply_gradients(self, grads_and_vars):
        """Keras-style step on separate arrays: ``opt.apply_gradients(zip(grads, weights))``.
        Each call packs them into flat buffers, so prefer models for speed."""
        pairs = list(grads_and_vars)
        if not pairs:
            return
        dtype = np.result_type(*[v.dtype for _, v in pairs])
        params = np.concatenate([np.asarray(v, dtype).reshape(-1) for _, v in pairs])
        grads = np.concatenate([np.asarray(g, dtype).reshape(-1) for g, _ in pairs])
        offs = np.cumsum([0] + [v.size for _, v in pairs])
        self.apply(params, grads, [(int(offs[i]), int(offs[i + 1] - offs[i])) for i in range(len(pairs))])
        for i, (_, v) in enumerate(pairs):
            v[...] = params[offs[i]:offs[i + 1]].reshape(v.shape)

    def _update(self, params, grads, lr, nt):
        raise NotImplementedError

    # ------------------------------------------------------------ state and config
    def get_state(self):
        return {"iterations": self.iterations, "slots": {k: v.copy() for k, v in self._slots.items()}}

    def set_state(self, state):
        self.iterations = int(state["iterations"])
        self._slots = {k: np.array(v) for k, v in state["slots"].items()}

    def get_config(self):
        lr = self._lr
        if callable(lr):
            lr = schedules.serialize(lr)
        return {"name": self.name, "learning_rate": lr, "clipvalue": self.clipvalue, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "weight_decay": self.weight_decay}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)


def _check(who, name, value, low=0.0, high=None, low_open=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{who}: expected {name} in {rng}, received {name}={value!r}")
    return float(value)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and weight decay.

    buf = momentum * buf + g (g on the first step);  p -= lr * (g + momentum * buf if nesterov else buf).
    Defaults as Keras: learning_rate=0.01, momentum=0.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, dampening=0.0, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = _check("SGD", "momentum", momentum, 0.0, 1.0)
        self.dampening = _check("SGD", "dampening", dampening, 0.0, 1.0)
        if nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0, received momentum=0")
        self.nesterov = bool(nesterov)

    def _update(self, params, grads, lr, nt):
        buf = self.slot("momentum", params) if self.momentum else None
        _k.sgd_step(params, grads, buf, lr, self.momentum, self.dampening, self.nesterov,
                    self.weight_decay, self.iterations == 1, nt)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov,
                "dampening": self.dampening}


class Adam(Optimizer):
    """Adam (Kingma & Ba): bias-corrected moments, p -= lr * m̂ / (sqrt(v̂) + epsilon).

    Keras defaults: learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7.
    ``weight_decay`` is added to the gradient (L2, as torch.optim.Adam); AdamW decouples it.
    """

    _decoupled = False

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        who = type(self).__name__
        self.beta_1 = _check(who, "beta_1", beta_1, 0.0, 1.0)
        self.beta_2 = _check(who, "beta_2", beta_2, 0.0, 1.0)
        self.epsilon = _check(who, "epsilon", epsilon, 0.0, low_open=True)
        self.amsgrad = bool(amsgrad)

    def _update(self, params, grads, lr, nt):
        _k.adam_step(params, grads, self.slot("m", params), self.slot("v", params),
                     self.slot("vmax", params) if self.amsgrad else None, lr, self.beta_1, self.beta_2,
                     self.epsilon, self.iterations, self.weight_decay, self._decoupled, nt)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr * weight_decay.
    Keras default weight_decay=0.004."""

    _decoupled = True

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    """v = rho * v + (1 - rho) * g²;  p -= lr * g / (sqrt(v) + epsilon); optional momentum and
    centering. Keras defaults: learning_rate=0.001, rho=0.9, epsilon=1e-7."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = _check("RMSprop", "rho", rho, 0.0, 1.0)
        self.momentum = _check("RMSprop", "momentum", momentum, 0.0, 1.0)
        self.epsilon = _check("RMSprop", "epsilon", epsilon, 0.0, low_open=True)
        self.centered = bool(centered)

    def _update(self, params, grads, lr, nt):
        _k.rmsprop_step(params, grads, self.slot("v", params),
                        self.slot("momentum", params) if self.momentum else None,
                        self.slot("mean_grad", params) if self.centered else None,
                        lr, self.rho, self.epsilon, self.momentum, self.weight_decay, nt)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """acc += g²;  p -= lr * g / (sqrt(acc) + epsilon). Keras defaults: learning_rate=0.001,
    initial_accumulator_value=0.1, epsilon=1e-7."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = _check("Adagrad", "initial_accumulator_value", initial_accumulator_value)
        self.epsilon = _check("Adagrad", "epsilon", epsilon, 0.0, low_open=True)

    def _slot_initial_value(self, name):
        return self.initial_accumulator_value

    def _update(self, params, grads, lr, nt):
        _k.adagrad_step(params, grads, self.slot("accumulator", params), lr, self.epsilon, self.weight_decay, nt)

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


_REGISTRY = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}
_CLASSES = {c.__name__: c for c in _REGISTRY.values()}


def get(identifier):
    """An optimizer from a name ('adam') with Keras defaults, a config dict, or an Optimizer."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return _CLASSES[identifier["class_name"]].from_config(identifier.get("config", {}))
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]()
    raise unknown_identifier("optimizer", identifier, _REGISTRY)


def serialize(opt):
    return {"class_name": type(opt).__name__, "config": opt.get_config()}
