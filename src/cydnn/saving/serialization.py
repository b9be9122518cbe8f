"""Layer (de)serialization by class name. Names resolve through the registry (registry.py, where
``@cydnn.register_serializable()`` adds custom layers), so this module needs none of the layers.
"""
from .. import registry

__all__ = ["layer_class", "serialize_layer", "deserialize_layer"]


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
