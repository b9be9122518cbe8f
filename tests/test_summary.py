"""model.summary(): layer names and types, output shapes, parameter counts and the trainable /
non-trainable totals, for Sequential and functional models (the latter with a Connected-to
column naming each input as layer[call index][tensor index])."""
import re

import pytest

import cydnn
from cydnn import layers


def _summary_lines(model):
    lines = []
    model.summary(print_fn=lines.append)
    return lines


def _row(lines, name):
    (line,) = [ln for ln in lines if ln.startswith(name + " (")]
    return line


def test_sequential_summary_rows_and_totals():
    model = cydnn.Sequential([layers.InputLayer(shape=(6,)), layers.Dense(5, name="hidden"),
                              layers.BatchNormalization(name="norm"), layers.Dense(2, name="head")], name="stack")
    lines = _summary_lines(model)
    assert lines[0] == 'Model: "stack"'
    assert re.fullmatch(r"Layer \(type\) +Output Shape +Param #", lines[2])
    assert set(lines[1]) == {"="} and len(lines[1]) == len(lines[2])
    assert re.fullmatch(r"hidden \(Dense\) +\(None, 5\) +35", _row(lines, "hidden"))
    assert re.fullmatch(r"norm \(BatchNormalization\) +\(None, 5\) +20", _row(lines, "norm"))
    assert re.fullmatch(r"head \(Dense\) +\(None, 2\) +12", _row(lines, "head"))
    # BatchNormalization's moving mean and variance (5 + 5) are not trainable
    assert lines[-3:] == ["Total params: 67", "Trainable params: 57", "Non-trainable params: 10"]
    assert "Connected to" not in "\n".join(lines)


def test_sequential_summary_counts_frozen_layers_as_non_trainable():
    model = cydnn.Sequential([layers.InputLayer(shape=(300,)), layers.Dense(10, name="big", trainable=False),
                              layers.Dense(1, name="small")])
    lines = _summary_lines(model)
    assert re.fullmatch(r"big \(Dense\) +\(None, 10\) +3010", _row(lines, "big"))
    assert lines[-3:] == ["Total params: 3,021", "Trainable params: 11", "Non-trainable params: 3,010"]


def test_functional_summary_has_connected_to_column():
    x = cydnn.Input(shape=(4,), name="x")
    shared = layers.Dense(4, activation="tanh", name="shared")
    s1 = shared(x)
    s2 = shared(s1)
    bn = layers.BatchNormalization(name="bn")(s2)
    out = layers.Dense(2, name="frozen", trainable=False)(layers.Concatenate(name="cat")([bn, s1, x]))
    model = cydnn.Model(x, [out, s2], name="demo")
    lines = _summary_lines(model)
    assert lines[0] == 'Model: "demo"'
    assert re.fullmatch(r"Layer \(type\) +Output Shape +Param # +Connected to", lines[2])
    assert re.fullmatch(r"x \(InputLayer\) +\(None, 4\) +0 +-", _row(lines, "x"))
    assert re.fullmatch(r"bn \(BatchNormalization\) +\(None, 4\) +16 +shared\[1\]\[0\]", _row(lines, "bn"))
    assert re.fullmatch(r"frozen \(Dense\) +\(None, 2\) +26 +cat\[0\]\[0\]", _row(lines, "frozen"))
    # a layer with several inputs (or calls) lists one per line, aligned in the last column
    i = lines.index(_row(lines, "shared"))
    assert re.fullmatch(r"shared \(Dense\) +\(None, 4\) +20 +x\[0\]\[0\]", lines[i])
    assert lines[i + 1].strip() == "shared[0][0]"
    assert lines[i + 1].index("shared[0][0]") == lines[i].index("x[0][0]")
    j = lines.index(_row(lines, "cat"))
    assert re.fullmatch(r"cat \(Concatenate\) +\(None, 12\) +0 +bn\[0\]\[0\]", lines[j])
    assert [lines[j + 1].strip(), lines[j + 2].strip()] == ["shared[0][0]", "x[0][0]"]
    # trainable: shared 20 + bn gamma/beta 8; not: bn moving stats 8 + frozen Dense 26
    assert lines[-3:] == ["Total params: 62", "Trainable params: 28", "Non-trainable params: 34"]


def test_functional_summary_shared_layer_with_different_shapes_says_multiple():
    a, b = cydnn.Input(shape=(3, 4)), cydnn.Input(shape=(5, 4))
    dense = layers.Dense(2, name="per_step")
    model = cydnn.Model([a, b], layers.Concatenate(axis=1, name="join")([dense(a), dense(b)]))
    lines = _summary_lines(model)
    assert re.fullmatch(r"per_step \(Dense\) +multiple +10 +input_layer\S*\[0\]\[0\]", _row(lines, "per_step"))
    assert re.fullmatch(r"join \(Concatenate\) +\(None, 8, 2\) +0 +per_step\[0\]\[0\]", _row(lines, "join"))
    assert lines[lines.index(_row(lines, "join")) + 1].strip() == "per_step[1][0]"


def test_summary_of_unbuilt_sequential_says_how_to_build_it():
    with pytest.raises(ValueError, match=r"Sequential 'unbuilt': the model is not built yet"):
        cydnn.Sequential([layers.Dense(2)], name="unbuilt").summary()
