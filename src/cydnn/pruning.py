"""Magnitude pruning, pruning schedules and the lottery-ticket procedure.

Masks are a dict ``{"layer_name/weight_name": bool array}`` (True keeps a weight). cydnn prunes
without wrapper layers: a mask is enforced by multiplying the weight by it after every optimizer
step (``MaskCallback``), so the forward pass always sees the pruned network. The optimizer's
slots (momentum, Adam moments) are zeroed at pruned positions at the same time, so neither the
weights nor any stale momentum can bring a pruned weight back.

    masks = pruning.magnitude_masks(model, 0.8)              # 80% of the kernels, global ranking
    pruning.apply_masks(model, masks)                        # weights *= mask
    model.fit(x, y, callbacks=[pruning.MaskCallback(masks)]) # train, keeping them pruned

    schedule = pruning.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=500, frequency=50)
    cb = pruning.PruningCallback(schedule)                   # prune gradually while training
    model.fit(x, y, epochs=10, callbacks=[cb]); pruning.strip(model, cb.masks)

    ticket = pruning.lottery_ticket(model, x, y, sparsity=0.8, epochs=20)

Only kernels are pruned by default (weights whose name ends in "kernel": Dense and Conv kernels,
depthwise and recurrent kernels); ``kernels_only=False`` prunes every trainable weight.
"""
from dataclasses import dataclass, field

import numpy as np

from . import backend
from ._validation import check_fraction, check_positive_int
from .callbacks import Callback

__all__ = ["prunable_weights", "magnitude_masks", "apply_masks", "masks_from_weights", "sparsity", "strip",
           "ConstantSparsity", "PolynomialDecay", "MaskCallback", "PruningCallback", "lottery_ticket",
           "LotteryTicket", "random_reinit"]


# ==================================================================== weights and masks
def prunable_weights(model, kernels_only=True):
    """``{"layer/weight": (layer, index)}`` for the weights pruning applies to, in model order:
    trainable weights (of every layer, frozen or not) whose name ends in 'kernel', or all
    trainable weights with ``kernels_only=False``."""
    if not getattr(model, "built", True):
        raise ValueError(f"pruning: {type(model).__name__} '{model.name}' is not built; build or fit it first")
    out = {}
    for layer in model.layers:
        for i, (name, trainable) in enumerate((p.name, p.trainable) for p in layer._params):
            if not trainable or (kernels_only and not name.endswith("kernel")):
                continue
            key = f"{layer.name}/{name}"
            if key in out:
                key = f"{key}:{i}"
            out[key] = (layer, i)
    if not out:
        raise ValueError(f"pruning: {type(model).__name__} '{model.name}' has no "
                         f"{'kernel ' if kernels_only else ''}weights to prune")
    return out


def _check_masks(model, masks, who):
    targets = _all_weights(model)
    for key, m in masks.items():
        if key not in targets:
            raise ValueError(f"{who}: mask for unknown weight {key!r}; weights are {sorted(targets)}")
        layer, i = targets[key]
        if np.shape(m) != layer._params[i].value.shape:
            raise ValueError(f"{who}: mask {key!r} has shape {np.shape(m)}, the weight has shape "
                             f"{layer._params[i].value.shape}")
    return targets


def _all_weights(model):
    out = {}
    for layer in model.layers:
        for i, name in enumerate(p.name for p in layer._params):
            key = f"{layer.name}/{name}"
            out[key if key not in out else f"{key}:{i}"] = (layer, i)
    return out


def magnitude_masks(model, sparsity, scope="global", kernels_only=True, masks=None, weights=None):
    """Masks that prune the ``sparsity`` fraction of smallest-magnitude weights.

    Args:
        sparsity: fraction in [0, 1) to prune. Exactly ``round(sparsity * n)`` weights are
            pruned, n counted over all prunable weights (``scope='global'``, one ranking across
            layers) or per weight (``scope='layer'``, each pruned to the same fraction).
        masks: previous masks; weights they prune stay pruned (sparsity only grows), so an
            iterative schedule never revives a weight.
        weights: ``{"layer/weight": array}`` to rank instead of the model's current values
            (the lottery ticket ranks the trained weights).
    Ties in magnitude are broken by position, so the result is deterministic.
    """
    sparsity = check_fraction(sparsity, "magnitude_masks", "sparsity")
    if scope not in ("global", "layer"):
        raise ValueError(f"magnitude_masks: expected scope 'global' or 'layer', received scope={scope!r}")
    targets = prunable_weights(model, kernels_only)
    if masks:
        _check_masks(model, masks, "magnitude_masks")

    def score(key):
        layer, i = targets[key]
        w = layer._params[i].value if weights is None or key not in weights else np.asarray(weights[key])
        s = np.abs(w.astype(np.float64, copy=False)).reshape(-1)
        if masks and key in masks:
            s = np.where(np.asarray(masks[key], dtype=bool).reshape(-1), s, -1.0)  # pruned: ranked first
        return s

    def prune(scores):
        n = scores.size
        k = int(round(sparsity * n))
        k = max(k, int(np.count_nonzero(scores < 0)))  # previously pruned stay pruned
        keep = np.ones(n, dtype=bool)
        keep[np.argsort(scores, kind="stable")[:k]] = False
        return keep

    out = {}
    if scope == "layer":
        for key, (layer, i) in targets.items():
            out[key] = prune(score(key)).reshape(layer._params[i].value.shape)
    else:
        scores = [score(key) for key in targets]
        keep = prune(np.concatenate(scores))
        off = 0
        for key, s in zip(targets, scores):
            layer, i = targets[key]
            out[key] = keep[off:off + s.size].reshape(layer._params[i].value.shape)
            off += s.size
    return out


