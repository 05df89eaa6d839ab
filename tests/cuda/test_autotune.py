"""Autotuning (``backends/cuda/autotune.py``): the fastest of a GEMM's tilings, or of a convolution's two
ways of computing grad_x, timed once per shape and remembered. In the simulator the GPU's clock is
replaced by a timer the test controls; on a GPU one test times real launches."""
import numpy as np
import pytest

import fastnn.device

if fastnn.device.cuda_unavailable_reason():
    pytest.skip(f"the cuda device is not usable: {fastnn.device.cuda_unavailable_reason()}", allow_module_level=True)
import fastnn.backends.cuda as cu  # noqa: E402
from fastnn.backends import reference as ref  # noqa: E402
from fastnn.backends.cuda import _core, autotune, conv, linear  # noqa: E402
from device_arrays import close, dev  # noqa: E402


@pytest.fixture
def tuning(monkeypatch, simulator_tilings):
    """Autotuning on (with the simulator's tilings, on a GPU too: the shapes below are sized for them), with a timer that runs the candidate and returns ``cost(blocks, launches)`` of
    what it launched: the thread blocks of its GEMM launches (all recorded in ``launched``), and how
    many kernels in all."""
    monkeypatch.setattr(autotune, "ENABLED", True)
    monkeypatch.setattr(autotune, "off_for_the_process", lambda: not autotune.ENABLED)   # (not the simulator's)
    launched = []
    real_launch_grid = linear.launch_grid
    monkeypatch.setattr(linear, "launch_grid", lambda kernel, grid, block, *args: (
        launched.append(block), real_launch_grid(kernel, grid, block, *args)))
    state = {"cost": lambda blocks, launches: 1.0, "timed": 0}

    def timer(run):
        start, counted = len(launched), _core.launch_count()
        run()
        state["timed"] += 1
        return state["cost"](launched[start:], _core.launch_count() - counted)
    monkeypatch.setattr(autotune, "_elapsed_ms", timer)
    state["launched"] = launched
    return state


def test_the_fastest_candidate_by_median_is_chosen_once_and_remembered(tuning):
    runs = []
    times = {"a": iter([5.0, 1.0, 5.0]), "b": iter([2.0, 2.0, 2.0])}     # medians 5 and 2
    tuning["cost"] = lambda blocks, launches: next(times[runs[-1]])
    candidates = {"a": lambda: runs.append("a"), "b": lambda: runs.append("b")}
    assert autotune.fastest(("op", 1), candidates) == "b"
    assert runs == ["a", "b"] + ["a", "b"] * autotune.REPEATS      # a warm-up run each, then interleaved
    assert autotune.fastest(("op", 1), candidates) == "b" and len(runs) == 2 + 2 * autotune.REPEATS
    assert autotune.chosen() == {("op", 1): "b"}


def test_launches_made_while_tuning_are_not_counted(tuning):
    x = dev(np.ones(8, np.float32))
    candidates = {name: (lambda: cu.relu_forward(x)) for name in ("a", "b")}
    with cu.count_launches() as launches:
        autotune.fastest(("relu",), candidates)
    assert launches() == 0


def test_with_autotuning_off_or_in_a_dry_run_the_first_candidate_is_taken_without_running(tuning, monkeypatch):
    runs = []
    candidates = {"a": lambda: runs.append("a"), "b": lambda: runs.append("b")}
    with _core.count_launches(dry_run=True):
        assert autotune.fastest(("op", 2), candidates) == "a"
    assert runs == [] and autotune.chosen() == {}           # not remembered: a later real launch times them
    assert autotune.fastest(("op", 2), {"only": lambda: runs.append("only")}) == "only" and runs == []
    monkeypatch.setattr(autotune, "ENABLED", False)          # FASTNN_CUDA_AUTOTUNE=0
    assert autotune.fastest(("op", 3), candidates) == "a" and runs == []


