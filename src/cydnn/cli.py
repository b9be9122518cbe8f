"""The ``cydnn`` command: ``cydnn demo`` trains a network on the bundled digits and prints its
accuracy and time; ``cydnn info`` shows the build (OpenMP, threads, BLAS)."""
import argparse
import sys
import time


def _digits(flat):
    from . import datasets
    (x_tr, y_tr), (x_te, y_te) = datasets.load_digits()
    x_tr = x_tr.astype("float32") / 16.0
    x_te = x_te.astype("float32") / 16.0
    if flat:
        return (x_tr.reshape(len(x_tr), -1), y_tr), (x_te.reshape(len(x_te), -1), y_te)
    return (x_tr[..., None], y_tr), (x_te[..., None], y_te)


def demo_model(kind):
    """The demo networks: 'cnn' (the default) or 'mlp'."""
    from . import Sequential, layers
    if kind == "cnn":
        return Sequential([
            layers.InputLayer(shape=(8, 8, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ], name="digits_cnn")
    return Sequential([
        layers.InputLayer(shape=(64,)),
        layers.Dense(256, activation="relu"),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], name="digits_mlp")


def demo(args):
    import cydnn
    if args.threads:
        cydnn.set_num_threads(args.threads)
    cydnn.set_random_seed(args.seed)
    kind = args.model or "cnn"
    epochs = args.epochs or (30 if kind == "cnn" else 15)
    (x_tr, y_tr), (x_te, y_te) = _digits(flat=kind == "mlp")
    model = demo_model(kind)
    model.compile(optimizer=cydnn.optimizers.Adam(2e-3 if kind == "cnn" else 1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    print(f"cydnn {cydnn.__version__}: training a {kind.upper()} on the bundled UCI digits "
          f"({len(x_tr)} train / {len(x_te)} test images, 8x8) with {cydnn.get_num_threads()} thread(s)")
    model.summary()
    t0 = time.perf_counter()
    model.fit(x_tr, y_tr, batch_size=32, epochs=epochs, verbose=args.verbose)
    seconds = time.perf_counter() - t0
    loss, acc = model.evaluate(x_te, y_te, batch_size=256)
    print(f"test accuracy {acc * 100:.2f}%  (test loss {loss:.4f})  training time {seconds:.2f} s "
          f"for {epochs} epochs")
    return 0 if acc >= 0.9 else 1


def info(args):
    import cydnn
    from threadpoolctl import threadpool_info
    print(f"cydnn {cydnn.__version__}")
    print(f"OpenMP: {'yes' if cydnn.openmp_enabled() else 'NO (serial build)'}; threads: {cydnn.get_num_threads()}")
    for lib in threadpool_info():
        print(f"  {lib['internal_api']:<10} {lib.get('version') or '':<14} threads={lib['num_threads']}  {lib['filepath']}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="cydnn", description=__doc__)
    sub = ap.add_subparsers(dest="command")
    d = sub.add_parser("demo", help="train a network on the bundled digits and print accuracy and time")
    d.add_argument("--model", choices=["cnn", "mlp"], default=None)
    d.add_argument("--epochs", type=int, default=None, help="default: 30 (cnn), 15 (mlp)")
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2])
    sub.add_parser("info", help="show the build: OpenMP, threads, BLAS")
    args = ap.parse_args(argv)
    if args.command == "demo":
        return demo(args)
    if args.command == "info":
        return info(args)
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
