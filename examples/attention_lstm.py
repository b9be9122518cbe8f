"""An attention-based LSTM classifier, and why the attention helps.

Generated data: sequences of 100 steps with two features, a random value in [-1, 1] and a
marker that is 1 at exactly one random step. The label is the sign of the value at the marked
step. The answer sits at one step somewhere in a long sequence:

* an LSTM that classifies from its last state must carry that value through up to 99 later
  steps; it gets there eventually, but after 3 epochs it is still near chance (training
  accuracy 0.51-0.75 over seeds 0-3);
* LSTM(return_sequences=True) + AttentionPooling scores every step with a learned query and
  reads out the softmax-weighted sum of the steps, so the gradient reaches the marked step
  directly: 98-99% held-out accuracy after the same 3 epochs, with the attention weights
  concentrated at and just after the marker;
* the same pooling over a Bidirectional LSTM (the attention-based BiLSTM of Zhou et al., 2016);
* Keras-style Luong attention in a functional model: the LSTM's final state is the query of an
  ``Attention`` layer over the LSTM's outputs.

    python examples/attention_lstm.py [--steps 100] [--epochs 3]
"""
import argparse
import time

import numpy as np

import cydnn
from cydnn import layers


def marked_sequences(n, steps=100, seed=0):
    """(x, y, marker): x (n, steps, 2) float32 -- value, marker; y = value at the marker > 0."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, steps, 2), dtype=np.float32)
    x[:, :, 0] = rng.uniform(-1, 1, (n, steps))
    marker = rng.integers(0, steps, n)
    x[np.arange(n), marker, 1] = 1
    y = (x[np.arange(n), marker, 0] > 0).astype(np.int64)
    return x, y, marker


def attention_lstm(steps=100, units=16):
    """LSTM over the sequence -> attention pooling (learned query) -> logistic output."""
    return cydnn.Sequential([
        layers.InputLayer(shape=(steps, 2)),
        layers.LSTM(units, return_sequences=True),
        layers.AttentionPooling(units=units),
        layers.Dense(1, activation="sigmoid"),
    ])


def attention_bilstm(steps=100, units=16):
    """Bidirectional LSTM over the sequence -> attention pooling -> logistic output."""
    return cydnn.Sequential([
        layers.InputLayer(shape=(steps, 2)),
        layers.Bidirectional(layers.LSTM(units, return_sequences=True)),
        layers.AttentionPooling(units=units),
        layers.Dense(1, activation="sigmoid"),
    ])


def last_state_lstm(steps=100, units=16):
    return cydnn.Sequential([
        layers.InputLayer(shape=(steps, 2)),
        layers.LSTM(units),
        layers.Dense(1, activation="sigmoid"),
    ])


def luong_attention_lstm(steps=100, units=16):
    """Functional: the final LSTM state queries the LSTM outputs (dot-product attention)."""
    inputs = cydnn.Input(shape=(steps, 2))
    sequence, h, _ = layers.LSTM(units, return_sequences=True, return_state=True)(inputs)
    query = layers.Reshape((1, units))(h)
    context = layers.Attention(use_scale=True)([query, sequence])  # (batch, 1, units)
    outputs = layers.Dense(1, activation="sigmoid")(layers.Flatten()(context))
    return cydnn.Model(inputs, outputs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--units", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="default: every core")
    args = ap.parse_args()
    if args.threads:
        cydnn.set_num_threads(args.threads)

    x_train, y_train, _ = marked_sequences(3000, args.steps, seed=1)
    x_test, y_test, marker_test = marked_sequences(1000, args.steps, seed=2)
    results = {}
    for name, make in (("LSTM, last state", last_state_lstm), ("LSTM + attention pooling", attention_lstm),
                       ("BiLSTM + attention pooling", attention_bilstm),
                       ("LSTM + Luong attention (functional)", luong_attention_lstm)):
        cydnn.set_random_seed(args.seed)
        model = make(args.steps, args.units)
        model.compile(optimizer=cydnn.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
        t0 = time.perf_counter()
        history = model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, verbose=0)
        seconds = time.perf_counter() - t0
        loss, accuracy = model.evaluate(x_test, y_test)
        results[name] = model
        per_epoch = " ".join(f"{a:.2f}" for a in history.history["accuracy"])
        print(f"{name:38s} held-out accuracy {accuracy:.3f}   (training accuracy by epoch: {per_epoch}; "
              f"{seconds:.1f} s)")

    # where the pooling looks: its weights over the steps, relative to the marker
    model = results["LSTM + attention pooling"]
    model.predict(x_test)
    weights = model.layers[1].last_attention_scores  # the last predict batch
    rows = np.arange(len(weights))
    marker = marker_test[-len(weights):]
    at_marker = weights[rows, marker]
    after = np.array([weights[r, m:m + 5].sum() for r, m in zip(rows, marker)])
    print(f"attention pooling: mean weight at the marked step {at_marker.mean():.2f} "
          f"(uniform would be {1 / args.steps:.2f}); on it and the 4 steps after it {after.mean():.2f}; "
          f"the marked step has the largest weight in {np.mean(weights.argmax(1) == marker):.0%} of sequences")


if __name__ == "__main__":
    main()
