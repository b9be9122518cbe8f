"""Saving and loading: round trips for every layer type, exact resumption of training, damaged
and foreign files, atomic writes, format versions, custom objects, weights-only files."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import cydnn
from cydnn import layers, optimizers, saving
from cydnn.layers.base import Layer
from cydnn.saving import container

# ---------------------------------------------------------------------------------------------
# one small model per layer type: (make the layer, input shape without batch, input kind)
RECIPES = {
    "Activation": (lambda: layers.Activation("tanh"), (6,), "float"),
    "AveragePooling1D": (lambda: layers.AveragePooling1D(2), (6, 3), "float"),
    "AveragePooling2D": (lambda: layers.AveragePooling2D(2), (4, 4, 2), "float"),
    "BatchNormalization": (lambda: layers.BatchNormalization(momentum=0.5), (6,), "float"),
    "Conv1D": (lambda: layers.Conv1D(3, 2, padding="same", activation="relu"), (6, 2), "float"),
    "Conv2D": (lambda: layers.Conv2D(3, 3, strides=(1, 2), padding="same", activation="relu"), (5, 5, 2), "float"),
    "DepthwiseConv2D": (lambda: layers.DepthwiseConv2D(2, depth_multiplier=2), (4, 4, 2), "float"),
    "Dense": (lambda: layers.Dense(4, activation="sigmoid", kernel_regularizer="l2"), (6,), "float"),
    "Dropout": (lambda: layers.Dropout(0.3), (6,), "float"),
    "ELU": (lambda: layers.ELU(alpha=0.7), (6,), "float"),
    "Embedding": (lambda: layers.Embedding(7, 3), (5,), "int"),
    "Flatten": (lambda: layers.Flatten(), (2, 3), "float"),
    "GlobalAveragePooling1D": (lambda: layers.GlobalAveragePooling1D(), (5, 3), "float"),
    "GlobalAveragePooling2D": (lambda: layers.GlobalAveragePooling2D(), (3, 3, 2), "float"),
    "GlobalMaxPooling1D": (lambda: layers.GlobalMaxPooling1D(), (5, 3), "float"),
    "GlobalMaxPooling2D": (lambda: layers.GlobalMaxPooling2D(), (3, 3, 2), "float"),
    "LayerNormalization": (lambda: layers.LayerNormalization(), (6,), "float"),
    "LeakyReLU": (lambda: layers.LeakyReLU(negative_slope=0.1), (6,), "float"),
    "Masking": (lambda: layers.Masking(0.0), (4, 3), "float"),
    "MaxPooling1D": (lambda: layers.MaxPooling1D(2), (6, 3), "float"),
    "MaxPooling2D": (lambda: layers.MaxPooling2D(2), (4, 4, 2), "float"),
    "Maxout": (lambda: layers.Maxout(3, pieces=2), (6,), "float"),
    "PReLU": (lambda: layers.PReLU(alpha_initializer="ones"), (6,), "float"),
    "ReLU": (lambda: layers.ReLU(), (6,), "float"),
    "Reshape": (lambda: layers.Reshape((3, 2)), (6,), "float"),
    "Softmax": (lambda: layers.Softmax(), (6,), "float"),
    "TimeDistributed": (lambda: layers.TimeDistributed(layers.Dense(3, activation="relu")), (4, 5), "float"),
    "ZeroPadding1D": (lambda: layers.ZeroPadding1D(1), (4, 2), "float"),
    "ZeroPadding2D": (lambda: layers.ZeroPadding2D(1), (3, 3, 2), "float"),
    # layers colleagues are writing: used as soon as they exist in cydnn.layers
    "SimpleRNN": (lambda: layers.SimpleRNN(3, return_sequences=True), (4, 2), "float"),
    "LSTM": (lambda: layers.LSTM(3), (4, 2), "float"),
    "GRU": (lambda: layers.GRU(3, return_sequences=True), (4, 2), "float"),
    "Bidirectional": (lambda: layers.Bidirectional(layers.LSTM(2, return_sequences=True)), (4, 2), "float"),
    "Conv2DTranspose": (lambda: layers.Conv2DTranspose(2, 2, strides=2), (3, 3, 2), "float"),
    "Conv1DTranspose": (lambda: layers.Conv1DTranspose(2, 2, strides=2), (3, 2), "float"),
    "SeparableConv2D": (lambda: layers.SeparableConv2D(3, 2), (4, 4, 2), "float"),
    "UpSampling1D": (lambda: layers.UpSampling1D(2), (3, 2), "float"),
    "UpSampling2D": (lambda: layers.UpSampling2D(2), (3, 3, 2), "float"),
    "RepeatVector": (lambda: layers.RepeatVector(3), (4,), "float"),
    "Permute": (lambda: layers.Permute((2, 1)), (3, 4), "float"),
    "GaussianNoise": (lambda: layers.GaussianNoise(0.1), (6,), "float"),
    "SpatialDropout1D": (lambda: layers.SpatialDropout1D(0.2), (4, 3), "float"),
    "AttentionPooling": (lambda: layers.AttentionPooling(units=3), (4, 3), "float"),
    "MultiHeadAttention": None,  # several inputs: round-tripped through the functional Model
    "Attention": None, "AdditiveAttention": None,
    "Add": None, "Subtract": None, "Multiply": None, "Average": None, "Maximum": None, "Minimum": None,
    "Concatenate": None, "Dot": None,
}


def layer_types():
    """Every concrete layer class exported by cydnn.layers (aliases once)."""
    seen, names = set(), []
    for name in sorted(dir(layers)):
        cls = getattr(layers, name)
        if not (isinstance(cls, type) and issubclass(cls, Layer)) or cls in (Layer, layers.InputLayer):
            continue
        if cls in seen:
            continue
        seen.add(cls)
        names.append(cls.__name__)
    return names


def make_inputs(shape, kind, n=8, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "int":
        return rng.integers(1, 7, size=(n,) + shape).astype(np.float32)
    return rng.standard_normal((n,) + shape).astype(np.float32)


def snapshot_rng():
    return cydnn.backend.rng().bit_generator.state


def restore_rng(state):
    cydnn.backend.rng().bit_generator.state = state


def assert_same_optimizer_state(a, b):
    sa, sb = a.optimizer.get_state(), b.optimizer.get_state()
    assert sa["iterations"] == sb["iterations"]
    assert sorted(sa["slots"]) == sorted(sb["slots"])
    for k in sa["slots"]:
        np.testing.assert_array_equal(sa["slots"][k], sb["slots"][k])


def assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_every_layer_type_has_a_recipe():
    missing = [n for n in layer_types() if n not in RECIPES]
    assert not missing, f"add a save/load recipe to tests/test_saving.py for {missing}"


@pytest.mark.parametrize("name", [n for n in layer_types() if RECIPES.get(n) is not None])
def test_round_trip_every_layer_type(name, tmp_path):
    make, shape, kind = RECIPES[name]
    cydnn.set_random_seed(1)
    model = cydnn.Sequential([layers.InputLayer(shape=shape), make(), layers.Flatten(), layers.Dense(3)])
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    x = make_inputs(shape, kind)
    y = np.random.default_rng(2).standard_normal((len(x), 3)).astype(np.float32)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # two steps: moments and statistics move
    path = tmp_path / f"{name}.cydnn"
    model.save(path)
    loaded = cydnn.load_model(path)

    assert type(loaded) is type(model) and [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert_same_weights(model, loaded)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    assert_same_optimizer_state(model, loaded)
    assert loaded.compiled and type(loaded.optimizer) is optimizers.Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    # one more step on each (same random draws for layers that use them): still identical
    state = snapshot_rng()
    model.train_on_batch(x, y)
    restore_rng(state)
    loaded.train_on_batch(x, y)
    assert_same_weights(model, loaded)
    assert_same_optimizer_state(model, loaded)


@pytest.mark.parametrize("opt", [lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                                 lambda: optimizers.Adam(0.01, amsgrad=True),
                                 lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True),
                                 lambda: optimizers.Adagrad(0.05)])
def test_optimizer_state_round_trip_float64(opt, tmp_path):
    cydnn.set_floatx("float64")
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.InputLayer(shape=(5,)), layers.Dense(4, activation="tanh"),
                              layers.Dense(2, activation="softmax")])
    model.compile(optimizer=opt(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).standard_normal((16, 5))
    y = np.arange(16) % 2
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    model.save(tmp_path / "m.cydnn")
    loaded = cydnn.load_model(tmp_path / "m.cydnn")
    assert loaded.get_weights()[0].dtype == np.float64
    assert_same_optimizer_state(model, loaded)
    assert loaded._metric_names() == ["accuracy"]
    assert loaded.evaluate(x, y) == model.evaluate(x, y)


# ---------------------------------------------------------------------------------------------
# resumption
def digits_data():
    (x, y), _ = cydnn.datasets.load_digits()
    return x[:400].reshape(400, -1).astype(np.float32) / 16.0, y[:400]


def digits_model(optimizer):
    return_ = cydnn.Sequential([layers.InputLayer(shape=(64,)), layers.Dense(32, activation="relu"),
                                layers.BatchNormalization(), layers.Dropout(0.2),
                                layers.Dense(10, activation="softmax")])
    return_.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return return_


@pytest.mark.parametrize("make_opt", [lambda: optimizers.SGD(0.05, momentum=0.9), lambda: optimizers.Adam(0.003)])
def test_resume_two_plus_two_epochs_equals_four(make_opt, tmp_path):
    """Same seed; shuffling and dropout draw from cydnn's generator, which load_model leaves
    where it was, so the resumed run sees exactly the batches of the uninterrupted one."""
    x, y = digits_data()
    cydnn.set_random_seed(7)
    straight = digits_model(make_opt())
    straight.fit(x, y, batch_size=32, epochs=4, verbose=0)

    cydnn.set_random_seed(7)
    first = digits_model(make_opt())
    first.fit(x, y, batch_size=32, epochs=2, verbose=0)
    first.save(tmp_path / "half.cydnn")
    resumed = cydnn.load_model(tmp_path / "half.cydnn")
    resumed.fit(x, y, batch_size=32, epochs=2, verbose=0)

    assert resumed.optimizer.iterations == straight.optimizer.iterations == 4 * 13
    assert_same_weights(straight, resumed)  # bit for bit, BatchNormalization statistics included
    assert_same_optimizer_state(straight, resumed)
    np.testing.assert_array_equal(straight.predict(x), resumed.predict(x))


def test_resume_with_restore_rng_after_the_generator_moved(tmp_path):
    x, y = digits_data()
    cydnn.set_random_seed(3)
    straight = digits_model(optimizers.SGD(0.05, momentum=0.9))
    straight.fit(x, y, batch_size=50, epochs=3, verbose=0)

    cydnn.set_random_seed(3)
    first = digits_model(optimizers.SGD(0.05, momentum=0.9))
    first.fit(x, y, batch_size=50, epochs=1, verbose=0)
    first.save(tmp_path / "m.cydnn")
    cydnn.set_random_seed(12345)  # e.g. another process: the generator is elsewhere
    cydnn.backend.rng().random(10)
    resumed = cydnn.load_model(tmp_path / "m.cydnn", restore_rng=True)
    resumed.fit(x, y, batch_size=50, epochs=2, verbose=0)
    assert_same_weights(straight, resumed)


def test_resume_in_another_process(tmp_path):
    x, y = digits_data()
    cydnn.set_random_seed(5)
    straight = digits_model(optimizers.Adam(0.003))
    straight.fit(x, y, batch_size=64, epochs=2, verbose=0)

    cydnn.set_random_seed(5)
    first = digits_model(optimizers.Adam(0.003))
    first.fit(x, y, batch_size=64, epochs=1, verbose=0)
    first.save(tmp_path / "m.cydnn")
    script = f"""
