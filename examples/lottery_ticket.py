"""The lottery-ticket observation (Frankle & Carbin, ICLR 2019) on the bundled 8x8 digits.

    python examples/lottery_ticket.py [--sparsity 0.8] [--seeds 5] [--epochs 20] [--rounds 1]

For each seed, an MLP (64-300-100-10, as the paper's LeNet-300-100 on a smaller image) is
  dense:   trained from its initialization;
  ticket:  pruned to ``--sparsity`` of its kernels by magnitude (one global ranking), the
           surviving weights rewound to their *initial* values, retrained with the mask
           (``cydnn.pruning.lottery_ticket``; ``--rounds`` > 1 prunes iteratively);
  control: the same mask on a *new random* initialization, trained the same way
           (``cydnn.pruning.random_reinit``).
The observation: the rewound sparse network matches the dense one's test accuracy (here
within about a percentage point at 80% sparsity), while the same sparse architecture from a
random start does worse -- the initial values of the surviving weights matter.

Test accuracy is on the 360 held-out images: one image is 0.28 points, hence the average
over seeds. Measured (5 seeds, 20 epochs): dense 98.77%, ticket 98.11% (-0.67 points), control
96.94% (-1.84); with --rounds 3 the same means; at --sparsity 0.95: ticket -2.56, control -3.57.
"""
import argparse
import time

import numpy as np

import cydnn
from cydnn import layers, optimizers, pruning


def mlp(seed, lr):
    cydnn.set_random_seed(seed)
    model = cydnn.Sequential([layers.InputLayer(shape=(64,)),
                              layers.Dense(300, activation="relu", name="fc1"),
                              layers.Dense(100, activation="relu", name="fc2"),
                              layers.Dense(10, activation="softmax", name="out")])
    model.compile(optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sparsity", type=float, default=0.8, help="fraction of the kernels pruned")
    ap.add_argument("--rounds", type=int, default=1, help="iterative pruning rounds (1: one shot)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=None, help="default: every core")
    args = ap.parse_args()
    if args.threads:
        cydnn.set_num_threads(args.threads)

    (x, y), (x_test, y_test) = cydnn.datasets.load_digits()
    x = x.reshape(len(x), -1).astype(np.float32) / 16.0
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 16.0
    fit = dict(epochs=args.epochs, batch_size=32, verbose=0)

    t0 = time.perf_counter()
    print(f"MLP 64-300-100-10 on digits, {args.epochs} epochs of Adam({args.lr}), {args.sparsity:.0%} of the "
          f"kernels pruned in {args.rounds} round(s); test accuracy:")
    print(" seed   dense   ticket (rewound)   control (random init)   sparsity")
    rows = []
    for seed in range(args.seeds):
        model = mlp(seed, args.lr)
        ticket = pruning.lottery_ticket(model, x, y, sparsity=args.sparsity, rounds=args.rounds, **fit)
        ticket_acc = model.evaluate(x_test, y_test, return_dict=True)["accuracy"]
        dense = mlp(seed, args.lr)
        dense.set_weights(ticket.dense_weights)
        dense_acc = dense.evaluate(x_test, y_test, return_dict=True)["accuracy"]

        control = mlp(seed, args.lr)
        pruning.random_reinit(control, ticket.masks, seed=10_000 + seed)
        control.fit(x, y, callbacks=[pruning.MaskCallback(ticket.masks)], **fit)
        control_acc = control.evaluate(x_test, y_test, return_dict=True)["accuracy"]

        rows.append((dense_acc, ticket_acc, control_acc))
        print(f" {seed:4d}  {dense_acc:6.2%}  {ticket_acc:16.2%}  {control_acc:21.2%}  "
              f"{pruning.sparsity(model):9.2%}")
    dense_m, ticket_m, control_m = np.mean(rows, axis=0)
    print(f" mean  {dense_m:6.2%}  {ticket_m:16.2%}  {control_m:21.2%}")
    print(f"ticket - dense: {100 * (ticket_m - dense_m):+.2f} points; control - dense: "
          f"{100 * (control_m - dense_m):+.2f} points  ({time.perf_counter() - t0:.0f} s on "
          f"{cydnn.get_num_threads()} thread(s))")


if __name__ == "__main__":
    main()
