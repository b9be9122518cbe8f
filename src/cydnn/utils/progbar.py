"""Keras-style progress output for fit/evaluate/predict.

verbose=1: on a terminal, one bar per epoch redrawn in place (at most 10 times a second) with
the running loss/metrics and an ETA; when output is not a terminal (logs, CI), one line per
epoch so logs stay readable. verbose=2: one line per epoch. verbose=0: silent.
"""
import numbers
import sys
import time


def _fmt_time(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


def _fmt_value(v):
    if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral):
        return f"{v:.4f}" if abs(v) > 1e-3 or v == 0 else f"{v:.4e}"  # tiny values keep their digits
    return str(v)


def format_logs(logs):
    """``loss: 0.1234 - accuracy: 0.9600`` (values below 1e-3 in scientific notation, as Keras)."""
    return " - ".join(f"{k}: {_fmt_value(v)}" for k, v in logs.items())


class Progbar:
    """A progress bar for ``target`` steps written to ``stream`` (default sys.stdout).

    ``update(current, logs)`` redraws the bar in place (only on a terminal, at most once per
    ``interval`` seconds): ``  7/45 [====>.........] - ETA: 1s - loss: 0.4321``.
    ``update(current, logs, finalize=True)`` writes the epoch's final line and a newline:
    ``45/45 [==============] - 1s 22ms/step - loss: 0.3012``.
    """

    def __init__(self, target, verbose=1, width=30, stream=None, interval=0.1):
        self.target = target
        self.verbose = verbose
        self.width = width
        self.stream = stream or sys.stdout
        self.interval = interval
        self.dynamic = verbose == 1 and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._last = float("-inf")  # the first update is always drawn
        self._shown = 0  # width of the line currently on screen (dynamic mode), to blank leftovers

    def update(self, current, logs=None, finalize=False):
        if self.verbose == 0:
            return
        now = time.perf_counter()
        if not finalize and (not self.dynamic or now - self._last < self.interval):
            return
        self._last = now
        elapsed = now - self.start
        logs = logs or {}
        count = f"{current:>{len(str(self.target))}}/{self.target}" if self.target else f"{current}"
        if finalize:
            per_step = elapsed / max(current, 1)
            line = f"{count} - {_fmt_time(elapsed)} {_fmt_time(per_step)}/step"
            if self.verbose == 1 and self.target:
                line = f"{count} {self._bar(current)} - {_fmt_time(elapsed)} {_fmt_time(per_step)}/step"
        else:
            eta = elapsed / max(current, 1) * (self.target - current) if self.target else 0
            line = f"{count} {self._bar(current)} - ETA: {_fmt_time(eta)}"
        if logs:
            line += " - " + format_logs(logs)
        if self.dynamic:
            pad = " " * max(self._shown - len(line), 0)
            self._shown = 0 if finalize else len(line)
            self.stream.write("\r" + line + pad + ("\n" if finalize else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _bar(self, current):
        done = int(self.width * current / self.target) if self.target else self.width
        if done >= self.width:
            return "[" + "=" * self.width + "]"
        return "[" + "=" * done + ">" + "." * (self.width - done - 1) + "]"