import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})
import numpy as np, cydnn
from test_saving import digits_data
x, y = digits_data()
m = cydnn.load_model({str(tmp_path / 'm.cydnn')!r}, restore_rng=True)
m.fit(x, y, batch_size=64, epochs=1, verbose=0)
m.save_weights({str(tmp_path / 'out.weights.npz')!r})
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    check = digits_model(optimizers.Adam(0.003))
    check.build((None, 64))
    check.load_weights(tmp_path / "out.weights.npz", by_name=False)
    assert_same_weights(straight, check)  # results do not depend on the process or thread count


def test_load_model_leaves_the_random_generator_alone(tmp_path):
    cydnn.set_random_seed(0)
    model = digits_model("adam")
    model.save(tmp_path / "m.cydnn")
    before = snapshot_rng()
    cydnn.load_model(tmp_path / "m.cydnn")
    assert snapshot_rng() == before


def test_frozen_layer_and_its_optimizer_state_round_trip(tmp_path):
    x, y = digits_data()
    cydnn.set_random_seed(0)
    model = digits_model(optimizers.Adam(0.003))
    model.fit(x, y, epochs=1, verbose=0)
    model.layers[0].trainable = False
    model.fit(x, y, epochs=1, verbose=0)  # re-packed without the frozen kernel
    model.save(tmp_path / "m.cydnn")
    loaded = cydnn.load_model(tmp_path / "m.cydnn")
    assert loaded.layers[0].trainable is False
    assert_same_optimizer_state(model, loaded)
    state = snapshot_rng()
    model.fit(x, y, epochs=1, verbose=0)
    restore_rng(state)
    loaded.fit(x, y, epochs=1, verbose=0)
    assert_same_weights(model, loaded)


