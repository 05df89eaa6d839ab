"""Dropout with a counter-based mask, the same on every backend.

Element i of the input (its index in C order) is kept when

    hash(seed, i) >= threshold = ceil(p 2³²)

(that is, when u = hash / 2³², uniform in [0, 1), is >= p) and is then scaled by 1 / (1 - p);
dropped elements are 0. ``hash`` is murmur3's 32-bit finaliser of a linear mix of (seed, i). The
mask is a function of (seed, i) alone: backward regenerates it instead of storing it, and the cuda
kernels (``backends/cuda/elementwise.py``, the GEMM's fused dropout epilogue), the cpu's Numba
kernel and this reference keep exactly the same elements for the same seed, so a training run
draws the same masks on either device.

(Numba's disk cache does not notice an edit of ``hash_bits`` in the kernels that call it: clear
``~/.cache/fastnn/numba`` and ``__pycache__`` after changing it.)
"""
import math

import numpy as np

__all__ = ["dropout_forward", "dropout_backward"]


def hash_bits(seed, i):
    """32 random bits from (seed, i), for Python ints, NumPy uint64 arrays and Numba integers (any
    wraparound above bit 32 is masked off)."""
    h = (seed * 0x9E3779B1 + i * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def hash_seed(seed) -> int:
    """The seed as the hash sees it: an integer mod 2³² (only its low 32 bits reach the mix), so any
    integer seed gives the same mask on every backend and fits every kernel's int64."""
    return int(seed) & 0xFFFFFFFF


def keep_threshold(p) -> int:
    """ceil(p 2³²): element i is kept when hash_bits(seed, i) >= this (u >= p, tested in integers).
    p is taken as a Python float first, whatever its type (a float16 p would overflow p 2³²)."""
    return math.ceil(float(p) * 2**32)


def keep_scale(p, dtype):
    """1 / (1 - p), computed in float64 and rounded once to ``dtype`` (0 for p = 1, which keeps
    nothing: ceil(2³²) is above every hash)."""
    p = float(p)
    return np.dtype(dtype).type(0.0 if p == 1.0 else 1.0 / (1.0 - p))


def dropout_forward(x, p, seed):
    """y = x · scale where hash(seed, i) >= ceil(p 2³²), else 0; x any shape, 0 <= p <= 1,
    seed an integer (taken mod 2³²). Returns y (x's shape and dtype). For float16 and p above
    ~0.99998, 1 / (1 - p) overflows to inf, as on every backend."""
    index = np.arange(x.size, dtype=np.uint64).reshape(x.shape)
    keep = hash_bits(hash_seed(seed), index) >= keep_threshold(p)
    return np.where(keep, x * keep_scale(p, x.dtype), x.dtype.type(0))


def dropout_backward(grad_y, p, seed):
    """grad_x = grad_y · scale where the forward kept the element, else 0 (the same mask)."""
    return dropout_forward(grad_y, p, seed)