def masks_from_weights(model, kernels_only=True):
    """Masks of the weights that are not exactly zero (e.g. to resume pruning after loading)."""
    return {key: layer._params[i].value != 0 for key, (layer, i) in prunable_weights(model, kernels_only).items()}


def apply_masks(model, masks):
    """weights *= mask, in place; the optimizer's slots are zeroed at pruned positions too
    (momentum and Adam moments of a pruned weight start from zero if it is ever revived)."""
    targets = _check_masks(model, masks, "apply_masks")
    for key, m in masks.items():
        layer, i = targets[key]
        w = layer._params[i].value
        np.multiply(w, m, out=w)
    _mask_optimizer_slots(model, masks, targets)


def _mask_optimizer_slots(model, masks, targets):
    opt = getattr(model, "optimizer", None)
    layout = getattr(model, "_layout", None)
    if opt is None or not layout or not opt._slots:
        return
    total = sum(n for _, n in layout.values())
    for slot in opt._slots.values():
        if slot.ndim != 1 or slot.shape[0] != total:
            continue  # not laid out like this model's parameters
        for key, m in masks.items():
            layer, i = targets[key]
            span = layout.get((layer.name, i))
            if span is not None:
                off, n = span
                view = slot[off:off + n]
                np.multiply(view, m.reshape(-1), out=view)


def sparsity(model_or_masks, kernels_only=True):
    """Fraction of pruned entries: of a masks dict (False entries), or of a model's prunable
    weights (exact zeros)."""
    if isinstance(model_or_masks, dict):
        arrays = [np.asarray(m, dtype=bool) for m in model_or_masks.values()]
        total = sum(a.size for a in arrays)
        return float(sum(a.size - np.count_nonzero(a) for a in arrays) / total) if total else 0.0
    ws = [layer._params[i].value for layer, i in prunable_weights(model_or_masks, kernels_only).values()]
    total = sum(w.size for w in ws)
    return float(sum(w.size - np.count_nonzero(w) for w in ws) / total)


_mask_sparsity = sparsity


def strip(model, masks=None):
    """Finish pruning: apply ``masks`` a last time (pruned weights exactly zero, their optimizer
    slots cleared) and return the model. cydnn prunes without wrapper layers, so the result is
    the plain model, ready to save; training it further without a MaskCallback lets pruned
    weights grow back."""
    if masks:
        apply_masks(model, masks)
    return model


# ==================================================================== schedules
class _Schedule:
    def __init__(self, begin_step, end_step, frequency):
        self.begin_step = check_positive_int(begin_step, type(self).__name__, "begin_step", allow_zero=True)
        if end_step != -1:
            end_step = check_positive_int(end_step, type(self).__name__, "end_step", allow_zero=True)
            if end_step < self.begin_step:
                raise ValueError(f"{type(self).__name__}: expected end_step >= begin_step ({self.begin_step}) "
                                 f"or -1, received end_step={end_step}")
        self.end_step = end_step
        self.frequency = check_positive_int(frequency, type(self).__name__, "frequency")

    def should_update(self, step):
        """Masks are recomputed at begin_step, every ``frequency`` steps after, and at end_step."""
        if step < self.begin_step or (self.end_step != -1 and step > self.end_step):
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def __call__(self, step):
        """(update the masks at this step?, target sparsity)"""
        return self.should_update(step), self.sparsity(step)


