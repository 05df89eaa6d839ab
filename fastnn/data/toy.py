"""Toy data sets of the course: the TensorFlow Playground problems and a noisy cos(x) regression.

The Playground generators follow playground.tensorflow.org's ``dataset.ts`` (radius-5 plane,
noise as a fraction in [0, 1] that the site shows as 0-50%); labels are class indices 0/1
(the site's -1/+1), so ``CrossEntropyLoss`` or ``BCEWithLogitsLoss`` apply directly.
"""
from __future__ import annotations

import numpy as np

PLAYGROUND_NAMES = ("circle", "xor", "gauss", "spiral")


def _circle(rng, n, noise):
    radius = 5.0
    n_in = n // 2
    r = np.concatenate([rng.uniform(0, radius * 0.5, n_in), rng.uniform(radius * 0.7, radius, n - n_in)])
    angle = rng.uniform(0, 2 * np.pi, n)
    points = np.stack([r * np.sin(angle), r * np.cos(angle)], 1)
    noisy = points + rng.uniform(-radius, radius, (n, 2)) * noise
    labels = (np.hypot(noisy[:, 0], noisy[:, 1]) < radius * 0.5).astype(np.int64)
    return points, labels


def _xor(rng, n, noise):
    padding = 0.3
    points = rng.uniform(-5, 5, (n, 2))
    points += np.where(points > 0, padding, -padding)
    noisy = points + rng.uniform(-5, 5, (n, 2)) * noise
    labels = (noisy[:, 0] * noisy[:, 1] >= 0).astype(np.int64)
    return points, labels


def _gauss(rng, n, noise):
    std = np.sqrt(0.5 + (4 - 0.5) * noise)  # the site's variance lerp(0.5, 4, noise)
    half = n // 2
    pos = rng.normal(2, std, (half, 2))
    neg = rng.normal(-2, std, (n - half, 2))
    labels = np.concatenate([np.ones(half, np.int64), np.zeros(n - half, np.int64)])
    return np.concatenate([pos, neg]), labels


def _spiral(rng, n, noise):
    half = n // 2
    parts, labels = [], []
    for count, delta, label in ((half, 0.0, 1), (n - half, np.pi, 0)):
        i = np.arange(count)
        r = i / max(count, 1) * 5
        t = 1.75 * i / max(count, 1) * 2 * np.pi + delta
        xy = np.stack([r * np.sin(t), r * np.cos(t)], 1) + rng.uniform(-1, 1, (count, 2)) * noise
        parts.append(xy)
        labels.append(np.full(count, label, np.int64))
    return np.concatenate(parts), np.concatenate(labels)


_GENERATORS = {"circle": _circle, "xor": _xor, "gauss": _gauss, "spiral": _spiral}


def playground(name, n=500, noise=0.0, seed=None):
    """One of the TensorFlow Playground's classification problems as a TensorDataset.

    Args:
        name: ``circle``, ``xor``, ``gauss`` or ``spiral``.
        n: number of points. noise: in [0, 1] (the site's slider / 100; its maximum is 0.5).
        seed: seed of the generator (None: fastnn's global generator).
    Shape: x (n, 2) float32 in about [-6, 6]; y (n,) int64 in {0, 1}.
    """
    from .dataset import TensorDataset

    if name not in _GENERATORS:
        raise ValueError(f"playground: name must be one of {PLAYGROUND_NAMES}, got {name!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"playground: n must be an int >= 2, got {n!r}")
    if not 0 <= noise <= 1:
        raise ValueError(f"playground: noise must be in [0, 1], got {noise!r}")
    rng = _rng(seed)
    points, labels = _GENERATORS[name](rng, int(n), float(noise))
    order = rng.permutation(len(labels))
    return TensorDataset(points[order].astype(np.float32), labels[order])


def cosine(n=100, noise=0.1, seed=None, low=-np.pi, high=np.pi):
    """Noisy regression data y = cos(x) + noise * N(0, 1), x uniform in [low, high].

    Shape: x (n, 1) float32, y (n, 1) float32.
    """
    from .dataset import TensorDataset

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"cosine: n must be a positive int, got {n!r}")
    if noise < 0:
        raise ValueError(f"cosine: noise must be >= 0, got {noise!r}")
    rng = _rng(seed)
    x = np.sort(rng.uniform(low, high, n))
    y = np.cos(x) + noise * rng.standard_normal(n)
    return TensorDataset(x[:, None].astype(np.float32), y[:, None].astype(np.float32))


def _rng(seed):
    if seed is None:
        from ..random import generator
        return generator()
    return np.random.default_rng(seed)