def test_uncompiled_unbuilt_and_compile_false(tmp_path):
    lazy = cydnn.Sequential([layers.Dense(4, activation="relu"), layers.Dense(2)])
    lazy.save(tmp_path / "lazy.cydnn")
    back = cydnn.load_model(tmp_path / "lazy.cydnn")
    assert not back.built and not back.compiled and [type(l) for l in back.layers] == [layers.Dense] * 2

    built = cydnn.Sequential([layers.Dense(4, activation="relu"), layers.Dense(2)])
    built.build((None, 3))  # built from a shape, no InputLayer: the shape is saved
    built.compile("sgd", "mse")
    built.save(tmp_path / "built.cydnn")
    back = cydnn.load_model(tmp_path / "built.cydnn", compile=False)
    assert back.built and not back.compiled
    assert back.input_shape == (None, 3)
    assert_same_weights(built, back)


def test_compile_settings_round_trip(tmp_path):
    model = cydnn.Sequential([layers.InputLayer(shape=(4,)), layers.Dense(3, activation="sigmoid")])
    model.compile(optimizer=optimizers.SGD(0.2, momentum=0.5, clipnorm=1.0),
                  loss=cydnn.losses.BinaryCrossentropy(), metrics=["accuracy", "mse"], loss_weights=[0.5])
    model.save(tmp_path / "m.cydnn")
    loaded = cydnn.load_model(tmp_path / "m.cydnn")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert isinstance(loaded.loss, cydnn.losses.BinaryCrossentropy)
    assert loaded._metric_names() == ["accuracy", "mse"]
    assert loaded._lw == [0.5]


