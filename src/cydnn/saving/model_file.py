"""Saving and loading models and weights: what goes into a cydnn model file (the model's class
and config, weights by layer name, compile settings, optimizer state, random generators) and
how a model is rebuilt from it. The file format itself is container.py's; the overview is in
saving/__init__.py."""
import contextlib
import os
import re
import warnings

import numpy as np

from .. import backend, losses, metrics, optimizers, registry
from ..version import __version__
from .container import (FORMAT, FORMAT_VERSION, CorruptFileError, ModelFileError, UnknownObjectError, _Archive,
                        _get, _safe, _write_archive)

# ==================================================================== custom objects
@contextlib.contextmanager
def custom_object_scope(custom_objects):
    """Make ``custom_objects`` ({name: class}) resolvable by name while loading, as if they had
    been registered with ``@cydnn.register_serializable()``; the registry is restored on exit."""
    table = registry.custom_objects()
    added = {}
    for key, obj in (custom_objects or {}).items():
        names = {key, getattr(obj, "__name__", key)}
        reg = getattr(obj, "_registered_name", None)
        if reg:
            names.add(reg)
        for n in names:
            added[n] = table.get(n, _MISSING)
            table[n] = obj
    try:
        yield
    finally:
        for n, old in added.items():
            if old is _MISSING:
                table.pop(n, None)
            else:
                table[n] = old


_MISSING = object()


def _class_key(obj):
    return getattr(type(obj), "_registered_name", type(obj).__name__)


def _resolve_class(kind, class_name, builtins, path):
    cls = registry.get_registered_object(class_name) or builtins.get(class_name)
    if cls is None:
        raise UnknownObjectError(path, f"unknown {kind} class {class_name!r}. If it is a custom class, decorate it "
                                       f"with @cydnn.register_serializable() before loading, or pass "
                                       f"custom_objects={{{class_name.split('>')[-1]!r}: {class_name.split('>')[-1]}}}")
    return cls


# ==================================================================== weights
def _weight_owners(model, who):
    """Layers that hold weights, in model order; their names must be unique."""
    owners = [layer for layer in model.layers if layer._params]
    names = [layer.name for layer in owners]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{who}: layer names must be unique to save weights by name; {dup} appear more than once "
                         f"in {type(model).__name__} '{model.name}'")
    return owners


def _weights_manifest(model, who):
    manifest, arrays = [], {}
    for k, layer in enumerate(_weight_owners(model, who)):
        entries = []
        for i, (wname, w) in enumerate((p.name, p.value) for p in layer._params):
            entry = f"weights/{k:04d}_{_safe(layer.name)}/{i}_{_safe(wname)}.npy"
            arrays[entry] = w
            entries.append({"name": wname, "shape": list(w.shape), "dtype": w.dtype.name, "entry": entry})
        manifest.append({"layer": layer.name, "class_name": _class_key(layer), "weights": entries})
    return manifest, arrays


def _read_weights(archive):
    """{layer name: (class_name, [(weight name, array)])} from the manifest, every array read
    and checked against it."""
    path = archive.path
    out = {}
    manifest = _get(archive.config, path, "weights")
    if not isinstance(manifest, list):
        raise CorruptFileError(path, "config.json 'weights' is not a list")
    for item in manifest:
        try:
            name, cls, entries = item["layer"], item["class_name"], item["weights"]
            specs = [(e["name"], e["entry"], tuple(e["shape"])) for e in entries]
        except (KeyError, TypeError) as e:
            raise CorruptFileError(path, f"malformed weight manifest entry {item!r} ({e})") from None
        out[name] = (cls, [(wname, archive.array(entry, shape)) for wname, entry, shape in specs])
    return out