def test_a_choice_is_remembered_once_final_and_not_from_a_dry_run(tuning, monkeypatch):
    runs, memo = [], {}
    tuning["cost"] = lambda blocks, launches: {"a": 2.0, "b": 1.0}[runs[-1]]
    candidates = {"a": lambda: runs.append("a"), "b": lambda: runs.append("b")}
    with _core.count_launches(dry_run=True):
        assert autotune.choose(memo, "op", (4,), candidates, str.upper) == "A"
    assert memo == {} and runs == []                          # a later real launch times them
    assert autotune.choose(memo, "op", (4,), candidates, str.upper) == "B"
    assert memo == {(4,): "B"} and autotune.chosen() == {("op", 4): "b"}
    monkeypatch.setattr(autotune, "ENABLED", False)           # off for the process: the heuristic, remembered
    assert autotune.choose(memo, "op", (5,), candidates, str.upper) == "A" and memo[(5,)] == "A"
    assert autotune.choose(memo, "op", (6,), {"only": lambda: None}, str.upper) == "ONLY" and memo[(6,)] == "ONLY"


def test_a_gemm_is_launched_with_the_tiling_found_fastest_for_its_shape(tuning):
    """Two tilings cover an 8 x 16 output alike in the simulator (8x8 and 4x16): both are timed; the
    timer makes the second (16-wide blocks, 8 x 2 threads) faster, and every later GEMM of that shape
    and variant is launched with it, giving the product."""
    default, other = linear.TILINGS[:2]
    assert linear.candidate_tilings(8, 16) == [default, other]
    tuning["cost"] = lambda blocks, launches: 1.0 if blocks == [(other.TX, other.TY)] else 3.0
    rng = np.random.default_rng(0)
    for _ in range(2):
        a, b = rng.standard_normal((8, 24)), rng.standard_normal((24, 16))
        c = cu.empty((8, 16), np.float64)
        start = len(tuning["launched"])
        linear.gemm(dev(a).reshape(1, 8, 24), 0, 24, dev(b).reshape(1, 24, 16), 0, 16, c.reshape(1, 8, 16), 16,
                    8, 16, 24)
        np.testing.assert_allclose(c.copy_to_host(), a @ b, rtol=1e-12)
        assert tuning["launched"][-1] == (other.TX, other.TY)
    assert tuning["timed"] == 2 * autotune.REPEATS            # timed on the first call only
    assert len(tuning["launched"]) - start == 1


def test_a_split_gemm_is_launched_with_the_slice_count_found_fastest(tuning, monkeypatch):
    """A 4 x 6 output k = 64 slabs deep is one tile for 4 multiprocessors: split_k cuts it into 8
    slices, and the autotuner also times 16 and 32; the timer makes the most slices fastest, and
    every later GEMM of that shape is launched with them, giving the product."""
    monkeypatch.setattr(_core, "_multiprocessors", 4)
    monkeypatch.setattr(linear, "MIN_K_CHUNK", linear.TILINGS[0].BK)
    monkeypatch.setattr(linear, "MAX_SPLITS", 8)
    monkeypatch.setattr(linear, "MAX_CANDIDATE_SPLITS", 32)
    m, n, k = 4, 6, 64 * linear.TILINGS[0].BK
    ways = linear.candidate_launches(m, n, k)
    assert [splits for _, splits in ways].count(32) == len(linear.candidate_tilings(m, n)) and ways[0][1] is None
    grids, real_launch_grid = [], linear.launch_grid
    monkeypatch.setattr(linear, "launch_grid", lambda kernel, grid, *rest: (grids.append(grid),
                                                                           real_launch_grid(kernel, grid, *rest)))
    tuning["cost"] = lambda blocks, launches: 1.0 / grids[-1][2]
    rng = np.random.default_rng(5)
    for step in range(2):
        a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        c = cu.empty((m, n), np.float64)
        linear.gemm(dev(a).reshape(1, m, k), 0, k, dev(b).reshape(1, k, n), 0, n, c.reshape(1, m, n), n, m, n, k)
        np.testing.assert_allclose(c.copy_to_host(), a @ b, rtol=1e-12)
        assert grids[-1][2] == 32
    assert tuning["timed"] == len(ways) * autotune.REPEATS      # timed on the first call only
    assert list(autotune.chosen().values())[0][1] == 32


