"""Keras-style progress output for fit/evaluate/predict.

verbose=1: on a terminal, one bar per epoch redrawn in place (at most 10 times a second) with
the running loss/metrics and an ETA; when output is not a terminal (logs, CI), one line per
epoch so logs stay readable. verbose=2: one line per epoch. verbose=0: silent.
"""
import sys
import time


def _fmt_time(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    if seconds >= 1:
        return f"{seconds:.0f}s"
    return f"{seconds * 1e3:.0f}ms"


def format_logs(logs):
    return " - ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in logs.items())


class Progbar:
    def __init__(self, target, verbose=1, width=30, stream=None, interval=0.1):
        self.target = target
        self.verbose = verbose
        self.width = width
        self.stream = stream or sys.stdout
        self.interval = interval
        self.dynamic = verbose == 1 and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, current, logs=None, finalize=False):
        if self.verbose == 0:
            return
        now = time.perf_counter()
        if not finalize and (not self.dynamic or now - self._last < self.interval):
            return
        self._last = now
        elapsed = now - self.start
        logs = logs or {}
        if finalize:
            per_step = elapsed / max(current, 1)
            line = f"{current}/{self.target} - {_fmt_time(elapsed)} {_fmt_time(per_step)}/step"
            if self.verbose == 1 and self.target:
                line = f"{current}/{self.target} {self._bar(current)} - {_fmt_time(elapsed)} {_fmt_time(per_step)}/step"
            if logs:
                line += " - " + format_logs(logs)
            self.stream.write(("\r" if self.dynamic else "") + line + "\n")
        else:
            eta = elapsed / max(current, 1) * (self.target - current) if self.target else 0
            line = f"{current}/{self.target} {self._bar(current)} - ETA: {_fmt_time(eta)}"
            if logs:
                line += " - " + format_logs(logs)
            self.stream.write("\r" + line)
        self.stream.flush()

    def _bar(self, current):
        done = int(self.width * current / self.target) if self.target else self.width
        if done >= self.width:
            return "[" + "=" * self.width + "]"
        return "[" + "=" * done + ">" + "." * (self.width - done - 1) + "]"
