"""Training curves from a History (matplotlib is an optional extra: ``pip install cydnn[plot]``)."""
import os


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("History.plot needs matplotlib, which is not installed. Install it with "
                          "`pip install cydnn[plot]` (or `pip install matplotlib`).") from e
    return plt


def plot_history(history, metrics=None, path=None):
    """One subplot per quantity (loss, each metric), the training curve and, when present, the
    validation curve ('val_' + name) against the epoch (1-based).

    Args:
        history: a cydnn History (what fit returns) or its ``.history`` dict.
        metrics: names to plot, e.g. ``["loss", "accuracy"]`` ('val_' names are accepted and mean
            the same quantity). Default: every quantity except the learning rate (ask for
            ``"learning_rate"`` to see it).
        path: when given, the figure is also saved there as PNG.

    Returns: the matplotlib Figure (call ``plt.show()`` to display it in a script).
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise ValueError("History.plot: there is nothing to plot yet (the history is empty); call fit() first")
    epochs_logged = getattr(history, "epoch", None)
    available = [k for k in logs if not k.startswith("val_")] + \
                [k[4:] for k in logs if k.startswith("val_") and k[4:] not in logs]
    if metrics is None:
        names = [k for k in available if k != "learning_rate"]
    else:
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        names = [n[4:] if n.startswith("val_") else n for n in names]
        names = list(dict.fromkeys(names))  # keep order, drop repeats
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"History.plot: no recorded quantity {unknown}; recorded: {available}")
    if not names:
        raise ValueError(f"History.plot: nothing to plot; recorded: {available}")

    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    n = len(names)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for key, label, style in ((name, "training", "-o"), ("val_" + name, "validation", "-s")):
            values = logs.get(key)
            if values is None:
                continue
            x = [e + 1 for e in epochs_logged] if epochs_logged and len(epochs_logged) == len(values) \
                else list(range(1, len(values) + 1))
            ax.plot(x, values, style, markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if name == "learning_rate":
            ax.set_yscale("log")  # decays span decades; a rate has no validation curve to tell apart
        else:
            ax.legend()
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    if path is not None:
        folder = os.path.dirname(os.fspath(path))
        if folder:
            os.makedirs(folder, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
    return fig