def test_file_is_a_plain_zip_with_the_documented_entries(tmp_path):
    model = cydnn.Sequential([layers.InputLayer(shape=(4,)), layers.Dense(3, name="hidden")])
    model.compile("adam", "mse")
    model.fit(np.ones((4, 4)), np.ones((4, 3)), verbose=0)
    model.save(tmp_path / "m.cydnn")
    with zipfile.ZipFile(tmp_path / "m.cydnn") as zf:
        names = zf.namelist()
        config = json.loads(zf.read("config.json"))
        assert zf.testzip() is None
        assert zf.comment.startswith(b"cydnn-sha256:")
    assert names[0] == "config.json"
    assert "weights/0000_hidden/0_kernel.npy" in names and "optimizer/00_m.npy" in names
    assert config["format"] == "cydnn" and config["format_version"] == saving.FORMAT_VERSION
    assert config["model"]["class_name"] == "Sequential"
    assert config["weights"][0]["layer"] == "hidden"
    assert config["optimizer_state"]["iterations"] == 1
    assert config["compile"]["optimizer"]["class_name"] == "Adam"


# ---------------------------------------------------------------------------------------------
# damaged, foreign and too-new files
@pytest.fixture(scope="module")
def saved_bytes(tmp_path_factory):
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.InputLayer(shape=(6,)), layers.Dense(5, activation="relu"),
                              layers.BatchNormalization(), layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.random.default_rng(0).standard_normal((10, 6)), np.arange(10) % 2, verbose=0)
    path = tmp_path_factory.mktemp("good") / "good.cydnn"
    model.save(path)
    return path.read_bytes()


def expect_model_file_error(path, *words, load=cydnn.load_model):
    with pytest.raises(saving.ModelFileError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message
    for w in words:
        assert w in message
    assert info.value.path == str(path)
    return info.value


@pytest.mark.parametrize("case", range(20))
def test_truncated_file_raises_a_clear_error(case, saved_bytes, tmp_path):
    rng = np.random.default_rng(100 + case)
    cut = int(rng.integers(0, len(saved_bytes)))
    path = tmp_path / "cut.cydnn"
    path.write_bytes(saved_bytes[:cut])
    err = expect_model_file_error(path)
    assert isinstance(err, saving.CorruptFileError)
    assert any(w in str(err) for w in ("truncated", "empty"))


@pytest.mark.parametrize("case", range(20))
def test_flipped_bytes_raise_a_clear_error(case, saved_bytes, tmp_path):
    rng = np.random.default_rng(200 + case)
    data = bytearray(saved_bytes)
    n_flips = 1 if case < 14 else int(rng.integers(2, 6))
    for pos in rng.integers(0, len(data), size=n_flips):
        data[pos] ^= int(rng.integers(1, 256))
    path = tmp_path / "flipped.cydnn"
    path.write_bytes(bytes(data))
    err = expect_model_file_error(path)
    assert isinstance(err, saving.CorruptFileError)


def test_a_flip_in_a_zip_timestamp_is_caught(saved_bytes, tmp_path):
    """Zip CRCs cover the data only; cydnn's checksum covers every byte."""
    data = bytearray(saved_bytes)
    data[10] ^= 0x01  # local header of config.json: last-modified time
    path = tmp_path / "t.cydnn"
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None  # zip itself sees nothing wrong
    expect_model_file_error(path, "checksum")


def test_foreign_files_are_refused(tmp_path):
    np.savez(tmp_path / "arrays.npz", a=np.ones(3))
    expect_model_file_error(tmp_path / "arrays.npz", "not a cydnn file", ".npz")
    (tmp_path / "notes.txt").write_text("hello, not a model\n")
    expect_model_file_error(tmp_path / "notes.txt", "not a cydnn file")
    (tmp_path / "empty.cydnn").write_bytes(b"")
    expect_model_file_error(tmp_path / "empty.cydnn", "empty")
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).bytes(500))
    expect_model_file_error(tmp_path / "noise.bin", "not a cydnn file")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("config.json", json.dumps({"format": "someone-else"}))
    expect_model_file_error(tmp_path / "other.zip")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        cydnn.load_model(tmp_path / "nope.cydnn")


