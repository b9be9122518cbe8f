"""Weight penalties added to the loss: L1, L2 and L1L2 (Keras names and defaults)."""
from . import threads
from ._kernels import optim as _k
from ._validation import unknown_identifier


class L1L2:
    """penalty = l1 * sum(|w|) + l2 * sum(w^2); its gradient is added to the weight's gradient."""

    def __init__(self, l1=0.0, l2=0.0):
        for name, v in (("l1", l1), ("l2", l2)):
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{type(self).__name__}: expected {name} >= 0, received {name}={v!r}")
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, weight):
        """The penalty of one weight array."""
        return _k.l1_l2_penalty(weight.reshape(-1), None, self.l1, self.l2, threads.get_num_threads())

    def add_gradient(self, weight, grad):
        """grad += d(penalty)/d(weight); return the penalty."""
        return _k.l1_l2_penalty(weight.reshape(-1), grad.reshape(-1), self.l1, self.l2,
                                threads.get_num_threads())

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self):
        return f"{type(self).__name__}(l1={self.l1}, l2={self.l2})"


class L1(L1L2):
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2
_REGISTRY = {"l1": L1, "l2": L2, "l1_l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2}


def get(identifier):
    if identifier is None or isinstance(identifier, L1L2):
        return identifier
    if isinstance(identifier, dict):
        return _REGISTRY[identifier["class_name"]](**identifier.get("config", {}))
    if isinstance(identifier, str) and identifier in _REGISTRY:
        return _REGISTRY[identifier]()
    raise unknown_identifier("regularizer", identifier, ["l1", "l2", "l1_l2"])


def serialize(reg):
    return None if reg is None else {"class_name": type(reg).__name__, "config": reg.get_config()}
