"""Helpers of the cuda kernel tests: host arrays to the device and back, and the comparison with
the reference's result (float32 and float64 tolerances scaled by the result's magnitude, integers
exact). Import it after checking that the cuda device is usable (it imports the cuda backend)."""
import numpy as np

import fastnn.backends.cuda as cu

TOL = {np.dtype(np.float32): dict(rtol=2e-5, atol=2e-5), np.dtype(np.float64): dict(rtol=1e-10, atol=1e-11)}


def dev(a):
    return cu.to_device(np.ascontiguousarray(a))


def host(a):
    return None if a is None else a.copy_to_host()


def close(actual, expected):
    actual = host(actual) if not isinstance(actual, np.ndarray) else actual
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    tol = TOL[expected.dtype] if expected.dtype.kind == "f" else dict(rtol=0, atol=0)
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale)
