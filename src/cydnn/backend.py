"""Default float type (float32; float64 for gradient checks) and the global random generator."""
import numpy as np

_FLOATX = np.dtype(np.float32)
_ALLOWED = (np.dtype(np.float32), np.dtype(np.float64))
_rng = np.random.default_rng()

__all__ = ["floatx", "set_floatx", "set_random_seed", "rng"]


def floatx():
    """The dtype new layers use when none is given: 'float32' (default) or 'float64'."""
    return _FLOATX.name


def set_floatx(dtype):
    """Set the default dtype of new layers: 'float32' or 'float64'."""
    global _FLOATX
    _FLOATX = as_float_dtype(dtype, "set_floatx")


def as_float_dtype(dtype, who):
    try:
        d = np.dtype(dtype)
    except TypeError:
        d = None
    if d not in _ALLOWED:
        raise ValueError(f"{who}: expected dtype 'float32' or 'float64', received dtype={dtype!r}")
    return d


def set_random_seed(seed):
    """Seed cydnn's generator (weight initialisers, dropout, shuffling) and NumPy's legacy one."""
    global _rng
    _rng = np.random.default_rng(seed)
    np.random.seed(seed)


def rng():
    """The generator every random operation in cydnn draws from."""
    return _rng
