"""The course's worked backpropagation example, step by step, by cydnn and by hand.

    python examples/worked_backprop.py

A 2-2-2 network with sigmoid units, inputs 0.05 and 0.10, targets 0.01 and 0.99, weights
w1..w8 = 0.15 .. 0.55, biases 0.35 (hidden) and 0.60 (output), error E = 1/2 sum (target - out)^2
and one gradient-descent step with learning rate 0.5. In the Keras layout kernel[i, j] is the
weight from input i to unit j: hidden kernel [[w1, w3], [w2, w4]], output kernel [[w5, w7], [w6, w8]].
"""
import sys
from pathlib import Path

import numpy as np

try:
    import cydnn
except ImportError:  # a source checkout that is not installed: use its src/ (built in place)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import cydnn
from cydnn import layers  # noqa: E402


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def main():
    cydnn.set_floatx("float64")   # the course's digits need double precision
    x = np.array([[0.05, 0.10]])
    target = np.array([[0.01, 0.99]])
    w_hidden = np.array([[0.15, 0.25], [0.20, 0.30]])
    w_output = np.array([[0.40, 0.50], [0.45, 0.55]])

    model = cydnn.Sequential([layers.Dense(2, activation="sigmoid", input_shape=(2,)),
                              layers.Dense(2, activation="sigmoid")])
    model.set_weights([w_hidden, np.full(2, 0.35), w_output, np.full(2, 0.60)])
    model.compile(optimizer=cydnn.optimizers.SGD(learning_rate=0.5), loss="sse")

    # ---- forward pass
    out_h = model.layers[0](x)
    out_o = model.predict(x)
    e = 0.5 * (target - out_o) ** 2
    print("forward pass")
    print(f"  out_h1 = {out_h[0, 0]:.9f}   out_h2 = {out_h[0, 1]:.9f}")
    print(f"  out_o1 = {out_o[0, 0]:.9f}   out_o2 = {out_o[0, 1]:.9f}")
    print(f"  E_o1 = {e[0, 0]:.9f}   E_o2 = {e[0, 1]:.9f}   E_total = {e.sum():.9f}")

    # ---- the chain rule by hand (what backward computes)
    delta_o = (out_o - target) * out_o * (1 - out_o)          # dE/dnet_o
    delta_h = (delta_o @ w_output.T) * out_h * (1 - out_h)     # dE/dnet_h
    print("\nbackward pass, by hand")
    print(f"  dE/dw5 = (out_o1 - target_o1) * out_o1 (1 - out_o1) * out_h1 = {delta_o[0, 0] * out_h[0, 0]:.9f}")
    print(f"  dE/dw1 = {delta_h[0, 0] * x[0, 0]:.9f}")

    # ---- one training step by cydnn
    loss = model.train_on_batch(x, target)
    hidden, output = model.layers
    print("\nbackward pass, cydnn (gradients kept by the layers)")
    print(f"  dE/dw5 = {output.grads[0][0, 0]:.9f}   dE/dw1 = {hidden.grads[0][0, 0]:.9f}")
    print(f"  loss of the step = {loss:.9f}")

    kh, ko = hidden.get_weights()[0], output.get_weights()[0]
    print("\nweights after one step (lr 0.5)")
    names = {"w1": kh[0, 0], "w2": kh[1, 0], "w3": kh[0, 1], "w4": kh[1, 1],
             "w5": ko[0, 0], "w6": ko[1, 0], "w7": ko[0, 1], "w8": ko[1, 1]}
    for name, value in names.items():
        print(f"  {name} = {value:.9f}")
    # the course keeps the biases at 0.35 and 0.60; cydnn moved them too, which changes no w above
    # (every gradient of the step is taken before any weight moves) but does change the new error
    out_fixed = sigmoid(sigmoid(x @ kh + 0.35) @ ko + 0.60)
    print(f"\nE_total after the step: {0.5 * np.sum((target - out_fixed) ** 2):.9f} with the biases kept "
          f"(the course), {model.evaluate(x, target):.9f} with them trained too (before: {e.sum():.9f})")

if __name__ == "__main__":
    main()
