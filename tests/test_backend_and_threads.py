"""Backend selection (global setter and context manager) and the one thread-count setting that
governs every pool (BLAS via threadpoolctl, Numba, OpenMP)."""
import subprocess
import sys
import sys as _sys

import numpy as np
import pytest

import fastnn
import fastnn.backend
import fastnn.functional as F


def current():
    return fastnn.backend.get_backend()


def test_default_backend_is_cpu_in_a_fresh_process():
    out = subprocess.run([sys.executable, "-c", "import fastnn; print(fastnn.backend.get_backend())"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cpu"


def test_both_backends_are_available():
    assert set(fastnn.backend.available_backends()) >= {"cpu", "reference"}


def test_use_backend_as_context_manager_restores_the_previous_backend():
    assert current() == "cpu"
    with fastnn.use_backend("reference"):
        assert current() == "reference"
        with fastnn.use_backend("cpu"):
            assert current() == "cpu"
        assert current() == "reference"
    assert current() == "cpu"


def test_use_backend_context_manager_restores_on_exception():
    with pytest.raises(KeyError):
        with fastnn.use_backend("reference"):
            raise KeyError("boom")
    assert current() == "cpu"
    with pytest.raises(ValueError):
        with fastnn.use_backend("reference"):
            F.dropout(np.ones(3, np.float32), 2.0, True)
    assert current() == "cpu"


def test_use_backend_as_a_global_setter_persists_until_changed():
    fastnn.use_backend("reference")
    assert current() == "reference"
    F.relu(np.ones(3, np.float32))
    assert current() == "reference"
    fastnn.use_backend("cpu")
    assert current() == "cpu"


@pytest.mark.parametrize("name", ["gpu", "CPU", "", "numpy"])
def test_unknown_backend_name_raises_value_error_naming_it(name):
    with pytest.raises(ValueError, match="backend") as info:
        fastnn.use_backend(name)
    assert repr(name) in str(info.value) or f"'{name}'" in str(info.value)
    assert current() == "cpu"


def test_ops_run_the_kernels_of_the_selected_backend(monkeypatch):
    import fastnn.backends.reference as reference

    calls = []
    original = reference.relu_forward

    def spy(*args, **kwargs):
        calls.append("relu_forward")
        return original(*args, **kwargs)

    monkeypatch.setattr(reference, "relu_forward", spy)
    x = np.array([-1.0, 2.0], np.float32)
    with fastnn.use_backend("reference"):
        np.testing.assert_array_equal(F.relu(x).numpy(), [0.0, 2.0])
    assert calls == ["relu_forward"]
    calls.clear()
    with fastnn.use_backend("cpu"):
        np.testing.assert_array_equal(F.relu(x).numpy(), [0.0, 2.0])
    assert calls == [], "the cpu backend dispatched to the reference module's kernel"


def test_backends_agree_on_a_small_network():
    fastnn.manual_seed(0)
    model = fastnn.nn.Sequential(fastnn.nn.Conv2d(2, 4, 3, padding=1), fastnn.nn.BatchNorm2d(4), fastnn.nn.ReLU(),
                                 fastnn.nn.MaxPool2d(2), fastnn.nn.Flatten(), fastnn.nn.Linear(4 * 3 * 3, 5))
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6)).astype(np.float32)
    target = np.array([0, 3, 4])
    grads = {}
    for name in ("cpu", "reference"):
        model.zero_grad()
        with fastnn.use_backend(name):
            loss = F.cross_entropy(model(x), target)
            loss.backward()
        grads[name] = (loss.item(), [p.grad.numpy().copy() for p in model.parameters()])
    assert abs(grads["cpu"][0] - grads["reference"][0]) <= 1e-5 * max(1.0, abs(grads["reference"][0]))
    for a, b in zip(grads["cpu"][1], grads["reference"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(b).max()))


# ---------------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------------
def _blas_thread_counts():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    info = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    assert info, "no BLAS library visible to threadpoolctl"
    return {lib["filepath"]: lib["num_threads"] for lib in info}


