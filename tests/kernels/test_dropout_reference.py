"""The dropout mask of ``backends/reference/dropout.py`` (which the cpu and cuda kernels keep bit
for bit): its hash against murmur3's finaliser in Python integers, its keep rate, its scale."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastnn.backends.reference import dropout as ref


def murmur3_fmix32(h):
    """murmur3's 32-bit finaliser, step by step in unbounded Python integers."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) % 2**32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) % 2**32
    return h ^ (h >> 16)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), i=st.integers(0, 2**32 - 1))
def test_the_hash_is_murmur3s_finaliser_of_the_mixed_seed_and_index(seed, i):
    expected = murmur3_fmix32((seed * 0x9E3779B1 + i * 0x85EBCA77 + 0x165667B1) % 2**32)
    assert ref.hash_bits(seed, i) == expected
    # the NumPy path (uint64 arrays, which wrap above bit 64) gives the same bits
    assert int(ref.hash_bits(seed, np.array([i], np.uint64))[0]) == expected


@pytest.mark.parametrize("p", [0.1, 0.4, 0.75])
def test_the_keep_rate_is_one_minus_p_and_kept_elements_are_scaled(p):
    x = np.ones(200_000, np.float32)
    y = ref.dropout_forward(x, p, 42)
    kept = y != 0
    # 200k Bernoulli(1 - p) draws: 5 standard deviations
    assert abs(kept.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / x.size)
    assert np.all(y[kept] == np.float32(1 / (1 - p)))


def test_the_masks_of_two_seeds_are_independent():
    a = ref.dropout_forward(np.ones(100_000), 0.5, 1) != 0
    b = ref.dropout_forward(np.ones(100_000), 0.5, 2) != 0
    # P(both kept) = 1/4 for independent masks; 5 standard deviations
    assert abs((a & b).mean() - 0.25) < 5 * math.sqrt(0.25 * 0.75 / a.size)


def test_p_one_keeps_nothing_and_p_zero_keeps_everything():
    x = np.arange(1, 11, dtype=np.float64)
    assert not ref.dropout_forward(x, 1.0, 5).any()
    np.testing.assert_array_equal(ref.dropout_forward(x, 0.0, 5), x)


def test_dropped_elements_are_zero_whatever_their_value():
    x = np.array([np.nan, -np.inf, -1.0, np.inf] * 50, np.float32)
    y = ref.dropout_forward(x, 0.5, 9)
    dropped = ref.dropout_forward(np.ones_like(x), 0.5, 9) == 0
    assert dropped.any() and np.all(y[dropped] == 0) and not np.signbit(y[dropped]).any()