@pytest.mark.parametrize("faster", ["windows", "col2im"])
def test_a_convolution_computes_grad_x_the_way_found_fastest(tuning, faster):
    """conv2d's grad_x by the windows GEMM (one launch) or by W^T grad_y and col2im (two): both
    timed once, the faster taken from then on, grad_x the reference's either way."""
    rng = np.random.default_rng(1)
    x, weight = rng.standard_normal((2, 8, 5, 5)), rng.standard_normal((4, 8, 3, 3))
    args = ((1, 1), (1, 1), (1, 1), 1)
    assert conv._input_gradient_paths((1, 1), 8, 4, 9, 50, 50) == ("windows", "col2im")
    tuning["cost"] = lambda blocks, launches: 1.0 if (launches == 1) == (faster == "windows") else 2.0
    expected = ref.conv2d_backward(np.ones((2, 4, 5, 5)), ref.conv2d_forward(x, weight, None, *args)[1],
                                   (True, False, False))[0]
    for _ in range(2):
        _, saved = cu.conv2d_forward(dev(x), dev(weight), None, *args)
        with cu.count_launches() as launches:
            grad_x = cu.conv2d_backward(dev(np.ones((2, 4, 5, 5))), saved, (True, False, False))[0]
        close(grad_x, expected)
        assert launches() == (1 if faster == "windows" else 2)
    # (the GEMMs inside, split along k at these sizes in the simulator, also time their slice counts)
    assert [name for key, name in autotune.chosen().items() if key[0] == "conv2d grad_x"] == [faster]


def test_nested_choices_a_convolution_tuning_its_path_whose_gemms_tune_their_tilings(tuning, monkeypatch):
    """Every GEMM offered every tiling: the warm-up run of each grad_x path times its GEMMs' tilings
    (tuning inside tuning), then the paths are timed with those choices; grad_x and grad_W are the
    reference's, and the next backward launches what was chosen, timing nothing."""
    heuristic = linear.candidate_tilings
    monkeypatch.setattr(linear, "candidate_tilings", lambda m, n: heuristic(m, n)[:1] + [
        t for t in linear.TILINGS if t != heuristic(m, n)[0]])
    rng = np.random.default_rng(3)
    x, weight = rng.standard_normal((2, 8, 5, 5)), rng.standard_normal((4, 8, 3, 3))
    grad_y = rng.standard_normal((2, 4, 5, 5))
    args = ((1, 1), (1, 1), (1, 1), 1)
    tuning["cost"] = lambda blocks, launches: float(len(blocks) + launches + sum(a * b for a, b in blocks))
    expected = ref.conv2d_backward(grad_y, ref.conv2d_forward(x, weight, None, *args)[1], (True, True, False))
    for step in range(2):
        _, saved = cu.conv2d_forward(dev(x), dev(weight), None, *args)
        timed = tuning["timed"]
        with cu.count_launches() as launches:
            grad_x, grad_w, _ = cu.conv2d_backward(dev(grad_y), saved, (True, True, False))
        close(grad_x, expected[0])
        close(grad_w, expected[1])
        if step:
            assert tuning["timed"] == timed and launches() in (2, 3)     # grad_W's GEMM, then 1 or 2
    kinds = [key[0] for key in autotune.chosen()]
    assert kinds.count("conv2d grad_x") == 1 and kinds.count("gemm") >= 3     # fwd, grad_W, each path's


