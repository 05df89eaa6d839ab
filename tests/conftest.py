"""Shared pytest setup for the API-level suite: hypothesis profile, a ``backend`` fixture, and an
autouse guard that restores fastnn's global state (backend, grad mode, thread count) after every
test so that one test's setting never leaks into the next."""
import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")  # tests/cuda: numba's CUDA simulator unless a GPU run sets 0

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import fastnn
import fastnn.backend

settings.register_profile(
    "fastnn", max_examples=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile(
    "thorough", max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("FASTNN_HYPOTHESIS_PROFILE", "fastnn"))

BACKENDS = ["cpu", "reference"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test body with ``fastnn.use_backend(name)`` active; yields the name."""
    with fastnn.use_backend(request.param):
        yield request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def two_threads():
    """Run the test on two threads (the guard below restores the count afterwards)."""
    fastnn.set_num_threads(2)


@pytest.fixture(autouse=True)
def _restore_fastnn_global_state():
    backend_before = fastnn.backend.get_backend()
    threads_before = fastnn.get_num_threads()
    yield
    if fastnn.backend.get_backend() != backend_before:
        fastnn.use_backend(backend_before)
    if fastnn.get_num_threads() != threads_before:
        fastnn.set_num_threads(threads_before)
    if not fastnn.is_grad_enabled():  # a test that left no_grad active must not poison the rest
        fastnn.autograd._grad_enabled = True
        pytest.fail("grad mode was left disabled after the test (no_grad did not restore it)")
