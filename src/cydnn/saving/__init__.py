"""Saving and loading models and weights: one self-checking zip file per save.

    model.save("digits.cydnn")                 # architecture, weights, compile settings, optimizer state
    model = cydnn.load_model("digits.cydnn")   # built, weights loaded, compiled: fit() resumes training
    model.save_weights("digits.weights.npz")   # weights only, by layer name
    model.load_weights("digits.weights.npz", skip_mismatch=True)

File layout (a plain zip archive; ``unzip -l`` lists it, ``numpy.load`` reads the arrays):

    config.json                      format name and version, cydnn version, kind ("model" or
                                     "weights"), the model's class and get_config(), its input
                                     shapes, the compile settings, the weight manifest, the
                                     optimizer state manifest and the random generators' state
    weights/<k>_<layer>/<i>_<w>.npy  one array per weight (the manifest maps them to layer names)
    optimizer/<slot>.npy             the optimizer's flat slot buffers (momentum, Adam moments...)
    <zip comment>                    "cydnn-sha256:" + the SHA-256 of every byte before the digest

The checksum makes any damage detectable: a truncated file, a flipped byte anywhere (even in a
zip timestamp the zip CRCs do not cover) or a foreign file raises ``ModelFileError`` (a
ValueError) naming the file and what is wrong, before anything is built.

Optimizer slots are flat buffers laid out like the model's flat parameter buffer
(``Network._layout``: (layer name, weight index) -> (offset, size)); the layout is saved with
them and the loaded optimizer's slots are re-mapped onto the new model's layout.

Writes are atomic: the file is written to a temporary file in the same directory, flushed,
fsync'ed and renamed over the target with ``os.replace``; a save that fails part-way leaves
the previous file untouched and no temporary file behind.

What "resume" means. ``load_model`` restores the weights, the optimizer (its config, step
count and slots) and the compile settings, so the next ``fit`` takes exactly the steps the
original model would have taken -- given the same batches. Batches depend on the shuffling
generator (``cydnn.backend.rng()``), and Dropout draws from it too. ``load_model`` itself never
disturbs that generator (building the layers draws initial weights; the generator's state is
restored afterwards), so within one process "train 2 epochs, save, load, train 2 more" equals
"train 4 epochs", bit for bit (tests/test_saving.py checks it with SGD momentum and Adam,
BatchNormalization and Dropout). Across processes, pass ``restore_rng=True``: the file holds
the generator's state at save time (and that of layers with their own seeded generator, e.g.
``Dropout(seed=...)``), and loading puts it back. Not saved: callbacks' own state (early
stopping counters, a PruningCallback's masks -- ``pruning.masks_from_weights`` recovers those),
the History, and the epoch number (pass ``initial_epoch`` to fit if a schedule keys on it).
"""
from .container import FORMAT_VERSION, CorruptFileError, ModelFileError, NewerFormatError, UnknownObjectError
from .model_file import custom_object_scope, load_model, load_weights, save_model, save_weights
from ..registry import register_serializable
from .serialization import deserialize_layer, serialize_layer

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "ModelFileError", "CorruptFileError",
           "NewerFormatError", "UnknownObjectError", "custom_object_scope", "FORMAT_VERSION",
           "register_serializable", "serialize_layer", "deserialize_layer"]
