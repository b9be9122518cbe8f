"""The bottom floor: names -> classes. It imports nothing of cydnn, so any module may use it.

Two tables:
  * built-in classes by kind ("layer", "model"): each room adds its own public classes when it
    is imported (layers/__init__.py adds every layer under its Keras name and aliases; the model
    modules add Sequential and Model), so saving and serialization can resolve a class name
    without importing the rooms that define them;
  * custom objects: users' classes registered with ``@cydnn.register_serializable()`` (or passed
    as ``custom_objects`` while loading), consulted before the built-ins, as in Keras.
"""
_BUILTIN = {}
_CUSTOM = {}


def add(kind, name, cls):
    """Make the built-in ``cls`` resolvable as ``name`` of ``kind``."""
    _BUILTIN.setdefault(kind, {})[name] = cls
    return cls


def builtin(kind):
    """Class decorator: ``@registry.builtin("model")`` adds the class under its own name."""
    def decorate(cls):
        return add(kind, cls.__name__, cls)
    return decorate


def builtins(kind):
    """{name: class} of the built-ins of ``kind`` (a copy)."""
    return dict(_BUILTIN.get(kind, {}))


def lookup(kind, name):
    """The class ``name`` resolves to: a registered custom object first, then a built-in of
    ``kind``; None when neither knows it."""
    return _CUSTOM.get(name) or _BUILTIN.get(kind, {}).get(name)


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
    """The custom object registered as ``name``, or None."""
    return _CUSTOM.get(name)


def custom_objects():
    """The live table of custom objects (saving's custom_object_scope edits it and restores it)."""
    return _CUSTOM