def _plan_assignment(model, saved, path, skip_mismatch, by_name):
    """Pairs (layer, [arrays]) to assign, after checking every shape: nothing is assigned when
    any check fails (unless skip_mismatch, which skips those layers with a warning)."""
    owners = [layer for layer in model.layers if layer._params]
    plan, problems = [], []
    if by_name:
        names = [layer.name for layer in owners]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"load_weights {path}: layer names {dup} appear more than once in "
                             f"{type(model).__name__} '{model.name}'; load by position with by_name=False")
        if owners and not any(layer.name in saved for layer in owners):
            raise ModelFileError(path, f"no layer of {type(model).__name__} '{model.name}' ({names}) is in the "
                                       f"file (which holds {list(saved)}); layer names differ -- load by position "
                                       f"with by_name=False")
        pairs = [(layer, saved.get(layer.name)) for layer in owners]
    else:
        items = list(saved.items())
        if len(items) != len(owners) and not skip_mismatch:
            raise ModelFileError(path, f"the file holds weights for {len(items)} layers, {type(model).__name__} "
                                       f"'{model.name}' has {len(owners)} layers with weights")
        pairs = [(layer, items[k][1] if k < len(items) else None) for k, layer in enumerate(owners)]
    for layer, entry in pairs:
        if entry is None:
            problems.append((layer, f"layer '{layer.name}' has no weights in the file"))
            continue
        _, arrays = entry
        expected = [(p.name, p.value.shape) for p in layer._params]
        got = [(n, a.shape) for n, a in arrays]
        if [s for _, s in expected] != [s for _, s in got]:
            problems.append((layer, f"layer '{layer.name}' expects weights "
                                    f"{', '.join(f'{n} {s}' for n, s in expected)}; the file has "
                                    f"{', '.join(f'{n} {s}' for n, s in got) or 'none'}"))
            continue
        plan.append((layer, [a for _, a in arrays]))
    if problems:
        if not skip_mismatch:
            raise ModelFileError(path, "weights do not match the model: " + "; ".join(p for _, p in problems)
                                 + " (pass skip_mismatch=True to skip these layers)")
        for _, p in problems:
            warnings.warn(f"load_weights {path}: skipping {p}", stacklevel=3)
    return plan


def _assign(plan):
    for layer, arrays in plan:
        for cur, new in zip(layer.weights, arrays):
            np.copyto(cur, new.astype(cur.dtype, copy=False))


# ==================================================================== compile settings
def _serialize_compile(model, path):
    def loss_spec(s):
        if s is None or isinstance(s, str):
            return s
        if isinstance(s, losses.Loss):
            return {"class_name": _class_key(s), "config": s.get_config()}
        if isinstance(s, type) and issubclass(s, losses.Loss):
            return {"class_name": getattr(s, "_registered_name", s.__name__), "config": {}}
        raise TypeError(f"save {path}: cannot save loss {s!r}: use a loss name or a cydnn.losses.Loss")

    def metric_spec(m):
        if isinstance(m, str):
            return m
        if isinstance(m, (list, tuple)):
            return [metric_spec(x) for x in m]
        if isinstance(m, dict):
            return {k: metric_spec(v) for k, v in m.items()}
        if hasattr(m, "get_config"):
            return {"class_name": _class_key(m), "config": m.get_config()}
        raise TypeError(f"save {path}: cannot save metric {m!r}: use a metric name or a cydnn.metrics.Metric")

    spec = model._loss_spec
    if isinstance(spec, dict):
        loss = {"dict": {k: loss_spec(v) for k, v in spec.items()}}
    elif isinstance(spec, (list, tuple)):
        loss = {"list": [loss_spec(v) for v in spec]}
    else:
        loss = {"single": loss_spec(spec)}
    opt = model.optimizer
    try:
        opt_config = {"class_name": _class_key(opt), "config": opt.get_config()}
    except Exception as e:
        raise TypeError(f"save {path}: cannot serialize the optimizer {type(opt).__name__}: {e}") from e
    return {"optimizer": opt_config, "loss": loss, "metrics": metric_spec(model._metric_spec or []),
            "loss_weights": model._loss_weights}


def _deserialize_compile(cfg, path):
    def loss_obj(s):
        if s is None or isinstance(s, str):
            return s
        cls = _resolve_class("loss", s["class_name"], losses._CLASSES, path)
        return cls(**s.get("config", {}))

    def metric_obj(m):
        if isinstance(m, str):
            return m
        if isinstance(m, list):
            return [metric_obj(x) for x in m]
        if isinstance(m, dict) and "class_name" not in m:
            return {k: metric_obj(v) for k, v in m.items()}
        builtins = {c.__name__: c for c in vars(metrics).values() if isinstance(c, type)}
        cls = _resolve_class("metric", m["class_name"], builtins, path)
        return cls.from_config(m["config"]) if hasattr(cls, "from_config") else cls(**m.get("config", {}))

    o = _get(cfg, path, "optimizer")
    opt_cls = _resolve_class("optimizer", _get(o, path, "class_name"), optimizers._CLASSES, path)
    optimizer = opt_cls.from_config(o.get("config", {}))
    loss = _get(cfg, path, "loss")
    if "dict" in loss:
        loss = {k: loss_obj(v) for k, v in loss["dict"].items()}
    elif "list" in loss:
        loss = [loss_obj(v) for v in loss["list"]]
    else:
        loss = loss_obj(_get(loss, path, "single"))
    return dict(optimizer=optimizer, loss=loss, metrics=metric_obj(cfg.get("metrics") or []) or None,
                loss_weights=cfg.get("loss_weights"))


