"""``DataLoader``: mini-batches of a data set as ``fastnn.Tensor`` s, reshuffled every epoch."""
from __future__ import annotations

import numbers

import numpy as np

from .dataset import tensor_arrays


def _batch_dtype(array):
    """Floating arrays keep float32/float64 (float16 becomes float32); integer labels become int64."""
    kind = array.dtype.kind
    if kind == "f":
        return array.dtype if array.dtype.itemsize >= 4 else np.dtype(np.float32)
    if kind in "iu":
        return np.dtype(np.int64)
    return array.dtype


def _collate(samples):
    """Stack a list of samples (tuples of arrays/Tensors/numbers) into a tuple of arrays."""
    from ..tensor import Tensor

    first = samples[0]
    if not isinstance(first, (tuple, list)):
        samples = [(s,) for s in samples]
    columns = zip(*samples)
    out = []
    for column in columns:
        arrays = [c.numpy() if isinstance(c, Tensor) else np.asarray(c) for c in column]
        stacked = np.stack(arrays)
        out.append(stacked.astype(_batch_dtype(stacked), copy=False))
    return out


class DataLoader:
    """Iterate over ``dataset`` in mini-batches, like ``torch.utils.data.DataLoader``.

    Each batch is a tuple of ``fastnn.Tensor`` s, one per array of the data set (usually
    ``(x, y)``): floating data keeps float32 (float64 stays float64), integer labels become int64
    class indices. A ``TensorDataset`` (or a ``Subset`` of one, e.g. from ``random_split``) is
    batched by fancy-indexing its arrays, with no per-sample Python loop; other data sets are
    indexed sample by sample and stacked.

    Args:
        dataset: a map-style data set.
        batch_size: samples per batch (the last batch may be smaller unless ``drop_last``).
        shuffle: draw a new permutation at the start of every epoch.
        drop_last: drop the last incomplete batch.
        seed: seed of the loader's own ``numpy`` Generator for shuffling (reproducible epochs);
            None shuffles with fastnn's global generator (``fastnn.manual_seed``).
    Example:
        >>> loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=0)
        >>> for xb, yb in loader: ...
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if seed is not None and not isinstance(seed, (numbers.Integral, np.random.Generator)):
            raise TypeError(f"DataLoader: seed must be an int, a numpy Generator or None, got {seed!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        if isinstance(seed, np.random.Generator):
            self._rng = seed
        else:
            self._rng = np.random.default_rng(seed) if seed is not None else None
        self._arrays = None  # the data set's arrays in batch dtypes, converted once

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self, n):
        if not self.shuffle:
            return None
        if self._rng is None:
            from ..random import generator
            return generator().permutation(n)
        return self._rng.permutation(n)

    def __iter__(self):
        from ..tensor import Tensor

        n = len(self.dataset)
        order = self._order(n)
        stop = len(self) * self.batch_size
        fast = tensor_arrays(self.dataset)
        if fast is not None:
            arrays, base = fast
            if self._arrays is None or any(a is not b for a, b in zip(self._arrays[0], arrays)):
                converted = tuple(a.astype(_batch_dtype(a), copy=False) for a in arrays)
                self._arrays = (arrays, converted)
            arrays = self._arrays[1]
            if order is not None and base is not None:
                order = base[order]
            elif order is None:
                order = base
            for start in range(0, min(stop, n), self.batch_size):
                end = min(start + self.batch_size, n)
                if order is None:
                    # contiguous rows: a view, no copy
                    yield tuple(Tensor(a[start:end]) for a in arrays)
                else:
                    index = order[start:end]
                    yield tuple(Tensor(a[index]) for a in arrays)
            return
        for start in range(0, min(stop, n), self.batch_size):
            end = min(start + self.batch_size, n)
            indices = range(start, end) if order is None else order[start:end]
            yield tuple(Tensor(a) for a in _collate([self.dataset[int(i)] for i in indices]))

    def __repr__(self):
        return (f"DataLoader({len(self.dataset)} samples, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, seed={self.seed})")
