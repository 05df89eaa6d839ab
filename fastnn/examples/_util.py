"""Shared plumbing of the lessons: a headless matplotlib, the output folder, the summary file,
seeding, and the sample images."""
from __future__ import annotations

import os
import time

import numpy as np

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 110, "axes.titlesize": 11, "axes.labelsize": 10,
                         "legend.fontsize": 9, "figure.titlesize": 13})
    return plt


def prepare(out_dir, seed):
    """Create ``out_dir`` and seed fastnn's and NumPy's global generators; returns the path."""
    import fastnn

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    fastnn.manual_seed(seed)
    return out_dir


def save(fig, out_dir, name):
    """Save ``fig`` as ``out_dir/name`` (PNG), close it, and return the path."""
    plt = pyplot()
    path = os.path.join(out_dir, name)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def write_summary(out_dir, title, lines):
    """Write ``summary.txt`` (a title line, an underline, then ``lines``) and return its text."""
    text = "\n".join([title, "=" * len(title), *lines]) + "\n"
    with open(os.path.join(out_dir, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    return text


class Timer:
    """``with Timer() as t: ...``; then ``t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def sample_image(index=0, prefer_fashion=True):
    """A real grey image as float32 (H, W) in [0, 1], and a description of where it comes from.

    A Fashion-MNIST test image (28x28) when the data set is installed, else a scikit-learn digit (8x8).
    """
    from .. import data

    if prefer_fashion:
        try:
            ds = data.fashion_mnist(train=False)
        except (FileNotFoundError, ValueError):
            ds = None
        if ds is not None:
            images, labels = ds.arrays
            return images[index, 0].copy(), f"Fashion-MNIST test image #{index} ({FASHION_CLASSES[labels[index]]})"
    images, labels = data.digits().arrays
    return images[index, 0].copy(), f"scikit-learn digit #{index} (a {labels[index]})"


def digits_split(test_fraction=0.25, seed=0):
    """The digits as NumPy arrays, split into (x_train, y_train, x_test, y_test) by a seeded permutation."""
    from .. import data

    x, y = data.digits().arrays
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]