# ==================================================================== random generators
def _rng_states(model):
    layers = {layer.name: layer._rng.bit_generator.state for layer in model.layers
              if isinstance(getattr(layer, "_rng", None), np.random.Generator)}
    return {"global": backend.rng().bit_generator.state, "layers": layers}


def _restore_rngs(model, states, path):
    try:
        if states.get("global") is not None:
            backend.rng().bit_generator.state = states["global"]
        for layer in model.layers:
            st = states.get("layers", {}).get(layer.name)
            if st is not None and isinstance(getattr(layer, "_rng", None), np.random.Generator):
                layer._rng.bit_generator.state = st
    except (TypeError, ValueError, KeyError) as e:
        raise ModelFileError(path, f"cannot restore the random generator state ({e})") from None


@contextlib.contextmanager
def _rng_untouched():
    """Building layers draws initial weights from cydnn's generator; loading overwrites those
    weights, so put the generator back where it was (loading must not change later shuffles)."""
    gen = backend.rng()
    state = gen.bit_generator.state
    legacy = np.random.get_state()
    try:
        yield
    finally:
        gen.bit_generator.state = state
        np.random.set_state(legacy)


# ==================================================================== model classes
def _model_classes():
    return registry.builtins("model")  # Sequential, Model/Functional: added by their modules


def _layer_class_names(config):
    """Every layer class name a model config mentions (to report unknown ones up front)."""
    found = []
    if isinstance(config, dict):
        for layer in config.get("layers", []) or []:
            if isinstance(layer, dict) and "class_name" in layer:
                found.append(layer["class_name"])
                found += _layer_class_names(layer.get("config"))
    return found


# ==================================================================== public API
def save_model(model, path):
    """Write the whole model to ``path`` (one zip file, atomically): its class and config,
    weights, compile settings and optimizer state. Reload it with ``cydnn.load_model``."""
    if not hasattr(model, "get_config"):
        raise TypeError(f"save: expected a cydnn model, received {model!r}")
    path = os.fspath(path)
    who = f"save {path}"
    try:
        model_config = model.get_config()
    except NotImplementedError as e:
        raise TypeError(f"{who}: {type(model).__name__} '{model.name}' has no get_config(): {e}") from e
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "cydnn_version": __version__, "kind": "model",
              "model": {"class_name": getattr(type(model), "_registered_name", type(model).__name__),
                        "config": model_config},
              "built": bool(model.built),
              "input_shapes": [list(s) for s in model.input_shapes] if model.built else None}
    arrays = {}
    if model.built:
        config["weights"], arrays = _weights_manifest(model, who)
    else:
        config["weights"] = []
    config["compile"] = None
    config["optimizer_state"] = None
    if model.compiled:
        config["compile"] = _serialize_compile(model, path)
        state = model.optimizer.get_state()
        slots = state["slots"]
        layout = [[name, idx, off, n] for (name, idx), (off, n) in model._layout.items()]
        total = sum(n for _, _, _, n in layout)
        if any(v.ndim != 1 or v.shape[0] != total for v in slots.values()):
            warnings.warn(f"{who}: the optimizer's slots do not match the model's parameter layout (was the "
                          f"optimizer used elsewhere?); its slots are not saved", stacklevel=3)
            slots = {}
        entries = {}
        for k, (name, value) in enumerate(sorted(slots.items())):
            entry = f"optimizer/{k:02d}_{_safe(name)}.npy"
            arrays[entry] = value
            entries[name] = entry
        config["optimizer_state"] = {"iterations": int(state["iterations"]), "slots": entries, "layout": layout}
    config["rng"] = _rng_states(model)
    _write_archive(path, config, arrays)


