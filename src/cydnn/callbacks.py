"""Callbacks: hooks into the training loop (Keras names, arguments, defaults and semantics).

Hooks: on_train_begin/end, on_epoch_begin/end, on_train_batch_begin/end (alias
on_batch_begin/end), on_test_begin/end, on_test_batch_begin/end, on_predict_begin/end. ``logs``
is a dict of floats ('loss', metric names, 'val_'-prefixed validation values, 'learning_rate'
at epoch end), shared by the callbacks of one call in list order: a callback may add entries
that later ones (and History) see. A callback stops training by setting
``self.model.stop_training = True``; fit stops after the current batch.

Built in: History (always added by fit), EarlyStopping, ReduceLROnPlateau,
LearningRateScheduler, ModelCheckpoint, CSVLogger, TerminateOnNaN, LambdaCallback.
"""
import csv
import inspect
import math
import os
import warnings

import numpy as np

from ._validation import check_positive_int

_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
          "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
          "on_predict_begin", "on_predict_end")


class Callback:
    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass


def _overrides(cb, *hooks):
    """Whether cb replaces any of these Callback hooks (in its class or on the instance)."""
    for hook in hooks:
        method = getattr(cb, hook)
        if getattr(method, "__func__", None) is not getattr(Callback, hook):
            return True
    return False


class CallbackList:
    """Calls every callback's hook in order, always with a logs dict. Batch hooks are called
    only on callbacks that override one (so a fit with none pays nothing per batch)."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: expected callbacks to be cydnn.callbacks.Callback instances, received {cb!r}")
            cb.set_model(model)
            cb.set_params(params)
        self._batch = [cb for cb in self.callbacks
                       if _overrides(cb, "on_train_batch_begin", "on_train_batch_end", "on_batch_begin",
                                     "on_batch_end")]
        self._test_batch = [cb for cb in self.callbacks
                            if _overrides(cb, "on_test_batch_begin", "on_test_batch_end")]

    def _call(self, targets, hook, *args, logs=None):
        logs = {} if logs is None else logs
        for cb in targets:
            getattr(cb, hook)(*args, logs)

    def on_train_begin(self, logs=None): self._call(self.callbacks, "on_train_begin", logs=logs)
    def on_train_end(self, logs=None): self._call(self.callbacks, "on_train_end", logs=logs)
    def on_epoch_begin(self, epoch, logs=None): self._call(self.callbacks, "on_epoch_begin", epoch, logs=logs)
    def on_epoch_end(self, epoch, logs=None): self._call(self.callbacks, "on_epoch_end", epoch, logs=logs)
    def on_train_batch_begin(self, batch, logs=None): self._call(self._batch, "on_train_batch_begin", batch, logs=logs)
    def on_train_batch_end(self, batch, logs=None): self._call(self._batch, "on_train_batch_end", batch, logs=logs)
    def on_test_begin(self, logs=None): self._call(self.callbacks, "on_test_begin", logs=logs)
    def on_test_end(self, logs=None): self._call(self.callbacks, "on_test_end", logs=logs)
    def on_test_batch_begin(self, batch, logs=None): self._call(self._test_batch, "on_test_batch_begin", batch, logs=logs)
    def on_test_batch_end(self, batch, logs=None): self._call(self._test_batch, "on_test_batch_end", batch, logs=logs)
    def on_predict_begin(self, logs=None): self._call(self.callbacks, "on_predict_begin", logs=logs)
    def on_predict_end(self, logs=None): self._call(self.callbacks, "on_predict_end", logs=logs)


class History(Callback):
    """Records every epoch's logs: ``history.history['loss']`` is a list, one value per epoch."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def plot(self, metrics=None, path=None):
        """Loss and metrics per epoch, one subplot per quantity (training and validation curves
        together); returns the matplotlib Figure and saves it as PNG when ``path`` is given.
        ``metrics``: names to show (e.g. ``["loss", "accuracy"]``); default all but the
        learning rate. Needs matplotlib: ``pip install cydnn[plot]``."""
        from .plotting import plot_history
        return plot_history(self, metrics=metrics, path=path)


