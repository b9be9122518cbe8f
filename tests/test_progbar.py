"""The progress output: the bar on a (fake) terminal, the one-line-per-epoch forms, and what fit
prints at verbose=0/1/2."""
import io
import re
import sys

import numpy as np

import cydnn
from cydnn import layers
from cydnn.utils.progbar import Progbar, _fmt_time, format_logs

T = r"\d+(?:us|ms|s)"  # a duration as _fmt_time writes it (below a minute)


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_bar_redraws_in_place_on_a_terminal():
    out = FakeTTY()
    bar = Progbar(5, stream=out, interval=0)
    for step in range(1, 5):
        bar.update(step, {"loss": 1.0 / step})
    bar.update(5, {"loss": 0.25}, finalize=True)
    text = out.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    frames = text[1:].split("\r")
    assert len(frames) == 5
    assert re.fullmatch(r"1/5 \[={6}>\.{23}\] - ETA: " + T + r" - loss: 1\.0000 *", frames[0])
    assert re.fullmatch(r"4/5 \[={24}>\.{5}\] - ETA: " + T + r" - loss: 0\.2500 *", frames[3])
    assert re.fullmatch(r"5/5 \[={30}\] - " + T + " " + T + r"/step - loss: 0\.2500 *\n", frames[4])


def test_a_shorter_line_blanks_the_rest_of_the_previous_one():
    out = FakeTTY()
    bar = Progbar(10, stream=out, interval=0)
    bar.update(1, {"loss": 1.0, "a_long_metric_name": 0.5})
    bar.update(2, {"loss": 1.0})
    first, second = out.getvalue()[1:].split("\r")
    assert len(second) >= len(first) and second.endswith(" ")


def test_counter_is_right_aligned_and_redraws_are_throttled():
    out = FakeTTY()
    bar = Progbar(100, stream=out, interval=3600)
    bar.update(7)   # the first update is drawn
    bar.update(8)   # within the interval: skipped
    bar.update(100, finalize=True)  # the final line is always written
    frames = out.getvalue()[1:].split("\r")
    assert len(frames) == 2 and frames[0].startswith("  7/100 [==>")


def test_not_a_terminal_one_line_per_epoch_and_verbose_0_silent():
    out = io.StringIO()
    bar = Progbar(3, stream=out, interval=0)
    bar.update(1, {"loss": 0.5})
    bar.update(2, {"loss": 0.5})
    assert out.getvalue() == ""
    bar.update(3, {"loss": 0.5}, finalize=True)
    assert re.fullmatch(r"3/3 \[={30}\] - " + T + " " + T + r"/step - loss: 0\.5000\n", out.getvalue())
    quiet = FakeTTY()
    bar = Progbar(3, verbose=0, stream=quiet, interval=0)
    bar.update(1, {"loss": 0.5})
    bar.update(3, {"loss": 0.5}, finalize=True)
    assert quiet.getvalue() == ""


def test_value_and_time_formats():
    assert format_logs({"loss": 0.123456, "lr": 1e-5, "acc": np.float32(0.5), "n": 3, "z": 0.0}) == \
        "loss: 0.1235 - lr: 1.0000e-05 - acc: 0.5000 - n: 3 - z: 0.0000"
    assert [_fmt_time(t) for t in (0.0004, 0.25, 5.2, 75, 3725)] == ["400us", "250ms", "5s", "1:15", "1:02:05"]


# ============================================================== what fit prints
def _fit(verbose, validation=True):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    y = (x[:, 0] > 0).astype(np.int64)
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                              layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    kw = {"validation_data": (x[:8], y[:8])} if validation else {}
    return model.fit(x, y, epochs=2, batch_size=10, verbose=verbose, **kw)


LOGS = r"loss: \d\.\d{4} - accuracy: \d\.\d{4} - val_loss: \d\.\d{4} - val_accuracy: \d\.\d{4}"


def test_fit_verbose_1_on_a_terminal(monkeypatch):
    out = FakeTTY()
    monkeypatch.setattr(sys, "stdout", out)
    _fit(verbose=1)
    monkeypatch.undo()
    text = out.getvalue()
    epochs = text.split("Epoch ")[1:]
    assert len(epochs) == 2
    for k, chunk in enumerate(epochs, start=1):
        head, rest = chunk.split("\n", 1)
        assert head == f"{k}/2"
        frames = rest.split("\r")[1:]
        # the first batch is drawn with its running loss and an ETA; the last frame closes the epoch
        assert re.fullmatch(r"1/4 \[={7}>\.{22}\] - ETA: " + T + r" - loss: \d\.\d{4} - accuracy: \d\.\d{4} *",
                            frames[0])
        assert re.fullmatch(r"4/4 \[={30}\] - " + T + " " + T + "/step - " + LOGS + r" *\n", frames[-1])


def test_fit_verbose_1_not_a_terminal(capsys):
    _fit(verbose=1)
    lines = capsys.readouterr().out.split("\n")
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and lines[4:] == [""]
    for line in (lines[1], lines[3]):
        assert "\r" not in line
        assert re.fullmatch(r"4/4 \[={30}\] - " + T + " " + T + "/step - " + LOGS, line)


def test_fit_verbose_2_one_line_per_epoch(capsys):
    _fit(verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for k, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"Epoch {k}/2 - \d+\.\d\ds - " + LOGS, line)


def test_fit_verbose_0_prints_nothing(capsys):
    _fit(verbose=0)
    assert capsys.readouterr().out == ""