def load_model(path, custom_objects=None, compile=True, restore_rng=False):
    """Rebuild a model saved with ``model.save(path)``: built, weights loaded and (when it was
    compiled and ``compile``) compiled with its optimizer's step count and slots, so ``fit``
    resumes where it stopped. ``custom_objects`` ({name: class}) resolves custom layers,
    activations, losses or optimizers that were not registered with
    ``@cydnn.register_serializable()``. ``restore_rng=True`` also restores cydnn's random
    generator (shuffling, dropout) to its state at save time, for exact resumption in another
    process. Raises ModelFileError (a ValueError) for foreign, damaged or too new files."""
    archive = _Archive(path, kind=("model",))
    path, config = archive.path, archive.config
    saved = _read_weights(archive)  # every array read and checked before anything is built
    model_cfg = _get(config, path, "model")
    with custom_object_scope(custom_objects):
        cls = _resolve_class("model", _get(model_cfg, path, "class_name"), _model_classes(), path)
        for name in _layer_class_names(model_cfg.get("config")):
            if not isinstance(registry.lookup("layer", name), type):
                _resolve_class("layer", name, {}, path)  # raises UnknownObjectError
        with _rng_untouched():
            try:
                model = cls.from_config(_get(model_cfg, path, "config"))
                if config.get("built") and not model.built:
                    shapes = [tuple(s) for s in _get(config, path, "input_shapes")]
                    model.build(shapes if len(shapes) > 1 else shapes[0])
            except ModelFileError:
                raise
            except Exception as e:  # a config this cydnn cannot build: say so, naming the file
                unknown = re.match(r"Unknown (\w+) class '([^']+)'", str(e))
                if unknown:  # e.g. an unregistered layer nested in a wrapper
                    _resolve_class(unknown.group(1), unknown.group(2), {}, path)
                raise ModelFileError(path, f"cannot rebuild the {model_cfg.get('class_name')} from its config "
                                           f"({type(e).__name__}: {e})") from e
        if model.built:
            _assign(_plan_assignment(model, saved, path, skip_mismatch=False, by_name=True))
        compile_cfg = config.get("compile")
        if compile and compile_cfg:
            try:
                kwargs = _deserialize_compile(compile_cfg, path)
                model.compile(**kwargs)
            except ModelFileError:
                raise
            except Exception as e:
                raise ModelFileError(path, f"cannot restore the compile settings ({type(e).__name__}: {e})") from e
            _restore_optimizer(model, archive, config.get("optimizer_state"), path)
    if restore_rng and config.get("rng"):
        _restore_rngs(model, config["rng"], path)
    return model


def _restore_optimizer(model, archive, state, path):
    if not state:
        return
    try:
        layout = {(name, int(idx)): (int(off), int(n)) for name, idx, off, n in state["layout"]}
        iterations = int(state["iterations"])
        entries = dict(state["slots"])
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptFileError(path, f"malformed optimizer state ({e})") from None
    total = sum(n for _, n in layout.values())
    slots = {name: archive.array(entry, (total,)) for name, entry in entries.items()}
    if not model.built:
        model.optimizer.set_state({"iterations": iterations, "slots": {}})
        return
    model._pack_parameters()
    opt = model.optimizer
    opt.set_state({"iterations": iterations, "slots": slots})
    dtype = model._params.dtype
    opt._slots = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in opt._slots.items()}
    if slots:
        opt.remap_slots(layout, model._layout)


def save_weights(model, path):
    """Write only the weights of ``model`` to ``path`` (one zip file, by layer name)."""
    path = os.fspath(path)
    who = f"save_weights {path}"
    if not model.built:
        raise ValueError(f"{who}: {type(model).__name__} '{model.name}' is not built, it has no weights yet; "
                         f"call build(input_shape) or fit/predict first")
    manifest, arrays = _weights_manifest(model, who)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "cydnn_version": __version__, "kind": "weights",
              "model_class": type(model).__name__, "model_name": model.name,
              "input_shapes": [list(s) for s in model.input_shapes], "weights": manifest}
    _write_archive(path, config, arrays)


def load_weights(model, path, skip_mismatch=False, by_name=True):
    """Load weights saved by ``save_weights`` (or ``save``) into ``model``.

    ``by_name=True`` matches layers by name (layers in the file that the model lacks are
    ignored, so a base network's weights load into a bigger model); ``by_name=False`` matches
    the layers that hold weights by position. A layer missing from the file or whose weight
    shapes differ raises ModelFileError, or with ``skip_mismatch=True`` is skipped with a
    warning. Every check runs before any weight is written. An unbuilt model is first built
    for the input shapes recorded in the file."""
    archive = _Archive(path, kind=("weights", "model"))
    saved = _read_weights(archive)
    if not model.built:
        shapes = archive.config.get("input_shapes")
        if not shapes:
            raise ModelFileError(archive.path, f"{type(model).__name__} '{model.name}' is not built and the file "
                                               f"records no input shape; call model.build(input_shape) first")
        shapes = [tuple(s) for s in shapes]
        model.build(shapes if len(shapes) > 1 else shapes[0])
    _assign(_plan_assignment(model, saved, archive.path, skip_mismatch, by_name))