class ConstantSparsity(_Schedule):
    """Prune to ``target_sparsity`` at ``begin_step`` and re-rank every ``frequency`` steps
    until ``end_step`` (-1: until training ends)."""

    def __init__(self, target_sparsity, begin_step=0, end_step=-1, frequency=100):
        super().__init__(begin_step, end_step, frequency)
        self.target_sparsity = check_fraction(target_sparsity, "ConstantSparsity", "target_sparsity")

    def sparsity(self, step):
        return self.target_sparsity


class PolynomialDecay(_Schedule):
    """Sparsity rising from ``initial_sparsity`` at begin_step to ``final_sparsity`` at end_step
    (Zhu & Gupta 2017, as tfmot): s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^power."""

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100):
        super().__init__(begin_step, end_step, frequency)
        if end_step == -1:
            raise ValueError("PolynomialDecay: expected an end_step at which final_sparsity is reached, "
                             "received end_step=-1")
        self.initial_sparsity = check_fraction(initial_sparsity, "PolynomialDecay", "initial_sparsity")
        self.final_sparsity = check_fraction(final_sparsity, "PolynomialDecay", "final_sparsity")
        if not power > 0:
            raise ValueError(f"PolynomialDecay: expected power > 0, received power={power!r}")
        self.power = float(power)

    def sparsity(self, step):
        span = self.end_step - self.begin_step
        p = 1.0 if span == 0 else min(1.0, max(0.0, (step - self.begin_step) / span))
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - p) ** self.power


# ==================================================================== callbacks
class MaskCallback(Callback):
    """Keeps ``masks`` through training: applied when training starts and after every batch
    (after the optimizer step), so pruned weights stay exactly zero.

    Per batch this is one multiplication of the model's flat parameter buffer, and of each
    optimizer slot laid out like it, by a flat 0/1 mask built once per ``fit``."""

    def __init__(self, masks=None):
        super().__init__()
        self.masks = None if masks is None else {k: np.asarray(v, dtype=bool) for k, v in masks.items()}
        self._flat, self._flat_for = None, None

    def _build_flat(self):
        """The masks laid out like the model's flat parameter buffer (ones elsewhere), or None
        when no masked weight is in it."""
        model = self.model
        params, layout = getattr(model, "_params", None), getattr(model, "_layout", None)
        self._flat, self._flat_for = None, params
        if params is None or not layout:
            return
        targets = _check_masks(model, self.masks, type(self).__name__)
        flat = None
        for key, m in self.masks.items():
            layer, i = targets[key]
            span = layout.get((layer.name, i))
            if span is not None:
                if flat is None:
                    flat = np.ones_like(params)
                off, n = span
                flat[off:off + n] = m.reshape(-1)
        self._flat = flat

    def _apply_flat(self):
        model = self.model
        if self._flat_for is not model._params:  # re-packed (a layer frozen or unfrozen)
            apply_masks(model, self.masks)
            self._build_flat()
            return
        if self._flat is None:
            return
        params = model._params
        np.multiply(params, self._flat, out=params)
        for slot in model.optimizer._slots.values():
            if slot.shape == params.shape:
                np.multiply(slot, self._flat, out=slot)

    def on_train_begin(self, logs=None):
        if self.masks:
            apply_masks(self.model, self.masks)  # every masked weight, trainable or frozen
            self._build_flat()

    def on_train_batch_end(self, batch, logs=None):
        if self.masks:
            self._apply_flat()

    def on_train_end(self, logs=None):
        if self.masks:
            apply_masks(self.model, self.masks)


class PruningCallback(MaskCallback):
    """Magnitude pruning during training on a schedule (``ConstantSparsity``,
    ``PolynomialDecay``, or any callable step -> (update?, sparsity)).

    The step is the optimizer's step count (``model.optimizer.iterations``), checked before
    each batch: when the schedule says so, the masks are recomputed from the current weights
    (pruned weights stay pruned) and applied; after each batch they are applied again. The
    masks live in ``self.masks`` and carry over to later ``fit`` calls with this callback.
    """

    def __init__(self, schedule, scope="global", kernels_only=True, masks=None):
        super().__init__(masks)
        if not callable(schedule):
            raise TypeError(f"PruningCallback: expected a schedule (e.g. pruning.ConstantSparsity(0.8)), "
                            f"received {schedule!r}")
        if scope not in ("global", "layer"):
            raise ValueError(f"PruningCallback: expected scope 'global' or 'layer', received scope={scope!r}")
        self.schedule, self.scope, self.kernels_only = schedule, scope, kernels_only
        self._last_step = None

    def on_train_begin(self, logs=None):
        if self.masks is None:
            self.masks = {key: np.ones(layer._params[i].value.shape, dtype=bool)
                          for key, (layer, i) in prunable_weights(self.model, self.kernels_only).items()}
        super().on_train_begin(logs)

    def on_train_batch_begin(self, batch, logs=None):
        step = self.model.optimizer.iterations
        if step == self._last_step:  # gradient accumulation: several batches per step
            return
        self._last_step = step
        update, target = self.schedule(step)
        if update:
            self.masks = magnitude_masks(self.model, target, self.scope, self.kernels_only, masks=self.masks)
            apply_masks(self.model, self.masks)
            self._build_flat()

    @property
    def sparsity(self):
        return sparsity(self.masks) if self.masks else 0.0


