"""Activation functions by name, their compiled codes, and NumPy-callable forms.

Every activation is an elementwise (or, for softmax, row-wise) kernel in csrc/_activation.pxd;
``Activation`` objects carry the kernel code and the parameter ``alpha`` (leaky_relu, elu).
"""
import numpy as np

from . import threads
from ._kernels import activations as _k
from ._validation import unknown_identifier
from .registry import get_registered_object

# code, default alpha; the codes are the kernels' (csrc/_activation.pxd, exported by name)
_DEFAULT_ALPHA = {"leaky_relu": 0.2, "elu": 1.0}
_CODES = {name: (code, _DEFAULT_ALPHA.get(name, 0.0)) for name, code in _k.CODES.items()}
_ALIASES = {None: "linear", "binary_step": "heaviside", "step": "heaviside", "silu": "swish",
            "atan": "arctan", "identity": "linear"}

SOFTMAX_CODE = _CODES["softmax"][0]
LINEAR_CODE = _CODES["linear"][0]


class Activation:
    """An activation function: ``f(x)`` applies it; ``derivative`` gives dL/dz from dL/dy."""

    def __init__(self, name, alpha=None):
        self.name = name
        self.code, default_alpha = _CODES[name]
        self.alpha = float(default_alpha if alpha is None else alpha)

    def __call__(self, x):
        x = np.asarray(x)
        x = np.ascontiguousarray(x, dtype=x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
        y = np.empty_like(x)
        self.forward(x, y)
        return y

    def forward(self, z, y):
        """y := f(z) for C-contiguous float arrays of the same shape (softmax over the last axis)."""
        _k.activation_forward(self.code, self.alpha, _rows(z), _rows(y), threads.get_num_threads())

    def backward(self, z, y, dy, dz):
        """dz := dy * f'(z) (softmax: the Jacobian-vector product over the last axis)."""
        _k.activation_backward(self.code, self.alpha, _rows(z), _rows(y), _rows(dy), _rows(dz),
                               threads.get_num_threads())

    def get_config(self):
        return self.name if self.alpha == _CODES[self.name][1] else {"name": self.name, "alpha": self.alpha}

    def __repr__(self):
        return f"Activation({self.name!r})" if self.alpha == _CODES[self.name][1] else \
            f"Activation({self.name!r}, alpha={self.alpha})"

    def __eq__(self, other):
        return isinstance(other, Activation) and (self.code, self.alpha) == (other.code, other.alpha)

    def __hash__(self):
        return hash((self.code, self.alpha))


def _rows(a):
    """2-D view with the last axis as rows of the kernel (scalars and vectors become one row)."""
    return a.reshape(-1, a.shape[-1]) if a.ndim >= 1 and a.size else a.reshape(1, -1)


def get(identifier):
    """An Activation from a name ('relu'), a config dict, an Activation, or None (linear)."""
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, dict):
        if "class_name" in identifier:  # a custom Activation subclass, registered for saving
            cls = get_registered_object(identifier["class_name"])
            if cls is None:
                raise ValueError(f"Unknown activation class {identifier['class_name']!r}: register it with "
                                 f"@cydnn.register_serializable() (or pass custom_objects when loading)")
            config = identifier.get("config") or {}
            return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)
        return Activation(_resolve(identifier.get("name")), identifier.get("alpha"))
    if identifier is None or isinstance(identifier, str):
        return Activation(_resolve(identifier))
    raise TypeError(f"Expected an activation name (str), received {identifier!r}. "
                    f"Valid activations: {', '.join(sorted(_CODES))}")


def serialize(activation):
    act = get(activation)
    if type(act) is not Activation:  # a custom subclass: saved under its registered class name
        return {"class_name": getattr(type(act), "_registered_name", type(act).__name__), "config": act.get_config()}
    return act.get_config()


def _resolve(name):
    key = _ALIASES.get(name, name)
    if isinstance(key, str):
        key = _ALIASES.get(key.lower(), key.lower())
    if key not in _CODES:
        raise unknown_identifier("activation", name, list(_CODES) + [a for a in _ALIASES if a])
    return key


def _make(name):
    def fn(x, alpha=None):
        return Activation(name, alpha)(x)
    fn.__name__ = name
    fn.__doc__ = f"Apply {name} elementwise (softmax: over the last axis) to an array."
    return fn


linear = _make("linear"); heaviside = _make("heaviside"); sign = _make("sign")
sigmoid = _make("sigmoid"); tanh = _make("tanh"); arctan = _make("arctan"); relu = _make("relu")
leaky_relu = _make("leaky_relu"); elu = _make("elu"); softplus = _make("softplus")
gelu = _make("gelu"); swish = _make("swish"); selu = _make("selu"); softsign = _make("softsign")
relu6 = _make("relu6"); hard_sigmoid = _make("hard_sigmoid"); exponential = _make("exponential")
softmax = _make("softmax")
