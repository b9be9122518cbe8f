"""Layer (de)serialization by class name, and registration of custom layers and activations.

    @cydnn.register_serializable()
    class MyLayer(cydnn.layers.Layer): ...

makes ``MyLayer`` rebuildable from a saved config, as Keras' register_keras_serializable does.
"""
_CUSTOM = {}


def register_serializable(package="Custom", name=None):
    """Class decorator: register a Layer (or any class with get_config/from_config) under
    ``package>name`` (and its bare name) so saved models that use it can be loaded."""
    def decorate(obj):
        key = name or obj.__name__
        _CUSTOM[f"{package}>{key}"] = obj
        _CUSTOM[key] = obj
        obj._registered_name = f"{package}>{key}"
        return obj
    return decorate


def get_registered_object(name):
    return _CUSTOM.get(name)


def layer_class(class_name):
    from . import layers
    cls = _CUSTOM.get(class_name) or getattr(layers, class_name, None)
    if cls is None or not isinstance(cls, type):
        raise ValueError(f"Unknown layer class {class_name!r}: a custom layer must be registered with "
                         f"@cydnn.register_serializable() before loading")
    return cls


def serialize_layer(layer):
    return {"class_name": getattr(type(layer), "_registered_name", type(layer).__name__),
            "config": layer.get_config()}


def deserialize_layer(config):
    return layer_class(config["class_name"]).from_config(config["config"])