def test_a_windows_table_too_short_for_the_tiling_is_refused(simulator_tilings):
    x = dev(np.ones((1, 1, 3, 3), np.float32))
    table = conv._windows(x.shape, 0, 1, (1, 1), (1, 1), 1, (3, 3), (1, 1), (0, 0))     # one tap
    a = dev(np.ones((1, 1, 64), np.float32))
    c = cu.empty((1, 1, 9), np.float32)
    with pytest.raises(ValueError, match="windows table of 64 taps"):
        linear.gemm(a, 0, 64, x, 0, 0, c, 9, 1, 9, 64, windows=table)


def test_the_gemm_kernels_disk_cache_key_is_the_same_in_another_process():
    """Numba finds a kernel's disk cache entry by a hash of its closure's values (the device functions
    pickled by value): a new process must compute the same hash (else every process would compile
    every GEMM again), and another tiling another hash."""
    import os
    import subprocess
    import sys
    script = ("import hashlib, sys\n"
              "from numba import float32\n"
              "from numba.core.serialize import dumps\n"
              "from fastnn.backends.cuda import linear\n"
              "t = linear.make_tiling(*linear.GPU_TILINGS[int(sys.argv[1])])\n"
              "k = linear._make_gemm(float32, False, True, True, t)\n"
              "print(hashlib.sha256(dumps(tuple(c.cell_contents for c in k.py_func.__closure__))).hexdigest())\n")
    hashes = []
    for seed, tiling in (("1", "0"), ("2", "0"), ("3", "1")):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        hashes.append(subprocess.run([sys.executable, "-c", script, tiling], capture_output=True, text=True,
                                     env=env, check=True).stdout.strip())
    assert hashes[0] == hashes[1] != hashes[2] and len(hashes[0]) == 64


@pytest.mark.skipif(_core.SIMULATOR, reason="times real launches: a GPU only")
def test_on_a_gpu_a_convolution_tunes_its_gemms_and_grad_x_path_and_gives_the_reference(monkeypatch):
    monkeypatch.setattr(autotune, "ENABLED", True)
    rng = np.random.default_rng(4)
    x, weight = rng.standard_normal((8, 64, 14, 14)).astype(np.float32), rng.standard_normal((64, 64, 5, 5)).astype(np.float32)
    grad_y = rng.standard_normal((8, 64, 14, 14)).astype(np.float32)
    args = ((1, 1), (2, 2), (1, 1), 1)
    assert len(conv._input_gradient_paths((1, 1), 64, 64, 25, 8 * 196, 8 * 196)) == 2
    expected = ref.conv2d_backward(grad_y.astype(np.float64), ref.conv2d_forward(
        x.astype(np.float64), weight.astype(np.float64), None, *args)[1], (True, True, False))
    _, saved = cu.conv2d_forward(dev(x), dev(weight), None, *args)
    grad_x, grad_w, _ = cu.conv2d_backward(dev(grad_y), saved, (True, True, False))
    np.testing.assert_allclose(grad_x.copy_to_host(), expected[0], rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(grad_w.copy_to_host(), expected[1], rtol=1e-3, atol=1e-1)
    assert any(key[0] == "conv2d grad_x" for key in autotune.chosen())


@pytest.mark.skipif(_core.SIMULATOR, reason="times real launches: a GPU only")
def test_on_a_gpu_a_gemm_with_two_candidate_tilings_is_timed_and_gives_the_product(monkeypatch):
    monkeypatch.setattr(autotune, "ENABLED", True)
    m, n, k = 64, 4096, 256
    assert len(linear.candidate_tilings(m, n)) > 1
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    c = cu.empty((m, n), np.float32)
    linear.gemm(dev(a).reshape(1, m, k), 0, k, dev(b).reshape(1, k, n), 0, n, c.reshape(1, m, n), n, m, n, k)
    np.testing.assert_allclose(c.copy_to_host(), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    assert len(autotune.chosen()) == 1 and len(linear._TILING_OF) == 1
