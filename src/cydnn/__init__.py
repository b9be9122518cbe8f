"""cydnn: neural networks for multi-core CPUs.

Compiled Cython + OpenMP kernels behind a Keras-like API:

    import cydnn
    from cydnn import layers
    model = cydnn.Sequential([layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=10)
"""
from .version import __version__

from . import (activations, backend, callbacks, datasets, initializers, layers, losses, metrics,
               optimizers, regularizers, schedules)
from .backend import floatx, set_floatx, set_random_seed
from .engine.functional import Input, Model
from .engine.sequential import Sequential
from .perceptron import Perceptron
from .registry import register_serializable
from .saving import load_model
from . import models, pruning, saving
from .threads import get_num_threads, openmp_enabled, set_num_threads

__all__ = [
    "Sequential", "Perceptron", "layers", "activations", "losses", "metrics", "optimizers",
    "initializers", "regularizers", "schedules", "callbacks", "datasets", "backend", "set_num_threads",
    "get_num_threads", "openmp_enabled", "set_floatx", "floatx", "set_random_seed",
    "register_serializable", "__version__",
]
__all__ += ["load_model", "models", "pruning", "saving"]
__all__ += ["Input", "Model"]
