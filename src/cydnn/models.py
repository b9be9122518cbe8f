"""Keras's ``keras.models`` namespace: the model classes and loading a saved model.

The classes live in cydnn/engine (the model classes and the training loop); this module only
gathers their public names where a Keras user looks for them.
"""
from .engine.functional import Functional, Model
from .engine.sequential import Sequential
from .saving import load_model

__all__ = ["Sequential", "Model", "Functional", "load_model"]