def rewrite(src, dst, edit):
    archive = container._Archive(src, kind=None)
    config = archive.config
    edit(config)
    arrays = {n: archive.array(n, dtype_kinds="fiu") for n in archive._zip.namelist() if n.endswith(".npy")}
    container._write_archive(dst, config, arrays)


def test_newer_format_version_is_refused(saved_bytes, tmp_path):
    (tmp_path / "good.cydnn").write_bytes(saved_bytes)
    rewrite(tmp_path / "good.cydnn", tmp_path / "future.cydnn",
            lambda c: c.update(format_version=saving.FORMAT_VERSION + 1, cydnn_version="9.0"))
    err = expect_model_file_error(tmp_path / "future.cydnn", "newer", "upgrade cydnn")
    assert isinstance(err, saving.NewerFormatError)


def test_inconsistent_manifest_is_refused(saved_bytes, tmp_path):
    (tmp_path / "good.cydnn").write_bytes(saved_bytes)

    def bad_shape(c):
        c["weights"][0]["weights"][0]["shape"] = [99, 5]
    rewrite(tmp_path / "good.cydnn", tmp_path / "bad.cydnn", bad_shape)
    expect_model_file_error(tmp_path / "bad.cydnn", "weights/0000_")

    def no_model(c):
        del c["model"]
    rewrite(tmp_path / "good.cydnn", tmp_path / "bad2.cydnn", no_model)
    expect_model_file_error(tmp_path / "bad2.cydnn", "'model'")


def test_weights_file_is_not_a_model(tmp_path):
    model = cydnn.Sequential([layers.InputLayer(shape=(3,)), layers.Dense(2)])
    model.save_weights(tmp_path / "w.weights.npz")
    expect_model_file_error(tmp_path / "w.weights.npz", "'weights'", "load_model")


# ---------------------------------------------------------------------------------------------
# atomic writes
def only_file(directory):
    return sorted(os.listdir(directory))


