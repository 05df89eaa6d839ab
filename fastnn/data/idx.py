"""IDX files (the MNIST format) and the MNIST / Fashion-MNIST data sets built on them.

An IDX file is a big-endian header -- two zero bytes, a type code, the number of dimensions, then
one uint32 per dimension -- followed by the raw data. MNIST-style files may be gzipped.
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

# type code -> big-endian dtype
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}

IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dimension (N,)


def _read_bytes(path):
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip file ({exc})") from exc
    with open(path, "rb") as f:
        return f.read()


def read_idx(path, expected_magic=None) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into an array of its native dtype (native byte order).

    Args:
        path: the file.
        expected_magic: the magic number the header must carry (e.g. 2051 for MNIST images), or None.
    Raises:
        ValueError naming the file on a bad magic number or a size that does not match the header.
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(raw)} bytes, shorter than the 4-byte magic number")
    magic = int.from_bytes(raw[:4], "big")
    code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or code not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file: bad magic number 0x{magic:08x} (expected 0x0000TTDD with "
                         f"type TT in {sorted(hex(c) for c in IDX_DTYPES)} and DD dimensions)")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: magic number {magic} (0x{magic:08x}), expected {expected_magic} "
                         f"(0x{expected_magic:08x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header: {len(raw)} bytes, expected {header} for {ndim} dimensions")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX file {what}: {len(raw)} bytes, expected {expected} "
                         f"(header {header} + shape {shape} of {dtype.newbyteorder('=')})")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # native byte order; also makes it writeable


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file; gzipped when ``path`` ends with ``.gz``."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise TypeError(f"write_idx: dtype {array.dtype} has no IDX type code; expected one of "
                        f"{sorted(str(d) for d in _CODES)}")
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + body)


# -- MNIST-format data sets -------------------------------------------------------------------

_SPLITS = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
           False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_DEFAULT_ROOTS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist", "mnist": "/usr/share/datasets/mnist"}
_HOW_TO_GET = {
    "fashion-mnist": ("install Debian's package (`apt-get install dataset-fashion-mnist`, files in "
                      "/usr/share/datasets/fashion-mnist) or download the four files from "
                      "https://github.com/zalandoresearch/fashion-mnist"),
    "mnist": "download the four files from https://yann.lecun.com/exdb/mnist/ (or a mirror)",
}


def _candidate_dirs(name, root):
    if root is not None:
        root = os.fspath(root)
        return [root, os.path.join(root, name)]
    dirs = []
    env = os.environ.get("FASTNN_DATA")
    if env:
        dirs += [os.path.join(env, name), env]
    dirs.append(_DEFAULT_ROOTS[name])
    return dirs


def _candidate_names(stem):
    # the official names, and the ``train-images.idx3-ubyte`` spelling of some mirrors
    alt = stem.replace("-idx", ".idx")
    return [stem + ".gz", stem, alt + ".gz", alt]


def find_idx_files(name, root=None, train=True):
    """Paths of the (images, labels) IDX files of data set ``name`` ("mnist" or "fashion-mnist").

    Looks in ``root`` and ``root/<name>``; with ``root=None``, in ``$FASTNN_DATA/<name>``,
    ``$FASTNN_DATA`` and the default folder (Debian's ``/usr/share/datasets/<name>``).
    Raises FileNotFoundError naming every path it tried and how to get the files.
    """
    dirs = _candidate_dirs(name, root)
    found, tried = [], []
    for stem in _SPLITS[bool(train)]:
        paths = [os.path.join(d, n) for d in dirs for n in _candidate_names(stem)]
        hit = next((p for p in paths if os.path.isfile(p)), None)
        if hit is None:
            tried += paths
        found.append(hit)
    if tried:
        split = "train" if train else "test"
        raise FileNotFoundError(
            f"{name} ({split} split): IDX files not found. Looked for:\n  " + "\n  ".join(tried) +
            f"\nTo get them, {_HOW_TO_GET[name]}; then pass root=DIR (command line: --data-dir DIR) "
            "or set $FASTNN_DATA.")
    return tuple(found)


def load_idx_dataset(name, root=None, train=True):
    """The ``TensorDataset`` of an MNIST-format data set: images float32 in [0, 1], (N, 1, H, W);
    labels int64 (N,)."""
    from .dataset import TensorDataset

    images_path, labels_path = find_idx_files(name, root, train)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(f"{name}: {images_path} holds {len(images)} images but {labels_path} holds "
                         f"{len(labels)} labels")
    x = np.empty((images.shape[0], 1) + images.shape[1:], np.float32)
    np.multiply(images[:, None], np.float32(1 / 255), out=x)
    return TensorDataset(x, labels.astype(np.int64))


def fashion_mnist(root=None, train=True):
    """Fashion-MNIST (Zalando): 60 000 train / 10 000 test 28x28 grey images of 10 clothing classes.

    Args:
        root: folder holding the IDX files (gzipped or not) -- directly or in ``root/fashion-mnist``.
            Default: ``$FASTNN_DATA`` if set, then ``/usr/share/datasets/fashion-mnist`` (Debian:
            ``apt-get install dataset-fashion-mnist``).
        train: the training split (``train-*``) or the test split (``t10k-*``).
    Returns:
        ``TensorDataset(images, labels)``: images float32 in [0, 1], shape (N, 1, 28, 28);
        labels int64, shape (N,).
    Raises:
        FileNotFoundError naming every path tried; ValueError for a corrupt or truncated file.
    """
    return load_idx_dataset("fashion-mnist", root, train)


def mnist(root=None, train=True):
    """MNIST handwritten digits: 60 000 train / 10 000 test 28x28 grey images.

    Same conventions as ``fashion_mnist``; the default folder is ``/usr/share/datasets/mnist``.
    """
    return load_idx_dataset("mnist", root, train)
