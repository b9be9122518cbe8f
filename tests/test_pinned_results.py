"""Pinned training results: a few models trained for a few steps must end with exactly the
weights they ended with before the restructuring of layers, models and kernels (issue 10).

The weights' SHA-256 is compared bit for bit on the machine kinds whose hashes are recorded
below. Results depend on the SIMD level of cydnn's own kernels and on the BLAS kernel OpenBLAS
picks for the CPU, so each record is keyed by that fingerprint. On a machine kind with no record
the sums of |w| are compared instead, to float32 rounding: weaker, but still a real check. Every
model is trained at 1 and at 2 threads, and the two must agree bit for bit everywhere (cydnn's
results do not depend on the thread count).

To record a new machine kind: ``python tests/test_pinned_results.py`` prints its fingerprint and
hashes.
"""
import hashlib

import numpy as np
import pytest

import cydnn
from cydnn import layers


def _mlp():
    return cydnn.Sequential([
        layers.InputLayer(shape=(12,)),
        layers.Dense(16, activation="relu"),
        layers.BatchNormalization(),
        layers.Dropout(0.25, seed=3),
        layers.Dense(8, activation="tanh", kernel_regularizer="l2"),
        layers.Dense(3, activation="softmax"),
    ]), "adam", "sparse_categorical_crossentropy", (12,), 3


def _cnn():
    return cydnn.Sequential([
        layers.InputLayer(shape=(10, 10, 2)),
        layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(6, 3, activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(3, activation="softmax"),
    ]), cydnn.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "sparse_categorical_crossentropy", (10, 10, 2), 3


def _recurrent():
    return cydnn.Sequential([
        layers.InputLayer(shape=(7, 5)),
        layers.LSTM(8, return_sequences=True),
        layers.GRU(6, return_sequences=True),
        layers.Bidirectional(layers.SimpleRNN(4)),
        layers.Dense(1),
    ]), "rmsprop", "mse", (7, 5), None


def _functional():
    inp = cydnn.Input(shape=(6, 4))
    shared = layers.Dense(5, activation="relu")
    a = shared(inp)
    b = shared(layers.Dense(4)(inp))
    att = layers.Attention()([a, b])
    merged = layers.Concatenate()([layers.GlobalAveragePooling1D()(att), layers.Flatten()(b)])
    out1 = layers.Dense(2, activation="softmax", name="cls")(merged)
    out2 = layers.Dense(1, name="reg")(layers.LayerNormalization()(merged))
    model = cydnn.Model(inp, [out1, out2])
    return model, "adam", ["sparse_categorical_crossentropy", "mse"], (6, 4), (2, None)


WORKLOADS = {"mlp": _mlp, "cnn": _cnn, "recurrent": _recurrent, "functional": _functional}


def _targets(rng, n, classes):
    if classes is None:
        return rng.normal(size=(n, 1))
    if isinstance(classes, tuple):
        return [_targets(rng, n, c) for c in classes]
    return rng.integers(0, classes, size=n)


def train(name, threads, dtype="float32"):
    """Weights after two epochs of 21 samples in batches of 8 (so a shorter last batch)."""
    cydnn.set_num_threads(threads)
    cydnn.set_floatx(dtype)
    cydnn.set_random_seed(1234)
    model, opt, loss, in_shape, classes = WORKLOADS[name]()
    model.compile(optimizer=opt, loss=loss)
    rng = np.random.default_rng(99)
    x = rng.normal(size=(21,) + in_shape)
    y = _targets(rng, 21, classes)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    model.predict(x[:5], verbose=0)
    return model.get_weights()


def fingerprint():
    from threadpoolctl import threadpool_info
    from cydnn._kernels import conv, recurrent
    blas = sorted(f"{i.get('internal_api')}:{i.get('architecture')}" for i in threadpool_info()
                  if i.get("user_api") == "blas")
    return f"direct{conv.direct_level()}-packed{recurrent.packed_level()}-" + ",".join(blas)


def digest(weights):
    h = hashlib.sha256()
    for w in weights:
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:32]


def abs_sum(weights):
    return float(sum(np.abs(np.asarray(w, dtype=np.float64)).sum() for w in weights))


# fingerprint -> workload -> SHA-256 prefix of the float32 weights, recorded before issue 10's refactor
PINNED = {
    "direct2-packed2-openblas:SkylakeX,openblas:SkylakeX": {
        "cnn": "ee9f182fea459ceaddb26c26aa6d7c3b",
        "functional": "596e05ed038c4524412b3f1dbfde7b85",
        "mlp": "58b99dfc6765afe6ff846c5e264cf69b",
        "recurrent": "198388157d4b8cb7f04a0f3c9d579aef",
    },
}
# workload -> sum of |w| (float32 run), machine-independent to float32 rounding
ABS_SUMS = {"cnn": 47.21091003192123, "functional": 74.06083705218043, "mlp": 119.0535147169976,
            "recurrent": 172.17312449740712}


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_training_result_is_pinned(name):
    w1 = train(name, threads=1)
    w2 = train(name, threads=2)
    assert digest(w1) == digest(w2), f"{name}: 1 and 2 threads give different weights"
    record = PINNED.get(fingerprint())
    if record is not None:
        assert digest(w1) == record[name], f"{name}: weights changed on {fingerprint()}"
    else:
        assert abs_sum(w1) == pytest.approx(ABS_SUMS[name], rel=1e-4), name


if __name__ == "__main__":
    print(repr(fingerprint()))
    for workload in sorted(WORKLOADS):
        w = train(workload, threads=1)
        print(f"    {workload!r}: {digest(w)!r},  # abs sum {abs_sum(w)!r}")
