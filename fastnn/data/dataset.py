"""Map-style data sets: ``Dataset``, ``TensorDataset``, ``Subset`` and ``random_split``."""
from __future__ import annotations

import itertools
import math
import numbers

import numpy as np


class Dataset:
    """A map-style data set: ``dataset[i]`` is one sample, ``len(dataset)`` the number of samples.

    Subclasses implement ``__getitem__`` and ``__len__``. A sample is usually a tuple ``(x, y)``.
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")


def _as_array(data, position):
    from ..tensor import Tensor

    if isinstance(data, Tensor):
        return data.numpy()
    array = np.asarray(data)
    if array.dtype == object:
        raise TypeError(f"TensorDataset: argument {position} is not a numeric array (dtype object)")
    return array


class TensorDataset(Dataset):
    """Samples are rows of arrays that share their first dimension (PyTorch's ``TensorDataset``).

    Args:
        *tensors: NumPy arrays or ``fastnn.Tensor`` s, all with the same length N. They are kept
            as they are (no copy), so a ``DataLoader`` batches them by fancy indexing.
    Example:
        >>> ds = TensorDataset(np.zeros((10, 1, 8, 8), np.float32), np.arange(10))
        >>> x, y = ds[3]; len(ds)
        10
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: needs at least one array")
        arrays = tuple(_as_array(t, i) for i, t in enumerate(tensors))
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: argument {i} is a scalar; every argument needs a first "
                                 "(sample) dimension")
        sizes = [len(a) for a in arrays]
        if len(set(sizes)) != 1:
            raise ValueError(f"TensorDataset: all arrays need the same first dimension, got sizes {sizes}")
        self.arrays = arrays

    @property
    def tensors(self):
        """The arrays as ``fastnn.Tensor`` s (sharing memory)."""
        from ..tensor import Tensor

        return tuple(Tensor(a) for a in self.arrays)

    def __getitem__(self, index):
        from ..tensor import Tensor

        # a[i, ...] keeps a 0-d ndarray (not a NumPy scalar), so dtypes survive
        return tuple(Tensor(a[index, ...]) for a in self.arrays)

    def __len__(self):
        return len(self.arrays[0])

    def __repr__(self):
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.arrays)
        return f"TensorDataset({shapes})"


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices`` (in that order)."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1:
            raise ValueError(f"Subset: indices must be 1-D, got shape {self.indices.shape}")

    def __getitem__(self, index):
        if isinstance(index, (list, np.ndarray)):
            return self.dataset[self.indices[np.asarray(index)]]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)

    def __repr__(self):
        return f"Subset({len(self)} of {self.dataset!r})"


def tensor_arrays(dataset):
    """``(arrays, indices)`` when ``dataset`` is a TensorDataset or (nested) Subset of one, else None.

    ``indices`` is None for the whole TensorDataset; this is what lets ``DataLoader`` batch by
    fancy indexing instead of a per-sample loop.
    """
    indices = None
    while isinstance(dataset, Subset):
        indices = dataset.indices if indices is None else dataset.indices[indices]
        dataset = dataset.dataset
    if isinstance(dataset, TensorDataset):
        return dataset.arrays, indices
    return None


def _split_lengths(n, lengths):
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths is empty")
    if all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in lengths):
        if any(x < 0 for x in lengths):
            raise ValueError(f"random_split: lengths must be >= 0, got {lengths}")
        if sum(lengths) != n:
            raise ValueError(f"random_split: lengths {lengths} sum to {sum(lengths)}, but the data set has "
                             f"{n} samples")
        return [int(x) for x in lengths]
    if all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in lengths):
        if any(not 0 <= x <= 1 for x in lengths) or not math.isclose(sum(lengths), 1.0, abs_tol=1e-6):
            raise ValueError(f"random_split: fractions must lie in [0, 1] and sum to 1, got {lengths}")
        # PyTorch: floor each share, then hand the remainder out one by one, round robin
        sizes = [math.floor(n * frac) for frac in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        return sizes
    raise TypeError(f"random_split: lengths must be all ints or all fractions, got {lengths}")


def random_split(dataset, lengths, seed=None):
    """Split ``dataset`` into disjoint random ``Subset`` s of the given lengths.

    Args:
        dataset: any map-style data set.
        lengths: ints summing to ``len(dataset)``, or fractions summing to 1 (the remainder of
            flooring is distributed round robin, as in PyTorch).
        seed: int seed of the permutation; None draws it from fastnn's global generator
            (``fastnn.manual_seed``).
    Example:
        >>> train, val = random_split(ds, [0.8, 0.2], seed=0)
    """
    n = len(dataset)
    sizes = _split_lengths(n, lengths)
    if seed is None:
        from ..random import generator
        rng = generator()
    else:
        rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    bounds = np.cumsum([0] + sizes)
    return [Subset(dataset, order[lo:hi]) for lo, hi in itertools.pairwise(bounds)]
