"""Errors tell the user what to change: each names the layer or function, what was expected and
what was received. Inputs that are merely in another float type or memory layout are converted,
not rejected."""
import re

import numpy as np
import pytest

import cydnn
from cydnn import layers, optimizers


@pytest.fixture
def model():
    m = cydnn.Sequential([layers.Dense(8, activation="relu", input_shape=(4,), name="hidden"),
                          layers.Dense(3, activation="softmax", name="out")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


X = np.zeros((5, 4), dtype=np.float32)
Y = np.array([0, 1, 2, 1, 0])


# --------------------------------------------------------------------------- data shapes and types
def test_wrong_rank(model):
    # the received batch size is not pinned: the model checks a new shape once, per sample shape
    with pytest.raises(ValueError, match=r"Dense 'hidden': expected input of rank 2 \(shape \(None, 4\)\), "
                                         r"received shape \(\d+, 4, 1\)"):
        model.fit(np.zeros((5, 4, 1)), Y, verbose=0)
    with pytest.raises(ValueError, match=r"Dense 'hidden': expected input of rank 2 .*received shape \(\d+,\)"):
        model.predict(np.zeros(4))


def test_wrong_last_dimension(model):
    with pytest.raises(ValueError, match=r"Dense 'hidden': expected input with last dimension 4, "
                                         r"received shape \(\d+, 3\)"):
        model.fit(np.zeros((5, 3)), Y, verbose=0)
    layer = layers.Dense(2, name="solo")
    layer(np.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"Dense 'solo': expected input with last dimension 6, received shape \(2, 7\)"):
        layer(np.zeros((2, 7)))


def test_strings_are_rejected(model):
    with pytest.raises(TypeError, match=r"fit: expected a numeric input x \(array of numbers\), received dtype <U"):
        model.fit(np.array([["a"] * 4] * 5), Y, verbose=0)
    with pytest.raises(TypeError, match=r"predict: expected a numeric input x.*received dtype object"):
        model.predict(np.array([[object()] * 4], dtype=object))
    with pytest.raises(TypeError, match=r"Dense 'solo2': expected a numeric input.*received dtype <U"):
        layers.Dense(2, name="solo2")(np.array([["1.0", "2.0"]]))
    with pytest.raises(TypeError, match=r"expected integer class labels, received dtype <U"):
        model.fit(X, np.array(["cat"] * 5), verbose=0)


def test_labels_out_of_range(model):
    with pytest.raises(ValueError, match=r"SparseCategoricalCrossentropy loss: expected labels in \[0, 3\) for 3 "
                                         r"output classes, received label 3"):
        model.fit(X, np.array([0, 1, 2, 3, 0]), verbose=0)
    with pytest.raises(ValueError, match=r"expected labels in \[0, 3\).*received label -1"):
        model.evaluate(X, np.array([0, -1, 2, 1, 0]))
    with pytest.raises(ValueError, match=r"expected integer class labels, received non-integer values"):
        model.fit(X, np.array([0, 1.5, 2, 1, 0]), verbose=0)


def test_wrong_number_of_targets(model):
    with pytest.raises(ValueError, match=r"expected 5 labels \(shape \(5,\)\) for model output of shape \(5, 3\), "
                                         r"received labels of shape \(4,\)"):
        model.fit(X, Y[:4], verbose=0)
    reg = cydnn.Sequential([layers.Dense(1, input_shape=(4,), name="reg")])
    reg.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"MeanSquaredError loss: expected y_true of shape \(5, 1\) "
                                         r"\(the model output's\), received shape \(5, 2\)"):
        reg.fit(X, np.zeros((5, 2)), verbose=0)


def test_sample_weight_length(model):
    with pytest.raises(ValueError, match=r"fit: expected sample_weight of shape \(5,\), received shape \(3,\)"):
        model.fit(X, Y, sample_weight=np.ones(3), verbose=0)


# --------------------------------------------------------------------------- unknown identifiers
@pytest.mark.parametrize("kind,make,listed", [
    ("activation", lambda: layers.Dense(3, activation="relux"), ["relu", "sigmoid", "softmax", "tanh"]),
    ("activation", lambda: layers.Activation("swishh"), ["swish", "gelu"]),
    ("loss", lambda: cydnn.Sequential([layers.Dense(1)]).compile("sgd", "msee"),
     ["mse", "binary_crossentropy", "sparse_categorical_crossentropy"]),
    ("loss", lambda: cydnn.losses.get("cross_entropy"), ["categorical_crossentropy"]),
    ("optimizer", lambda: cydnn.Sequential([layers.Dense(1)]).compile("sgdd", "mse"), ["sgd", "adam", "rmsprop"]),
    ("initializer", lambda: layers.Dense(3, kernel_initializer="glorot"), ["glorot_uniform", "he_normal", "zeros"]),
    ("metric", lambda: cydnn.Sequential([layers.Dense(1)]).compile("sgd", "mse", metrics=["acuracy"]),
     ["accuracy", "mae"]),
])
def test_unknown_identifiers_list_the_valid_ones(kind, make, listed):
    with pytest.raises(ValueError) as info:
        make()
    msg = str(info.value)
    assert re.match(rf"Unknown {kind} '\w+'\. Valid {kind}e?s: ", msg), msg
    valid = msg.split(": ", 1)[1].split(", ")
    assert set(listed) <= set(valid), msg


def test_activation_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"Expected an activation name \(str\), received 3\. Valid activations: .*relu"):
        layers.Dense(3, activation=3)