# ====================================================================== monitoring
_MAXIMIZED = ("acc", "auc", "precision", "recall", "f1", "iou", "r2")


def _check_mode(mode, who):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: expected mode 'auto', 'min' or 'max', received mode={mode!r}")
    return mode


def _check_nonnegative(value, who, name):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and value >= 0
    if not ok:
        raise ValueError(f"{who}: expected {name} to be a finite number >= 0, received {name}={value!r}")
    return float(value)


def _monitor_direction(monitor, mode, who, default=None):
    """'min' or 'max' for a monitored quantity. mode='auto' decides from the name: losses and
    errors are minimized, accuracy-like metrics maximized; otherwise ``default``, or an error."""
    if mode != "auto":
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    lname = name.lower()
    if any(key in lname for key in _MAXIMIZED):
        return "max"
    if lname in ("loss", "mse", "mae", "rmse") or any(key in lname for key in ("loss", "error", "crossentropy")):
        return "min"
    if default is not None:
        return default
    raise ValueError(f"{who}: cannot tell whether monitor={monitor!r} should be minimized or maximized; "
                     f"pass mode='min' (lowest is best) or mode='max' (highest is best)")


def _missing_monitor_warning(who, what, monitor, logs):
    warnings.warn(f"{who}: {what} is conditioned on `{monitor}`, which is not in the logs, so nothing is done "
                  f"this epoch. Available: {', '.join(logs) or '(none)'}. (val_ quantities need "
                  f"validation_data or validation_split.)", RuntimeWarning, stacklevel=3)


