"""Layer (de)serialization by class name, and registration of custom layers and activations.

    @cydnn.register_serializable()
    class MyLayer(cydnn.layers.Layer): ...

makes ``MyLayer`` rebuildable from a saved config, as Keras' register_keras_serializable does.
Names resolve through the registry (registry.py), so this module needs none of the layers.
"""
from .. import registry
from ..registry import get_registered_object, register_serializable

__all__ = ["register_serializable", "get_registered_object", "layer_class", "serialize_layer", "deserialize_layer"]


def layer_class(class_name):
    cls = registry.lookup("layer", class_name)
    if cls is None or not isinstance(cls, type):
        raise ValueError(f"Unknown layer class {class_name!r}: a custom layer must be registered with "
                         f"@cydnn.register_serializable() before loading")
    return cls


def serialize_layer(layer):
    return {"class_name": getattr(type(layer), "_registered_name", type(layer).__name__),
            "config": layer.get_config()}


def deserialize_layer(config):
    return layer_class(config["class_name"]).from_config(config["config"])
