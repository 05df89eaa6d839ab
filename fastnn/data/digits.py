"""scikit-learn's bundled 8x8 handwritten digits: the zero-download default data set."""
from __future__ import annotations

import gzip
import importlib.util
import os

import numpy as np


def _digits_csv():
    """Path of scikit-learn's ``digits.csv.gz``, found without importing scikit-learn (slow)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("digits: scikit-learn is not installed; it ships the digits data set "
                                  "(pip install scikit-learn)")
    return os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")


def digits():
    """The 1797 8x8 grey images of handwritten digits (UCI) that scikit-learn bundles.

    Returns:
        ``TensorDataset(images, labels)``: images float32 in [0, 1] (the 0..16 intensities / 16),
        shape (1797, 1, 8, 8); labels int64 in 0..9, shape (1797,).
    Example:
        >>> ds = digits(); train, test = random_split(ds, [0.8, 0.2], seed=0)
    """
    from .dataset import TensorDataset

    path = _digits_csv()
    if os.path.isfile(path):
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32)
        pixels, labels = table[:, :-1], table[:, -1]
    else:  # a future scikit-learn may move the file; its loader still knows where it is
        from sklearn.datasets import load_digits
        bunch = load_digits()
        pixels, labels = bunch.data, bunch.target
    images = (np.asarray(pixels, np.float32) / np.float32(16)).reshape(-1, 1, 8, 8)
    return TensorDataset(np.ascontiguousarray(images), np.asarray(labels).astype(np.int64))