# --------------------------------------------------------------------------- NaN and inf
def test_nan_in_a_batch_is_caught_when_asked(model):
    x = X.copy()
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"fit: input x contains NaN or inf \(first at index \(2, 1\)\)"):
        model.fit(x, Y, verbose=0, check_finite_values=True)
    reg = cydnn.Sequential([layers.Dense(1, input_shape=(4,))])
    reg.compile("sgd", "mse")
    y = np.zeros((5, 1))
    y[4, 0] = np.inf
    with pytest.raises(ValueError, match=r"fit: target y contains NaN or inf \(first at index \(4, 0\)\)"):
        reg.fit(X, y, verbose=0, check_finite_values=True)
    before = model.get_weights()
    with pytest.raises(ValueError):
        model.fit(x, Y, verbose=0, check_finite_values=True)
    for a, b in zip(before, model.get_weights()):  # rejected before any step
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- order of calls
def test_fit_before_compile():
    m = cydnn.Sequential([layers.Dense(1, input_shape=(4,))], name="uncompiled")
    for call in (lambda: m.fit(X, np.zeros(5), verbose=0), lambda: m.evaluate(X, np.zeros(5)),
                 lambda: m.train_on_batch(X, np.zeros(5))):
        with pytest.raises(RuntimeError, match=r"Sequential 'uncompiled': call compile\(optimizer, loss\) before "
                                               r"(fit|evaluate|train_on_batch)\(\)"):
            call()
    assert m.predict(X).shape == (5, 1)  # predicting needs no compile


def test_compile_without_loss():
    with pytest.raises(ValueError, match=r"Sequential.compile: expected a loss \(e.g. 'mse'.*received loss=None"):
        cydnn.Sequential([layers.Dense(1)]).compile("sgd")