def _float_learning_rate(model, who):
    """The optimizer's learning rate as a float; a clear error when it is a schedule."""
    opt = getattr(model, "optimizer", None)
    if opt is None:
        raise RuntimeError(f"{who}: the model has no optimizer; compile it first")
    lr = opt.learning_rate
    if callable(lr):
        raise ValueError(f"{who}: the optimizer's learning_rate is a schedule ({lr!r}), which already sets the "
                         f"rate at every step; {who} needs a float learning_rate. Use one or the other")
    return float(lr)


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving (Keras semantics).

    At each epoch end the monitored value counts as an improvement when it beats the best so far
    by more than ``min_delta``. After ``patience`` epochs in a row without improvement, training
    stops. With ``baseline``, the wait is only reset by values that also beat the baseline (so
    training stops after ``patience`` epochs if the baseline is never reached).
    ``restore_best_weights`` puts back, at the end of training, the weights of the best epoch.
    Epochs before ``start_from_epoch`` are ignored (warm-up). A missing monitored key gives a
    warning (and no action) rather than an error, as in Keras.

    Attributes after fit: ``stopped_epoch`` (0-based, 0 when not stopped), ``best``,
    ``best_epoch``, ``wait``.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        who = "EarlyStopping"
        self.monitor = str(monitor)
        # the sign of min_delta is ignored (Keras takes its absolute value)
        self.min_delta = _check_nonnegative(abs(min_delta) if isinstance(min_delta, (int, float)) else min_delta,
                                            who, "min_delta")
        self.patience = check_positive_int(patience, who, "patience", allow_zero=True)
        self.verbose = verbose
        self.mode = _check_mode(mode, who)
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = check_positive_int(start_from_epoch, who, "start_from_epoch", allow_zero=True)
        self.direction = None
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if self.direction == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()
        self.direction = _monitor_direction(self.monitor, self.mode, "EarlyStopping")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        current = logs.get(self.monitor)
        if current is None:
            _missing_monitor_warning("EarlyStopping", "early stopping", self.monitor, logs)
            return
        if epoch < self.start_from_epoch:
            return
        current = float(current)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()  # the first epoch seen is the best so far
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # the wait restarts only when the value beats both the previous best and the baseline
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when a monitored quantity stops improving.

    After ``patience`` epochs without an improvement larger than ``min_delta``, the rate becomes
    ``max(lr * factor, min_lr)``; then ``cooldown`` epochs pass before the wait counts again.
    ``logs['learning_rate']`` holds the rate used during the epoch (before any reduction at its
    end). Keras defaults (min_lr=0.0). Needs a float learning rate, not a schedule.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        who = "ReduceLROnPlateau"
        self.monitor = str(monitor)
        f = _check_nonnegative(factor, who, "factor")
        if not 0.0 < f < 1.0:
            raise ValueError(f"{who}: expected factor in (0, 1) (the rate is multiplied by it), received factor={factor!r}")
        self.factor = f
        self.patience = check_positive_int(patience, who, "patience", allow_zero=True)
        self.verbose = verbose
        self.mode = _check_mode(mode, who)
        self.min_delta = _check_nonnegative(min_delta, who, "min_delta")
        self.cooldown = check_positive_int(cooldown, who, "cooldown", allow_zero=True)
        self.min_lr = _check_nonnegative(min_lr, who, "min_lr")
        # Keras: 'auto' maximizes names containing 'acc', minimizes everything else
        self.direction = _monitor_direction(self.monitor, self.mode, who, default="min")
        self._reset()

    def _reset(self):
        self.best = math.inf if self.direction == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def _is_improvement(self, value):
        if self.direction == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()
        _float_learning_rate(self.model, "ReduceLROnPlateau")

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        logs["learning_rate"] = _float_learning_rate(self.model, "ReduceLROnPlateau")
        current = logs.get(self.monitor)
        if current is None:
            _missing_monitor_warning("ReduceLROnPlateau", "learning-rate reduction", self.monitor, logs)
            return
        current = float(current)
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = logs["learning_rate"]
                if old_lr > np.float32(self.min_lr):  # float32 compare, as Keras: stop once at min_lr
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch: ``lr = schedule(epoch, lr)`` (epoch
    from 0; a one-argument ``schedule(epoch)`` is accepted too, as Keras does).

        LearningRateScheduler(lambda epoch, lr: lr if epoch < 10 else lr * 0.9)

    For per-step decay, pass a cydnn.schedules object as the optimizer's learning_rate instead.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: expected schedule to be a function (epoch, lr) -> lr, "
                            f"received {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        self._two_args = _accepts_two_args(schedule)

    def on_train_begin(self, logs=None):
        _float_learning_rate(self.model, "LearningRateScheduler")

    def on_epoch_begin(self, epoch, logs=None):
        lr = _float_learning_rate(self.model, "LearningRateScheduler")
        new = self.schedule(epoch, lr) if self._two_args else self.schedule(epoch)
        ok = isinstance(new, (int, float, np.integer, np.floating)) and not isinstance(new, bool) \
            and math.isfinite(new) and new >= 0
        if not ok:
            raise ValueError(f"LearningRateScheduler: the schedule must return a finite float >= 0, "
                             f"returned {new!r} for epoch={epoch}")
        self.model.optimizer.learning_rate = float(new)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(new)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _float_learning_rate(self.model, "LearningRateScheduler")


