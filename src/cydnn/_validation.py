"""Input checks, in one place: the Python layer checks once at the boundary; kernels trust inputs."""
import numpy as np


def describe(obj):
    """What a layer or function calls itself in an error: Dense 'dense_1'."""
    name = getattr(obj, "name", None)
    return f"{type(obj).__name__} '{name}'" if name else str(obj)


class ShapeOnly:
    """Stands in for an array in shape checks, which read only ``.shape`` (a layer's
    check_input, check_shape): unknown sizes (None) count as 1."""

    def __init__(self, shape):
        self.shape = tuple(1 if s is None else s for s in shape)


def as_float_array(x, dtype, who, what="input"):
    """x as a C-contiguous array of dtype. Numbers are converted (a copy only if needed);
    strings, objects and complex values are refused."""
    if isinstance(x, np.ndarray) and x.dtype == dtype and x.flags.c_contiguous:
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{who}: expected a numeric {what} (array of numbers), received dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def check_shape(x, expected, who, what="input"):
    """Check x.shape against expected (None = any size), batch axis included."""
    if len(x.shape) != len(expected):
        raise ValueError(f"{who}: expected {what} of rank {len(expected)} (shape {_fmt(expected)}), "
                         f"received shape {tuple(x.shape)}")
    for axis, (got, want) in enumerate(zip(x.shape, expected)):
        if want is not None and got != want:
            if axis == len(expected) - 1:
                raise ValueError(f"{who}: expected {what} with last dimension {want}, received shape {tuple(x.shape)}")
            raise ValueError(f"{who}: expected {what} of shape {_fmt(expected)}, received shape {tuple(x.shape)}")


def check_finite(x, who, what="input"):
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{who}: {what} contains NaN or inf (first at index {tuple(int(i) for i in bad)})")


def check_positive_int(value, who, name, allow_zero=False):
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{who}: expected {name} to be a {kind} int, received {name}={value!r}")
    return int(value)


def check_positive_float(value, who, name):
    """A finite float > 0 (epsilons, scales)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = None
    if v is None or isinstance(value, bool) or not np.isfinite(v) or v <= 0:
        raise ValueError(f"{who}: expected {name} to be a positive float, received {name}={value!r}")
    return v


def check_fraction(value, who, name, low_open=False, high_open=True):
    """A float in [0, 1) (by default)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = None
    if v is None or v < 0 or v > 1 or (low_open and v == 0) or (high_open and v == 1):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{who}: expected {name} in {lo}0, 1{hi}, received {name}={value!r}")
    return v


def unknown_identifier(kind, identifier, valid):
    kinds = kind + ("es" if kind.endswith("s") else "s")
    return ValueError(f"Unknown {kind} {identifier!r}. Valid {kinds}: {', '.join(sorted(valid))}")


def _fmt(shape):
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
