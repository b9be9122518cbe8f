"""The cydnn model file as a container: a zip archive of config.json and .npy arrays, closed by
a SHA-256 of every byte before it, written atomically (temporary file, fsync, rename), and read
back with every check done before anything is built. What goes into it is model_file.py's.

See saving/__init__.py for the file layout."""
import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import zipfile

import numpy as np

FORMAT = "cydnn"
FORMAT_VERSION = 1
_CONFIG = "config.json"
_TRAILER_PREFIX = b"cydnn-sha256:"
_DIGEST_LEN = 64  # hex characters of a SHA-256


# ==================================================================== errors
class ModelFileError(ValueError):
    """A file that cannot be loaded: foreign, damaged, too new, or not matching the model.
    The message starts with the file's path; ``.path`` holds it."""

    def __init__(self, path, problem):
        self.path = path
        super().__init__(f"{path}: {problem}")


class CorruptFileError(ModelFileError):
    """The file is truncated or damaged (its checksum or structure does not hold)."""


class NewerFormatError(ModelFileError):
    """The file was written by a newer cydnn with a format this version cannot read."""


class UnknownObjectError(ModelFileError):
    """The file names a class (layer, activation, loss, optimizer...) that is not known here."""


# ==================================================================== the container
def _to_json(obj, path, what):
    def default(o):
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.bool_):
            return bool(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (tuple, set)):
            return list(o)
        raise TypeError(f"object of type {type(o).__name__} is not JSON serializable: {o!r}")
    try:
        return json.dumps(obj, default=default, indent=1, sort_keys=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError(f"save {path}: cannot write the {what} as JSON ({e}). Every get_config() must return "
                        f"plain values (numbers, strings, lists, dicts)") from e


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))[:64] or "_"


def _write_archive(path, config, arrays):
    """Write config.json and the arrays ({entry name: array}) to ``path`` atomically, with the
    checksum trailer as the zip comment."""
    path = os.fspath(path)
    config_bytes = _to_json(config, path, "config")  # fails before any file is touched
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _create_temp(directory, os.path.basename(path))
    try:
        with contextlib.suppress(OSError):  # overwriting keeps the file's permissions
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        with os.fdopen(fd, "w+b") as f:
            with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
                zf.writestr(zipfile.ZipInfo(_CONFIG, date_time=(1980, 1, 1, 0, 0, 0)), config_bytes,
                            compress_type=zipfile.ZIP_DEFLATED)
                for name, arr in arrays.items():
                    arr = np.asarray(arr)  # (not ascontiguousarray: it turns a 0-d weight into 1-d)
                    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                    with zf.open(info, "w", force_zip64=arr.nbytes > (1 << 30)) as entry:
                        np.lib.format.write_array(entry, arr, allow_pickle=False)
                zf.comment = _TRAILER_PREFIX + b"0" * _DIGEST_LEN
            # the digest covers every byte before it (the zip comment is the file's last bytes)
            f.flush()
            size = f.seek(0, os.SEEK_END)
            f.seek(0)
            h = hashlib.sha256()
            remaining = size - _DIGEST_LEN
            while remaining > 0:
                chunk = f.read(min(remaining, 1 << 20))
                h.update(chunk)
                remaining -= len(chunk)
            f.seek(size - _DIGEST_LEN)
            f.write(h.hexdigest().encode("ascii"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _create_temp(directory, basename):
    """A new file next to the target, created with mode 0o666 so the umask applies as for any
    new file (tempfile.mkstemp would make it 0o600, and the rename would keep that)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{basename}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"save: cannot create a temporary file in {directory}")


class _Archive:
    """A verified cydnn file held in memory: ``config`` and ``array(name)``."""

    def __init__(self, path, kind):
        self.path = path = os.fspath(path)
        with open(path, "rb") as f:  # a missing file raises FileNotFoundError naming it
            data = f.read()
        self._zip = self._verify(path, data)
        try:
            raw = self._zip.read(_CONFIG)
            config = json.loads(raw.decode("utf-8"))
        except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, ValueError, OSError, EOFError) as e:
            raise CorruptFileError(path, f"config.json cannot be read ({type(e).__name__}: {e})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ModelFileError(path, "not a cydnn file: config.json does not declare format 'cydnn'")
        version = config.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise CorruptFileError(path, f"invalid format_version {version!r} in config.json")
        if version > FORMAT_VERSION:
            raise NewerFormatError(path, f"written by a newer cydnn (file format version {version}, "
                                         f"cydnn {config.get('cydnn_version', '?')}); this cydnn reads format "
                                         f"versions up to {FORMAT_VERSION}: upgrade cydnn to load it")
        if kind is not None and config.get("kind") not in kind:
            expected = " or ".join(repr(k) for k in kind)
            raise ModelFileError(path, f"expected a cydnn {expected} file, this one holds {config.get('kind')!r}"
                                 + (" (load it with cydnn.load_model, or save weights with model.save_weights)"
                                    if kind == ("model",) else ""))
        self.config = config

    @staticmethod
    def _verify(path, data):
        if len(data) == 0:
            raise CorruptFileError(path, "the file is empty (an interrupted copy or save?)")
        tail = data[-(len(_TRAILER_PREFIX) + _DIGEST_LEN):]
        if tail.startswith(_TRAILER_PREFIX):
            digest = hashlib.sha256(data[:-_DIGEST_LEN]).hexdigest().encode("ascii")
            if tail[len(_TRAILER_PREFIX):] != digest:
                raise CorruptFileError(path, "checksum mismatch: the file is corrupted (or was modified after it "
                                             "was saved)")
            try:
                return zipfile.ZipFile(io.BytesIO(data))
            except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:  # only if forged
                raise CorruptFileError(path, f"damaged zip structure ({e})") from None
        if not data.startswith(b"PK\x03\x04"):
            if len(data) < 4 and b"PK\x03\x04".startswith(data):
                raise CorruptFileError(path, f"truncated: only {len(data)} bytes")
            raise ModelFileError(path, f"not a cydnn file: expected a zip archive written by cydnn's save(), "
                                       f"the file starts with {data[:8]!r}")
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            names = set(zf.namelist())
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, IndexError) as e:
            raise CorruptFileError(path, f"truncated or corrupted: not a complete zip archive "
                                         f"({type(e).__name__}: {e})") from None
        if _CONFIG not in names:
            raise ModelFileError(path, "not a cydnn file: a zip archive without cydnn's config.json "
                                       "(a NumPy .npz or another tool's file?)")
        raise CorruptFileError(path, "truncated or modified: the checksum trailer cydnn writes at the end of "
                                     "the file is missing")

    def array(self, name, shape=None, dtype_kinds="f"):
        try:
            with self._zip.open(name) as f:
                arr = np.lib.format.read_array(f, allow_pickle=False)
        except KeyError:
            raise CorruptFileError(self.path, f"missing entry {name!r}") from None
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise CorruptFileError(self.path, f"entry {name!r} cannot be read ({type(e).__name__}: {e})") from None
        if arr.dtype.kind not in dtype_kinds or (shape is not None and tuple(arr.shape) != tuple(shape)):
            raise CorruptFileError(self.path, f"entry {name!r} holds {arr.dtype} {arr.shape}, the manifest "
                                              f"says {tuple(shape) if shape is not None else ''}")
        return arr


def _get(config, path, *keys):
    """config[k1][k2]... with a CorruptFileError naming the missing key."""
    cur = config
    for k in keys:
        try:
            cur = cur[k]
        except (KeyError, IndexError, TypeError):
            raise CorruptFileError(path, f"config.json lacks {'/'.join(str(x) for x in keys)!r}") from None
    return cur