def _accepts_two_args(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    n = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n >= 2


class ModelCheckpoint(Callback):
    """Save the model (or only its weights) during training.

    ``filepath`` may hold ``str.format`` fields filled from the epoch (1-based) and the logs:
    ``"ckpt/model-{epoch:02d}-{val_loss:.3f}.keras"``. With ``save_best_only``, a file is written
    only when the monitored quantity improves (a fixed filepath then always holds the best model).
    ``save_freq="epoch"`` saves at each epoch end; an int N saves every N batches (``{batch}`` is
    then available too). ``initial_value_threshold``: only save values better than this.
    Saving uses ``model.save(path)`` / ``model.save_weights(path)`` (cydnn.saving; atomic writes).
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__()
        who = "ModelCheckpoint"
        self.filepath = os.fspath(filepath)
        self.monitor = str(monitor)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _check_mode(mode, who)
        if save_freq != "epoch":
            save_freq = check_positive_int(save_freq, who, "save_freq (\"epoch\" or a number of batches)")
        self.save_freq = save_freq
        self.initial_value_threshold = None if initial_value_threshold is None else float(initial_value_threshold)
        self.direction = _monitor_direction(self.monitor, self.mode, who) if self.save_best_only else None
        self.best = self.initial_value_threshold
        self._batches_seen = 0
        self._epoch = 0

    def on_train_begin(self, logs=None):
        saver = "save_weights" if self.save_weights_only else "save"
        if not callable(getattr(self.model, saver, None)):
            raise RuntimeError(f"ModelCheckpoint: the model has no {saver}() method (cydnn.saving is missing)")
        self._batches_seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_seen += 1
        if self._batches_seen % self.save_freq == 0:
            self._save(self._epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _path(self, epoch, batch, logs):
        fields = {k: v for k, v in logs.items() if isinstance(k, str)}
        fields["epoch"] = epoch + 1
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            raise KeyError(f"ModelCheckpoint: cannot format filepath {self.filepath!r} with epoch and the logs "
                           f"({', '.join(fields)}): {e!r}") from None

    def _save(self, epoch, batch, logs):
        path = self._path(epoch, batch, logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                _missing_monitor_warning("ModelCheckpoint", "save_best_only", self.monitor, logs)
                return
            current = float(current)
            better = self.best is None or (current < self.best if self.direction == "min" else current > self.best)
            if not better:
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose > 0:
                prev = "inf" if self.best is None else f"{self.best:.5f}"
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {prev} to {current:.5f}, saving to {path}")
            self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file: ``epoch`` then the log keys, sorted.

    ``append=True`` continues an existing file (writing the header only if it is empty), e.g.
    when training resumes. The file is flushed after every row and closed when training ends.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: expected separator to be one character, received separator={separator!r}")
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self.writer = None
        self.csv_file = None
        self._write_header = True

    def on_train_begin(self, logs=None):
        self._write_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, "r", newline="") as f:
                self._write_header = not f.readline()
        self._close()
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="")
        self.keys = None
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
        if self.writer is None:
            self.writer = csv.writer(self.csv_file, delimiter=self.sep)
            if self._write_header:
                self.writer.writerow(["epoch"] + self.keys)
        self.writer.writerow([epoch] + [_csv_value(logs.get(k, "NA")) for k in self.keys])
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        self._close()

    def _close(self):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None

    def __del__(self):
        if getattr(self, "csv_file", None) is not None:
            self._close()


def _csv_value(v):
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(map(str, v)) + "]"
    return v


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions, for quick hooks::

        LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))

    Signatures (as Keras): on_epoch_begin/on_epoch_end(epoch, logs), on_train_batch_begin/
    on_train_batch_end (alias on_batch_begin/on_batch_end)(batch, logs), on_train_begin/
    on_train_end(logs); other hooks (on_test_begin, ...) may be given by name too. ``logs`` is
    always a dict.
    """

    _ALIASES = {"on_batch_begin": "on_train_batch_begin", "on_batch_end": "on_train_batch_end"}

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        given = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end, "on_train_begin": on_train_begin,
                 "on_train_end": on_train_end, "on_train_batch_begin": on_train_batch_begin,
                 "on_train_batch_end": on_train_batch_end}
        for name, fn in kwargs.items():
            hook = self._ALIASES.get(name, name)
            if hook not in _HOOKS:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}; hooks are "
                                f"{', '.join(_HOOKS + tuple(self._ALIASES))}")
            if given.get(hook) is not None and fn is not None:
                raise TypeError(f"LambdaCallback: {hook} given twice (as {name!r} and {hook!r})")
            given[hook] = fn if fn is not None else given.get(hook)
        for hook, fn in given.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback: expected {hook} to be a function, received {fn!r}")
            setattr(self, hook, fn)