# ==================================================================== lottery ticket
@dataclass
class LotteryTicket:
    """What ``lottery_ticket`` found. ``masks``: the final masks; ``initial_weights``: the
    model's weights before any training (``model.get_weights()`` order); ``dense_weights``: the
    weights after the first (dense) training; ``rewound_weights``: the initial weights with the
    final masks applied, where the last retraining started; ``histories``: one History per
    training run (dense, then one per round); ``sparsities``: sparsity after each round."""
    masks: dict
    initial_weights: list
    dense_weights: list
    rewound_weights: list
    histories: list = field(default_factory=list)
    sparsities: list = field(default_factory=list)


def lottery_ticket(model, x, y, sparsity=0.8, rounds=1, scope="global", kernels_only=True, retrain=True,
                   **fit_kwargs):
    """Find a winning ticket (Frankle & Carbin 2019): train, prune by magnitude, rewind the
    surviving weights to their initial values, retrain with the mask.

    ``model`` must be compiled; its current weights are the initial ones. With ``rounds=r``
    the pruning is iterative: round j prunes to sparsity ``1 - (1 - sparsity)^(j / r)`` of the
    weights trained in round j - 1 (rewound each time). Between trainings the optimizer's
    state (step count, slots) and learning rate are reset to their initial values. Biases and
    other weights (e.g. BatchNormalization statistics) are rewound too but not pruned (unless
    ``kernels_only=False``). ``fit_kwargs`` go to every ``model.fit`` call (epochs, batch_size,
    callbacks, ...). With ``retrain=False`` the model is left at the rewound ticket, untrained.
    Returns a LotteryTicket; the model holds the retrained sparse network.
    """
    check_fraction(sparsity, "lottery_ticket", "sparsity")
    rounds = check_positive_int(rounds, "lottery_ticket", "rounds")
    if not model.compiled:
        raise RuntimeError(f"lottery_ticket: compile {type(model).__name__} '{model.name}' first")
    if not model.built:
        xs = x if isinstance(x, (list, tuple)) else [x]
        model.build([(None,) + np.shape(a)[1:] for a in xs])
    opt = model.optimizer
    opt_state, lr = opt.get_state(), opt.learning_rate
    user_callbacks = list(fit_kwargs.pop("callbacks", None) or [])
    initial = model.get_weights()

    def train(masks):
        cbs = user_callbacks + ([MaskCallback(masks)] if masks else [])
        return model.fit(x, y, callbacks=cbs, **fit_kwargs)

    def rewind(masks):
        model.set_weights(initial)
        opt.set_state(opt_state)
        opt.learning_rate = lr
        apply_masks(model, masks)

    histories = [train(None)]
    dense = model.get_weights()
    masks, sparsities = None, []
    for j in range(1, rounds + 1):
        target = 1.0 - (1.0 - sparsity) ** (j / rounds)
        masks = magnitude_masks(model, target, scope, kernels_only, masks=masks)
        sparsities.append(_mask_sparsity(masks))
        rewind(masks)
        rewound = model.get_weights()
        if j < rounds or retrain:
            histories.append(train(masks))
    return LotteryTicket(masks=masks, initial_weights=initial, dense_weights=dense, rewound_weights=rewound,
                         histories=histories, sparsities=sparsities)


def random_reinit(model, masks=None, seed=None):
    """Give every weight a fresh draw from its initializer (a new model built from the same
    config), then apply ``masks``: the random-reinitialization control of the lottery-ticket
    experiment. The optimizer's state is left alone (reset it if the model was trained)."""
    saved = None
    if seed is not None:
        saved = backend.rng().bit_generator.state
        backend.rng().bit_generator.state = np.random.default_rng(seed).bit_generator.state
    try:
        fresh = type(model).from_config(model.get_config())
        if not fresh.built:
            shapes = model.input_shapes
            fresh.build(shapes if len(shapes) > 1 else shapes[0])
    finally:
        if saved is not None:
            backend.rng().bit_generator.state = saved
    model.set_weights(fresh.get_weights())
    if masks:
        apply_masks(model, masks)
    return model
