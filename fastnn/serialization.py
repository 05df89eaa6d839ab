"""``save`` / ``load`` for state dicts: a NumPy ``.npz`` archive, no pickle, written atomically.

The file is a zip of ``.npy`` members (what ``np.savez`` writes, readable by ``np.load``) plus a
``__fastnn__.npy`` member: a JSON manifest (as uint8 bytes) that marks the file as fastnn's and
records the structure -- key order, nesting (an optimizer's ``{"state": ..., "param_groups": ...}``,
a checkpoint ``{"model": ..., "epoch": 3}``), key types and plain Python values. Arrays are
written and read with ``allow_pickle=False``, so loading a file never executes code.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

FORMAT = "fastnn.state"
VERSION = 1
MANIFEST = "__fastnn__"


def _leaf_array(value, where):
    from .tensor import Tensor

    array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
    if array.dtype.hasobject:
        raise TypeError(f"save: {where} is an object array; only numeric/bool/string arrays can be saved "
                        "without pickle")
    return array


class _Writer:
    """Turns a nested structure into (manifest tree, [(member name, array)])."""

    def __init__(self):
        self.arrays = []
        self.names = set()

    def member(self, path):
        name = "/".join(str(k) for k in path) or "value"
        if name in self.names or name == MANIFEST or name.startswith("/") or "\\" in name or ".." in name:
            name = f"__array_{len(self.arrays)}"
        self.names.add(name)
        return name

    def node(self, value, path):
        from .tensor import Tensor

        where = "key " + "/".join(repr(k) for k in path) if path else "the object"
        if isinstance(value, Mapping):
            items = []
            for key, sub in value.items():
                if isinstance(key, bool) or not isinstance(key, (str, numbers.Integral)):
                    raise TypeError(f"save: {where} has a key {key!r} of type {type(key).__name__}; "
                                    "keys must be str or int")
                kind = "str" if isinstance(key, str) else "int"
                items.append([kind, key if kind == "str" else int(key), self.node(sub, path + (key,))])
            return {"dict": items}
        if isinstance(value, (list, tuple)):
            kind = "list" if isinstance(value, list) else "tuple"
            return {kind: [self.node(sub, path + (i,)) for i, sub in enumerate(value)]}
        if value is None or isinstance(value, (bool, str)):
            return {"value": value}
        if isinstance(value, numbers.Integral) and not isinstance(value, np.generic):
            return {"value": int(value)}
        if isinstance(value, float) and not isinstance(value, np.generic):
            if not math.isfinite(value):
                return {"float": repr(value)}  # JSON has no nan/inf
            return {"value": value}
        if isinstance(value, (np.ndarray, np.generic, Tensor)):
            array = _leaf_array(value, where)
            name = self.member(path)
            self.arrays.append((name, array))
            return {"array": name}
        raise TypeError(f"save: {where} is a {type(value).__name__}; expected arrays, Tensors, numbers, "
                        "str, None, or dicts/lists/tuples of them")


def _write_zip(f, manifest, arrays):
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in [(MANIFEST, manifest)] + arrays:
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def _file_mode(path):
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def save(obj, path) -> None:
    """Save a state dict (or a nested dict of them) to ``path``, atomically and without pickle.

    Args:
        obj: a mapping of str (or int) keys to ``np.ndarray`` s, ``fastnn.Tensor`` s, numbers,
            strings or None, possibly nested (dicts, lists, tuples), e.g. ``model.state_dict()``,
            ``optimizer.state_dict()`` or ``{"model": ..., "optimizer": ..., "epoch": 3}``.
        path: file name (a ``.npz`` suffix is customary, not added) or a writable binary file object.
    The file is written to a temporary file in the same folder, flushed to disk and renamed over
    ``path``, so ``path`` always holds either the old file or the complete new one.
    Raises:
        TypeError for values that would need pickle (object arrays, arbitrary objects).
    Example:
        >>> fastnn.save(model.state_dict(), "model.npz")
    """
    writer = _Writer()
    tree = writer.node(obj, ())
    header = {"format": FORMAT, "version": VERSION, "tree": tree}
    manifest = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    if hasattr(path, "write"):
        _write_zip(path, manifest, writer.arrays)
        return
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: folder {folder!r} of {path!r} does not exist")
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            _write_zip(f, manifest, writer.arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _rebuild(node, arrays, where):
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError(f"{where}: malformed fastnn manifest node {node!r}")
    (kind, body), = node.items()
    if kind == "dict":
        out = OrderedDict()
        for key_kind, key, sub in body:
            out[str(key) if key_kind == "str" else int(key)] = _rebuild(sub, arrays, where)
        return out
    if kind == "list":
        return [_rebuild(sub, arrays, where) for sub in body]
    if kind == "tuple":
        return tuple(_rebuild(sub, arrays, where) for sub in body)
    if kind == "value":
        return body
    if kind == "float":
        return float(body)
    if kind == "array":
        return arrays(body)
    raise ValueError(f"{where}: unknown fastnn manifest node kind {kind!r}")


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, UnicodeDecodeError)


def load(path):
    """Load what ``save`` wrote: an ``OrderedDict`` of name -> ``np.ndarray`` in the saved key order.

    Nested dicts come back as ``OrderedDict`` s, lists and tuples as lists and tuples, numbers,
    strings and None as themselves; every array as an ``np.ndarray`` with its saved dtype.
    Reading uses ``np.load(..., allow_pickle=False)``: no code is ever executed.

    Args:
        path: file name or a readable binary file object.
    Raises:
        FileNotFoundError if there is no such file; ValueError naming the file when it is not a
        zip archive, is truncated or corrupt, or is a zip/npz without fastnn's manifest.
    Example:
        >>> model.load_state_dict(fastnn.load("model.npz"))
    """
    where = repr(getattr(path, "name", "<file object>")) if hasattr(path, "read") else repr(os.fspath(path))
    expected = f"expected a fastnn state file written by fastnn.save (a zip with a {MANIFEST}.npy manifest)"
    if not hasattr(path, "read"):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"load: no such file: {path!r}")
        if os.path.isdir(path):
            raise IsADirectoryError(f"load: {path!r} is a folder; {expected}")
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("not a zip archive (or truncated)")
        if hasattr(path, "seek"):
            path.seek(0)
        with np.load(path, allow_pickle=False) as npz:
            if MANIFEST not in npz.files:
                raise ValueError(f"zip archive without {MANIFEST}.npy (members: {npz.files[:8]})")
            header = json.loads(bytes(npz[MANIFEST]).decode("utf-8"))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError(f"manifest format is {header.get('format') if isinstance(header, dict) else header!r}")
            if header.get("version", 0) > VERSION:
                raise ValueError(f"format version {header.get('version')} is newer than this fastnn "
                                 f"reads ({VERSION}); upgrade fastnn")

            def array(name):
                if name not in npz.files:
                    raise ValueError(f"member {name}.npy named by the manifest is missing")
                return npz[name]

            return _rebuild(header["tree"], array, where)
    except _READ_ERRORS as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError)):
            raise
        raise ValueError(f"load: {where} is not a readable fastnn state file: {exc}; {expected}") from exc