def test_set_num_threads_one_limits_get_num_threads_blas_and_numba():
    np.ones((64, 64)) @ np.ones((64, 64))  # make sure numpy's BLAS is loaded
    with fastnn.use_backend("cpu"):
        F.relu(np.ones(3, np.float32))  # the compiled backend and its libraries are loaded
    before = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        assert fastnn.get_num_threads() == 1
        counts = _blas_thread_counts()
        assert all(n == 1 for n in counts.values()), f"BLAS thread counts after set_num_threads(1): {counts}"
        numba = _sys.modules.get("numba")
        if numba is not None:
            assert numba.get_num_threads() == 1
    finally:
        fastnn.set_num_threads(before)
    assert fastnn.get_num_threads() == before
    if before >= 2:
        from fastnn.backends.cpu import _blas
        counts = _blas_thread_counts()
        # SciPy's OpenBLAS stays at one thread while the compiled GEMMs are cut across the
        # OpenMP pool (one pool of `before` threads); every other BLAS gets `before` back
        partitioned = [path for path, n in counts.items() if n == 1 and "scipy" in path and "numpy" not in path]
        assert _blas.get_split() == bool(partitioned)
        assert all(n == before for path, n in counts.items() if path not in partitioned), \
            f"BLAS not restored to {before}: {counts}"


def test_compiled_gemms_run_on_the_openmp_pool_with_single_threaded_blas():
    from threadpoolctl import threadpool_info

    from fastnn.backends.cpu import _blas
    with fastnn.use_backend("cpu"):
        F.relu(np.ones(3, np.float32))
    n = fastnn.get_num_threads()
    pools = {info["filepath"]: info["num_threads"] for info in threadpool_info()}
    scipy_blas = [p for p in pools if "scipy.libs" in p]
    if n < 2 or not scipy_blas:
        pytest.skip("needs 2 threads and SciPy's bundled OpenBLAS")
    assert _blas.get_split() and all(pools[p] == 1 for p in scipy_blas)
    assert all(v == n for p, v in pools.items() if "gomp" in p or "omp" in p.rsplit("/", 1)[-1])


def test_default_thread_count_is_positive_and_at_most_the_available_cpus():
    n = fastnn.get_num_threads()
    assert isinstance(n, int) and 1 <= n <= len(__import__("os").sched_getaffinity(0))


def test_thread_setting_survives_backend_switches():
    before = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        with fastnn.use_backend("reference"):
            F.relu(np.ones(3, np.float32))
        fastnn.use_backend("cpu")
        assert fastnn.get_num_threads() == 1
        assert all(n == 1 for n in _blas_thread_counts().values())
    finally:
        fastnn.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None])
def test_set_num_threads_rejects_non_positive_or_non_int(bad):
    before = fastnn.get_num_threads()
    with pytest.raises((ValueError, TypeError, RuntimeError), match=r"\bn\b|thread") as info:
        fastnn.set_num_threads(bad)
    assert repr(bad) in str(info.value) or str(bad) in str(info.value)
    assert fastnn.get_num_threads() == before


def test_results_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((8, 8, 16, 16)).astype(np.float32), rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    before = fastnn.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            fastnn.set_num_threads(n)
            xt = fastnn.tensor(x, requires_grad=True)
            y = F.conv2d(xt, w, padding=1)
            y.sum().backward()
            outs.append((y.numpy().copy(), xt.grad.numpy().copy()))
    finally:
        fastnn.set_num_threads(before)
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-5)


def test_cpu_backend_keeps_freed_memory_on_glibc_unless_opted_out():
    code = ("import fastnn, numpy as np; import fastnn.functional as F; F.relu(np.ones(3, np.float32)); "
            "from fastnn.backends.cpu import _malloc; print(_malloc.applied)")
    default = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert default.returncode == 0, default.stderr
    import platform
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert default.stdout.strip() == "True"
    env = dict(__import__("os").environ, FASTNN_MALLOC_TUNING="0")
    opted_out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert opted_out.returncode == 0, opted_out.stderr
    assert opted_out.stdout.strip() == "False"


def test_numba_kernels_are_cached_in_the_user_cache_folder_not_next_to_the_sources():
    # cache files next to an installed package outlive `pip uninstall` and then shadow a later
    # editable install (README command 1, `pip install .`, then command 2, `pip install -e .`)
    import os

    from numba.core import config

    from fastnn.backends.cpu import _numba, activation, loss
    package_dir = os.path.dirname(os.path.abspath(activation.__file__))
    for dispatcher in (activation._relu_forward.parallel, activation._relu_forward.serial, loss._softplus):
        path = dispatcher._cache._cache_path
        assert path.startswith(_numba.cache_dir()) and not path.startswith(package_dir)
    assert config.CACHE_DIR == os.environ.get("NUMBA_CACHE_DIR", "")   # given back after decorating


def test_a_numba_cache_dir_the_user_set_is_respected(monkeypatch, tmp_path):
    from numba.core import config

    from fastnn.backends.cpu import _numba
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path))

    def twice(x):
        return 2 * x

    kernel = _numba.cached_njit(twice)
    assert kernel._cache._cache_path.startswith(str(tmp_path))
    assert kernel(3) == 6
    assert config.CACHE_DIR == str(tmp_path)