def test_failed_save_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    model = cydnn.Sequential([layers.InputLayer(shape=(4,)), layers.Dense(8), layers.Dense(3)])
    model.compile("adam", "mse")
    path = tmp_path / "m.cydnn"
    model.save(path)
    good = path.read_bytes()
    model.layers[0].kernel[...] = 42.0

    calls = []
    real = np.lib.format.write_array

    def failing(*args, **kwargs):  # the disk "fills up" after two arrays
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="No space"):
        model.save(path)
    assert len(calls) == 3
    assert path.read_bytes() == good
    assert only_file(tmp_path) == ["m.cydnn"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(np.lib.format, "write_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == good
    assert only_file(tmp_path) == ["m.cydnn"]
    np.testing.assert_array_equal(cydnn.load_model(path).layers[0].kernel != 42.0, True)


def test_unserializable_config_fails_before_touching_the_file(tmp_path):
    class Opaque(Layer):
        def __init__(self, fn=None, **kwargs):
            super().__init__(**kwargs)
            self.fn = fn

        def forward(self, x, training=False, ctx=None):
            return x

        def backward(self, dy, ctx=None):
            return dy

        def get_config(self):
            return {**super().get_config(), "fn": self.fn}

    path = tmp_path / "m.cydnn"
    cydnn.Sequential([layers.InputLayer(shape=(2,)), layers.Dense(2)]).save(path)
    good = path.read_bytes()
    model = cydnn.Sequential([layers.InputLayer(shape=(2,)), Opaque(fn=lambda v: v)])
    with pytest.raises(TypeError, match="JSON"):
        model.save(path)
    assert path.read_bytes() == good
    assert only_file(tmp_path) == ["m.cydnn"]


# ---------------------------------------------------------------------------------------------
# custom objects
@cydnn.register_serializable(package="tests")
class ScaleShift(Layer):
    """y = x * scale + shift (per feature): a custom layer with weights, in NumPy."""

    def __init__(self, init=1.0, **kwargs):
        super().__init__(**kwargs)
        self.init = float(init)

    def build(self, input_shape):
        self.add_weight("scale", (input_shape[-1],), cydnn.initializers.Constant(self.init))
        self.add_weight("shift", (input_shape[-1],), "zeros")
        self.add_weight("batches_seen", (), "zeros", trainable=False)  # a 0-d, non-trainable weight

    def forward(self, x, training=False, ctx=None):
        ctx = self.context(ctx)
        scale, shift, seen = (p.value for p in self._params)
        if training:
            seen += 1
        ctx.x = x
        return x * scale + shift

    def backward(self, dy, ctx=None):
        ctx = self.context(ctx)
        g0 = (dy * ctx.x).sum(axis=0)
        g1 = dy.sum(axis=0)
        scale, shift = self._params[0], self._params[1]
        if ctx.accumulate:
            scale.grad += g0
            shift.grad += g1
        else:
            scale.grad[...] = g0
            shift.grad[...] = g1
        return dy * scale.value

    def get_config(self):
        return {**super().get_config(), "init": self.init}


@cydnn.register_serializable(package="tests")
class Cube(cydnn.activations.Activation):
    """A custom activation, f(z) = z^3 / 3, for the Activation layer."""

    def __init__(self, scale=1.0 / 3.0):
        self.name, self.code, self.alpha, self.scale = "cube", -1, 0.0, float(scale)

    def forward(self, z, y):
        np.multiply(z ** 3, self.scale, out=y)

    def backward(self, z, y, dy, dz):
        np.multiply(dy, 3 * self.scale * z ** 2, out=dz)

    def get_config(self):
        return {"scale": self.scale}


def test_custom_layer_and_activation_round_trip(tmp_path):
    cydnn.set_random_seed(0)
    model = cydnn.Sequential([layers.InputLayer(shape=(4,)), ScaleShift(init=2.0), layers.Activation(Cube(0.5)),
                              layers.Dense(2)])
    model.compile(optimizers.SGD(0.01, momentum=0.9), "mse")
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    model.fit(x, np.ones((8, 2)), batch_size=4, verbose=0)
    model.save(tmp_path / "c.cydnn")
    loaded = cydnn.load_model(tmp_path / "c.cydnn")
    assert isinstance(loaded.layers[0], ScaleShift) and loaded.layers[0].init == 2.0
    assert loaded.layers[0].get_weights()[2].shape == () and loaded.layers[0].get_weights()[2] == 2
    assert isinstance(loaded.layers[1].activation, Cube) and loaded.layers[1].activation.scale == 0.5
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert_same_optimizer_state(model, loaded)


def test_unknown_custom_class_asks_to_register_it(tmp_path):
    class Unregistered(Layer):
        def forward(self, x, training=False, ctx=None):
            return x

        def backward(self, dy, ctx=None):
            return dy

    model = cydnn.Sequential([layers.InputLayer(shape=(3,)), Unregistered(), layers.Dense(2)])
    model.save(tmp_path / "u.cydnn")
    err = expect_model_file_error(tmp_path / "u.cydnn", "Unregistered", "register_serializable", "custom_objects")
    assert isinstance(err, saving.UnknownObjectError)
    loaded = cydnn.load_model(tmp_path / "u.cydnn", custom_objects={"Unregistered": Unregistered})
    assert isinstance(loaded.layers[0], Unregistered)
    assert "Unregistered" not in cydnn.registry.custom_objects()  # the scope is undone

    wrapped = cydnn.Sequential([layers.InputLayer(shape=(2, 3)), layers.TimeDistributed(Unregistered())])
    wrapped.save(tmp_path / "w.cydnn")  # the unknown class is nested in a wrapper's config
    err = expect_model_file_error(tmp_path / "w.cydnn", "Unregistered", "register_serializable", "custom_objects")
    assert isinstance(err, saving.UnknownObjectError)
    loaded = cydnn.load_model(tmp_path / "w.cydnn", custom_objects={"Unregistered": Unregistered})
    assert isinstance(loaded.layers[0].layer, Unregistered)


# ---------------------------------------------------------------------------------------------
# weights-only files
def named_model(head_units=3, names=("base", "mid", "head")):
    return cydnn.Sequential([layers.InputLayer(shape=(5,)), layers.Dense(4, activation="relu", name=names[0]),
                             layers.BatchNormalization(name=names[1]), layers.Dense(head_units, name=names[2])])


def test_save_weights_load_weights_by_name_and_by_position(tmp_path):
    src = named_model()
    for w in src.weights:
        w[...] = np.random.default_rng(w.size).standard_normal(w.shape)
    src.save_weights(tmp_path / "w.weights.npz")
    dst = named_model()
    dst.load_weights(tmp_path / "w.weights.npz")
    assert_same_weights(src, dst)

    auto = cydnn.Sequential([layers.InputLayer(shape=(5,)), layers.Dense(4, activation="relu"),
                             layers.BatchNormalization(), layers.Dense(3)])
    with pytest.raises(saving.ModelFileError, match="by_name=False"):
        auto.load_weights(tmp_path / "w.weights.npz")
    auto.load_weights(tmp_path / "w.weights.npz", by_name=False)
    assert_same_weights(src, auto)

    lazy = cydnn.Sequential([layers.Dense(4, activation="relu", name="base"), layers.BatchNormalization(name="mid"),
                             layers.Dense(3, name="head")])
    lazy.load_weights(tmp_path / "w.weights.npz")  # built from the shape recorded in the file
    assert lazy.input_shape == (None, 5)
    assert_same_weights(src, lazy)
    # the arrays are ordinary .npy entries NumPy can read
    with np.load(tmp_path / "w.weights.npz") as npz:
        np.testing.assert_array_equal(npz["weights/0000_base/0_kernel"], src.layers[0].kernel)


def test_load_weights_mismatch_raises_before_assigning_or_skips_with_warning(tmp_path):
    src = named_model(head_units=3)
    src.save_weights(tmp_path / "w.weights.npz")
    dst = named_model(head_units=7)  # a new head for another task
    before = dst.get_weights()
    with pytest.raises(saving.ModelFileError, match="head") as info:
        dst.load_weights(tmp_path / "w.weights.npz")
    assert "skip_mismatch" in str(info.value)
    for a, b in zip(before, dst.get_weights()):  # nothing was assigned, not even the matching base
        np.testing.assert_array_equal(a, b)

    with pytest.warns(UserWarning, match="skipping layer 'head'"):
        dst.load_weights(tmp_path / "w.weights.npz", skip_mismatch=True)
    np.testing.assert_array_equal(dst.layers[0].kernel, src.layers[0].kernel)
    np.testing.assert_array_equal(dst.layers[1].get_weights()[2], src.layers[1].get_weights()[2])
    np.testing.assert_array_equal(dst.layers[2].kernel, before[-2])

    smaller = cydnn.Sequential([layers.InputLayer(shape=(5,)), layers.Dense(4, name="base")])
    smaller.load_weights(tmp_path / "w.weights.npz")  # extra layers in the file are ignored by name
    np.testing.assert_array_equal(smaller.layers[0].kernel, src.layers[0].kernel)
    bigger = named_model(names=("base", "mid", "other"))
    with pytest.raises(saving.ModelFileError, match="'other' has no weights in the file"):
        bigger.load_weights(tmp_path / "w.weights.npz")


def test_load_weights_from_a_full_model_file(tmp_path):
    src = named_model()
    src.compile("adam", "mse")
    src.save(tmp_path / "full.cydnn")
    dst = named_model()
    dst.load_weights(tmp_path / "full.cydnn")
    assert_same_weights(src, dst)


def test_weights_file_corruption_is_caught(tmp_path):
    src = named_model()
    src.save_weights(tmp_path / "w.weights.npz")
    data = bytearray((tmp_path / "w.weights.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "w.weights.npz").write_bytes(bytes(data))
    dst = named_model()
    before = dst.get_weights()
    with pytest.raises(saving.CorruptFileError, match="checksum"):
        dst.load_weights(tmp_path / "w.weights.npz")
    assert_same_weights_list(before, dst.get_weights())


def assert_same_weights_list(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_duplicate_layer_names_cannot_be_saved_by_name(tmp_path):
    model = cydnn.Sequential([layers.InputLayer(shape=(3,)), layers.Dense(3, name="same"),
                              layers.Dense(2, name="same")])
    with pytest.raises(ValueError, match="unique"):
        model.save(tmp_path / "d.cydnn")
    assert only_file(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# the functional Model (multi-input layers, shared layers, several outputs)
MULTI_INPUT = {
    "Add": lambda: layers.Add(), "Subtract": lambda: layers.Subtract(), "Multiply": lambda: layers.Multiply(),
    "Average": lambda: layers.Average(), "Maximum": lambda: layers.Maximum(), "Minimum": lambda: layers.Minimum(),
    "Concatenate": lambda: layers.Concatenate(axis=-1), "Dot": lambda: layers.Dot(axes=2),
    "Attention": lambda: layers.Attention(use_scale=True),
    "AdditiveAttention": lambda: layers.AdditiveAttention(),
    "MultiHeadAttention": lambda: layers.MultiHeadAttention(num_heads=2, key_dim=2),
}


def test_every_multi_input_layer_has_a_functional_recipe():
    missing = [n for n in layer_types() if RECIPES.get(n, 0) is None and n not in MULTI_INPUT]
    assert not missing, f"add a functional recipe to MULTI_INPUT in tests/test_saving.py for {missing}"


@pytest.mark.parametrize("name", [n for n in layer_types() if RECIPES.get(n, 0) is None])
def test_functional_round_trip_multi_input_layer(name, tmp_path):
    from cydnn import Input, Model
    cydnn.set_random_seed(4)
    a, b = Input(shape=(4, 3), name="query"), Input(shape=(4, 3), name="value")
    shared = layers.Dense(3, activation="tanh", name="shared")  # one layer called twice
    merged = MULTI_INPUT[name]()([shared(a), shared(b)])
    pooled = layers.Flatten()(merged)
    out1 = layers.Dense(2, activation="softmax", name="cls")(pooled)
    out2 = layers.Dense(1, name="reg")(pooled)
    model = Model([a, b], [out1, out2])
    model.compile(optimizers.Adam(0.01), loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                  metrics={"cls": ["accuracy"]}, loss_weights=[1.0, 0.5])
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((8, 4, 3)).astype(np.float32) for _ in range(2)]
    ys = [np.arange(8) % 2, rng.standard_normal((8, 1)).astype(np.float32)]
    model.fit(xs, ys, batch_size=4, verbose=0)
    model.save(tmp_path / "f.cydnn")
    loaded = cydnn.load_model(tmp_path / "f.cydnn")
    assert type(loaded) is Model and loaded.output_names == model.output_names
    assert_same_weights(model, loaded)
    for p, q in zip(model.predict(xs), loaded.predict(xs)):
        np.testing.assert_array_equal(p, q)
    assert_same_optimizer_state(model, loaded)
    assert loaded._metric_names() == model._metric_names() and loaded._lw == [1.0, 0.5]
    state = snapshot_rng()
    model.train_on_batch(xs, ys)
    restore_rng(state)
    loaded.train_on_batch(xs, ys)
    assert_same_weights(model, loaded)


# ---------------------------------------------------------------------------------------------
# more of what a resumed run needs
def test_learning_rate_schedule_round_trips_and_continues(tmp_path):
    from cydnn import schedules
    model = cydnn.Sequential([layers.InputLayer(shape=(3,)), layers.Dense(2)])
    model.compile(optimizers.SGD(schedules.CosineDecay(0.1, decay_steps=20), momentum=0.9), "mse")
    x, y = np.ones((8, 3), np.float32), np.ones((8, 2), np.float32)
    model.fit(x, y, batch_size=2, verbose=0)
    model.save(tmp_path / "s.cydnn")
    loaded = cydnn.load_model(tmp_path / "s.cydnn")
    assert type(loaded.optimizer.learning_rate) is schedules.CosineDecay
    assert loaded.optimizer.current_learning_rate() == model.optimizer.current_learning_rate() < 0.1
    model.fit(x, y, batch_size=2, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=2, verbose=0, shuffle=False)
    assert_same_weights(model, loaded)


class HalfMSE(cydnn.losses.MeanSquaredError):
    """A custom loss: half the mean squared error (not registered: loaded via custom_objects)."""

    def compute(self, y_true, y_pred, sample_weight, grad, code=None):
        value = super().compute(y_true, y_pred, sample_weight, grad, code)
        if grad is not None:
            grad *= 0.5
        return 0.5 * value


def test_custom_loss_through_custom_objects(tmp_path):
    model = cydnn.Sequential([layers.InputLayer(shape=(3,)), layers.Dense(2)])
    model.compile("adam", HalfMSE())
    model.save(tmp_path / "l.cydnn")
    expect_model_file_error(tmp_path / "l.cydnn", "unknown loss class 'HalfMSE'", "custom_objects")
    loaded = cydnn.load_model(tmp_path / "l.cydnn", custom_objects={"HalfMSE": HalfMSE})
    assert type(loaded.loss) is HalfMSE
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    assert loaded.evaluate(x, y) == model.evaluate(x, y)


def test_seeded_dropout_generator_state_is_restored(tmp_path):
    x = np.random.default_rng(0).standard_normal((32, 6)).astype(np.float32)
    y = np.random.default_rng(1).standard_normal((32, 2)).astype(np.float32)

    def model():
        m = cydnn.Sequential([layers.InputLayer(shape=(6,)), layers.Dense(8, name="d1"),
                              layers.Dropout(0.5, seed=11, name="drop"), layers.Dense(2, name="d2")])
        m.compile(optimizers.SGD(0.05), "mse")
        return m

    cydnn.set_random_seed(0)
    straight = model()
    straight.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    cydnn.set_random_seed(0)
    first = model()
    first.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    first.save(tmp_path / "d.cydnn")
    resumed = cydnn.load_model(tmp_path / "d.cydnn", restore_rng=True)
    resumed.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert_same_weights(straight, resumed)
    fresh = cydnn.load_model(tmp_path / "d.cydnn")  # without restore_rng the layer's stream restarts
    fresh.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert not np.array_equal(fresh.get_weights()[0], straight.get_weights()[0])


def test_saved_file_permissions_follow_the_umask_or_the_replaced_file(tmp_path):
    old = os.umask(0o022)
    try:
        model = cydnn.Sequential([layers.InputLayer(shape=(2,)), layers.Dense(2)])
        model.save(tmp_path / "m.cydnn")
        assert os.stat(tmp_path / "m.cydnn").st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "m.cydnn", 0o640)
        model.save(tmp_path / "m.cydnn")
        assert os.stat(tmp_path / "m.cydnn").st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