# --------------------------------------------------------------------------- hyperparameters
@pytest.mark.parametrize("make,pattern", [
    (lambda: layers.Dense(0), r"Dense '\w+': expected units to be a positive int, received units=0"),
    (lambda: layers.Dense(-3), r"Dense '\w+': expected units to be a positive int, received units=-3"),
    (lambda: layers.Dense(2.5), r"Dense '\w+': expected units to be a positive int, received units=2.5"),
    (lambda: layers.Dropout(1.5), r"Dropout '\w+': expected rate in \[0, 1\), received rate=1.5"),
    (lambda: layers.Dropout(-0.1), r"Dropout '\w+': expected rate in \[0, 1\), received rate=-0.1"),
    (lambda: layers.Maxout(2, pieces=0), r"Maxout '\w+': expected pieces to be a positive int, received pieces=0"),
    (lambda: layers.Reshape((0, 2)), r"Reshape '\w+': expected positive sizes with at most one -1, "
                                     r"received target_shape=\(0, 2\)"),
    (lambda: layers.Dense(2, dtype="float16"), r"Dense '\w+': expected dtype 'float32' or 'float64', "
                                               r"received dtype='float16'"),
    (lambda: optimizers.SGD(learning_rate=-0.1), r"SGD: expected learning_rate to be a float >= 0 or a schedule, "
                                                 r"received learning_rate=-0.1"),
    (lambda: optimizers.Adam(learning_rate=-1), r"Adam: expected learning_rate .*received learning_rate=-1"),
    (lambda: optimizers.RMSprop(learning_rate="fast"), r"RMSprop: expected learning_rate .*received learning_rate='fast'"),
    (lambda: optimizers.SGD(momentum=1.5), r"SGD: expected momentum in \[0.0, 1.0\), received momentum=1.5"),
    (lambda: optimizers.SGD(nesterov=True), r"SGD: nesterov=True needs momentum > 0, received momentum=0"),
    (lambda: optimizers.Adam(beta_1=1.0), r"Adam: expected beta_1 in \[0.0, 1.0\), received beta_1=1.0"),
    (lambda: optimizers.Adam(epsilon=0), r"Adam: expected epsilon in \(0.0, inf\), received epsilon=0"),
    (lambda: optimizers.Adagrad(initial_accumulator_value=-1), r"Adagrad: expected initial_accumulator_value in "
                                                               r"\[0.0, inf\), received initial_accumulator_value=-1"),
    (lambda: optimizers.SGD(clipnorm=-1.0), r"SGD: expected clipnorm > 0 or None, received clipnorm=-1.0"),
    (lambda: optimizers.SGD(clipnorm=1.0, global_clipnorm=1.0), r"SGD: set clipnorm or global_clipnorm, not both"),
    (lambda: optimizers.AdamW(weight_decay=-0.1), r"AdamW: expected weight_decay >= 0, received weight_decay=-0.1"),
    (lambda: cydnn.losses.Huber(delta=0), r"Huber loss: expected delta > 0, received delta=0"),
    (lambda: cydnn.Perceptron(learning_rate=0), r"Perceptron: expected learning_rate > 0, received learning_rate=0"),
    (lambda: cydnn.set_floatx("float16"), r"set_floatx: expected dtype 'float32' or 'float64', received dtype='float16'"),
])
def test_bad_hyperparameters(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(batch_size=0), r"fit: expected batch_size to be a positive int, received batch_size=0"),
    (dict(epochs=-1), r"fit: expected epochs to be a non-negative int, received epochs=-1"),
    (dict(validation_split=1.0), r"fit: expected validation_split in \[0, 1\), received validation_split=1.0"),
    (dict(gradient_accumulation_steps=0), r"fit: expected gradient_accumulation_steps to be a positive int"),
])
def test_bad_fit_arguments(model, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        model.fit(X, Y, verbose=0, **kwargs)


def test_prelu_bad_shared_axes():
    with pytest.raises(ValueError, match=r"PReLU '\w+': expected shared_axes between 1 and 2, received shared_axes=\(3,\)"):
        layers.PReLU(shared_axes=[3])(np.zeros((2, 3, 4)))


def test_reshape_incompatible_size():
    with pytest.raises(ValueError, match=r"Reshape '\w+': cannot reshape input of shape \(None, 4\) "
                                         r"to target_shape \(3, -1\)"):
        layers.Reshape((3, -1))(np.zeros((2, 4)))


# --------------------------------------------------------------------------- weights
def test_set_weights_with_wrong_shapes(model):
    with pytest.raises(ValueError, match=r"Dense 'hidden': expected weight 'kernel' of shape \(4, 8\), "
                                         r"received shape \(4, 7\)"):
        model.layers[0].set_weights([np.zeros((4, 7)), np.zeros(8)])
    with pytest.raises(ValueError, match=r"Dense 'hidden': expected 2 weight arrays \(kernel \(4, 8\), bias \(8,\)\), "
                                         r"received 1"):
        model.layers[0].set_weights([np.zeros((4, 8))])
    with pytest.raises(ValueError, match=r"Sequential '\w+': expected 4 weight arrays, received 1"):
        model.set_weights([np.zeros((4, 8))])
    with pytest.raises(ValueError, match=r"Dense 'out': expected weight 'bias' of shape \(3,\), received shape \(2,\)"):
        model.set_weights([np.zeros((4, 8)), np.zeros(8), np.zeros((8, 3)), np.zeros(2)])
    before = model.get_weights()
    with pytest.raises(ValueError):  # a failed set_weights on a layer changes nothing
        model.layers[1].set_weights([np.ones((8, 3)), np.ones(2)])
    np.testing.assert_array_equal(model.layers[1].get_weights()[0], before[2])


# --------------------------------------------------------------------------- converted, not rejected
def test_float64_and_non_contiguous_inputs_are_converted(model):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((6, 8))
    x64 = base[:, ::2]                       # float64 and not C-contiguous
    assert x64.dtype == np.float64 and not x64.flags.c_contiguous
    x32 = np.ascontiguousarray(x64, dtype=np.float32)
    out = model.predict(x64)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, model.predict(x32))
    np.testing.assert_array_equal(model.predict(np.asfortranarray(x32)), model.predict(x32))
    # training on the converted data is training on the float32 data
    y = np.array([0, 1, 2, 0, 1, 2])
    trained = []
    for x in (x64, x32):
        m = cydnn.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)), layers.Dense(3, activation="softmax")])
        m.set_weights(model.get_weights())
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        m.fit(x, y, epochs=2, verbose=0, shuffle=False)
        trained.append(m.get_weights())
    assert all(w.dtype == np.float32 for w in trained[0])
    for a, b in zip(*trained):
        np.testing.assert_array_equal(a, b)
    # integer and boolean inputs are numbers too
    assert model.predict(np.ones((2, 4), dtype=np.int64)).shape == (2, 3)
    assert model.predict(np.ones((2, 4), dtype=bool)).shape == (2, 3)
