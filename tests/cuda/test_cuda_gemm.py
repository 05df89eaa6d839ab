"""The tiled GEMM's launch geometry (``backends/cuda/linear.py``): split-K for outputs too small to
fill the GPU (partial products summed in a fixed order by each tile's last block, in the same launch), row tiles beyond the
grid's y limit, empty grids, and an operand read through a ReLU mask, against NumPy in float64. Every
test runs with 4 multiprocessors, slices of one slab and at most 8 of them (``small_split_geometry``), so
small shapes take every path, in the simulator (8x8 tiles) and on a GPU (64x64 tiles) alike. GEMMs are launched
with the tiling ``tiling_for`` picks (autotuning is off in the tests) unless a test passes its own."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fastnn.device

if fastnn.device.cuda_unavailable_reason():
    pytest.skip(f"the cuda device is not usable: {fastnn.device.cuda_unavailable_reason()}", allow_module_level=True)
import fastnn.backends.cuda as cu  # noqa: E402
from fastnn.backends.cuda import _core, linear  # noqa: E402


def product(a, ta, b, tb):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64.T if ta else a64) @ (b64.T if tb else b64)


@pytest.fixture(autouse=True)
def small_split_geometry(monkeypatch):
    monkeypatch.setattr(_core, "_multiprocessors", 4)
    monkeypatch.setattr(linear, "MIN_K_CHUNK", linear.TILINGS[0].BK)
    monkeypatch.setattr(linear, "MAX_SPLITS", 8)


def run_gemm(a, ta, b, tb, dtype, row_sums=False, bias=None, bias_mode=linear.BIAS_NONE, relu=False):
    """C = op(A) op(B) (+ bias, ReLU) through linear.gemm on plain row-major operands; returns (C, row sums)."""
    m, k = (a.shape[1], a.shape[0]) if ta else a.shape
    n = b.shape[0] if tb else b.shape[1]
    da, db = cu.to_device(a.astype(dtype)), cu.to_device(b.astype(dtype))
    c = cu.empty((m, n), dtype)
    sums = cu.empty((m,), dtype) if row_sums else None
    linear.gemm(da.reshape(1, *a.shape), ta, a.shape[1], db.reshape(1, *b.shape), tb, b.shape[1],
                c.reshape(1, m, n), n, m, n, k, row_sums=sums,
                bias=None if bias is None else cu.to_device(bias.astype(dtype)), bias_mode=bias_mode, relu=relu)
    return c.copy_to_host(), None if sums is None else sums.copy_to_host()


def arrival_counters():
    return linear._arrivals(1).copy_to_host()


@given(m=st.integers(1, 20), n=st.integers(1, 20), k=st.integers(1, 70), ta=st.booleans(), tb=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_split_k_products_and_row_sums_match_numpy(m, n, k, ta, tb, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta else (m, k))
    b = rng.standard_normal((n, k) if tb else (k, n))
    c, sums = run_gemm(a, ta, b, tb, dtype, row_sums=True)
    expected = product(a.astype(dtype), ta, b.astype(dtype), tb)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol * max(1, k))
    np.testing.assert_allclose(sums, (a.T if ta else a).astype(dtype).astype(np.float64).sum(1),
                               rtol=tol, atol=tol * max(1, k))


def test_a_small_output_is_split_along_k_within_one_launch(monkeypatch):
    assert linear.split_k(4, 6, 64) > 1          # one tile for 4 multiprocessors
    t = linear.TILINGS[0]
    assert linear.split_k(8 * t.BM, t.BN, 64, t) == 1    # 8 tiles: two blocks per multiprocessor already
    assert linear.split_k(4, 6, 2 * linear.MIN_K_CHUNK - 1) == 1   # too little k for two slices
    assert linear.split_k(4, 6, 10**6) == linear.MAX_SPLITS
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 64)), rng.standard_normal((64, 6))
    calls = []
    real_launch_grid = linear.launch_grid
    monkeypatch.setattr(linear, "launch_grid", lambda kernel, grid, *rest: (calls.append(grid),
                                                                           real_launch_grid(kernel, grid, *rest)))
    with cu.count_launches() as launches:
        c, _ = run_gemm(a, 0, b, 0, np.float64)
    assert launches() == 1 and calls == [(1, 1, linear.split_k(4, 6, 64))]
    np.testing.assert_allclose(c, a @ b, rtol=1e-12)
    assert not arrival_counters().any()          # every tile's last block reset its counter


def test_the_autotuner_is_offered_about_two_and_four_times_split_ks_slices_where_k_has_them(monkeypatch):
    """Slices are whole slabs (MIN_K_CHUNK is one slab here): 8 slices of 20 slabs are 7 of 3 slabs."""
    chunk, t = linear.MIN_K_CHUNK, linear.TILINGS[0]
    monkeypatch.setattr(linear, "MAX_CANDIDATE_SPLITS", 32)
    assert linear.split_k(4, 6, 64 * chunk) == 8                            # 8 slices, the most split_k cuts
    assert linear.candidate_splits(4, 6, 64 * chunk, t) == [None, 16, 32]
    assert linear.candidate_splits(4, 6, 20 * chunk, t) == [None, 10, 20]   # 7, then 2 and 1 slabs a slice
    assert linear.candidate_splits(4, 6, 12 * chunk, t) == [None, 12]       # 6 slices, then at most 12
    assert linear.candidate_splits(4, 6, 8 * chunk, t) == [None]            # no more slabs than slices
    assert linear.split_k(4, 2 * t.BN, 64 * chunk, t) == 4                  # two tiles: 4 slices
    assert linear.candidate_splits(4, 2 * t.BN, 64 * chunk, t) == [None, 8, 16]   # 2x and 4x split_k's
    monkeypatch.setattr(linear, "MAX_CANDIDATE_SPLITS", 16)
    assert linear.candidate_splits(4, 6, 64 * chunk, t) == [None, 16]
    assert linear.candidate_splits(8 * t.BM, t.BN, 64 * chunk, t) == [None]  # not split: enough blocks already
    assert linear.candidate_launches(4, 6, 64 * chunk)[0] == (linear.tiling_for(4, 6), None)   # the heuristic first


@given(m=st.integers(1, 12), n=st.integers(1, 12), k=st.integers(1, 90), splits=st.integers(1, 40),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_a_gemm_launched_with_any_number_of_slices_gives_the_product_and_leaves_no_empty_slice(m, n, k, splits, dtype,
                                                                                               seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    tiling = linear.TILINGS[0]
    grid = linear.gemm_grid(tiling, m, n, k, splits)
    assert 1 <= grid.splits <= splits and grid.grid[2] == grid.splits and grid.k_chunk % tiling.BK == 0
    assert (grid.splits - 1) * grid.k_chunk < k <= grid.splits * grid.k_chunk or grid.splits == 1
    c, sums = cu.empty((m, n), dtype), cu.empty((m,), dtype)
    with cu.count_launches() as launches:
        linear.gemm(cu.to_device(a).reshape(1, m, k), 0, k, cu.to_device(b).reshape(1, k, n), 0, n, c.reshape(1, m, n),
                    n, m, n, k, row_sums=sums, tiling=tiling, splits=splits)
    assert launches() == 1
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c.copy_to_host(), product(a, 0, b, 0), rtol=tol, atol=tol * k)
    np.testing.assert_allclose(sums.copy_to_host(), a.astype(np.float64).sum(1), rtol=tol, atol=tol * k)
    assert not arrival_counters().any()


@pytest.mark.parametrize("bias_mode", [linear.BIAS_ROW, linear.BIAS_COL])
@pytest.mark.parametrize("relu", [False, True])
def test_a_split_product_gets_the_bias_and_relu_once_after_the_sum(bias_mode, relu):
    rng = np.random.default_rng(2)
    m, n, k = 11, 9, 70                          # slices of one slab over 70
    assert linear.split_k(m, n, k) > 1
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    bias = rng.standard_normal(m if bias_mode == linear.BIAS_ROW else n)
    c, sums = run_gemm(a, 0, b, 0, np.float64, row_sums=True, bias=bias, bias_mode=bias_mode, relu=relu)
    expected = a @ b + (bias[:, None] if bias_mode == linear.BIAS_ROW else bias[None, :])
    np.testing.assert_allclose(c, np.maximum(expected, 0) if relu else expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sums, a.sum(1), rtol=1e-12)
    assert not arrival_counters().any()


def run_blocks_in_reverse(monkeypatch):
    """The simulator runs a grid's blocks in np.ndindex order (z fastest: the last slice arrives last);
    from here on, in reverse (slice 0 arrives last)."""
    import types

    import numba.cuda.simulator.kernel as simulated
    if not hasattr(simulated, "np"):
        pytest.skip("not Numba's simulator")
    reversed_np = types.SimpleNamespace(**{name: getattr(np, name) for name in dir(np) if not name.startswith("__")})
    reversed_np.ndindex = lambda *shape: reversed(list(np.ndindex(*shape)))
    monkeypatch.setattr(simulated, "np", reversed_np)


@pytest.mark.parametrize("last_slice_arrives", ["last", "first"])
def test_a_split_product_adds_its_slices_in_slice_order(last_slice_arrives, monkeypatch):
    """Deterministic: the last block to arrive adds slice 0, 1, 2, 3 in that order, whichever block
    it is. The slices' partial products 1e16, 1, -1e16, 1 give 1 in that order (float64: 1e16 + 1
    rounds to 1e16), 0 in reverse or starting from the last slice. The simulator runs the blocks in
    np.ndindex order (z fastest: slice 3 arrives last); reversed, slice 0 arrives last."""
    if last_slice_arrives == "first":
        run_blocks_in_reverse(monkeypatch)
    k = 4 * linear.MIN_K_CHUNK
    assert linear.split_k(1, 1, k) == 4
    a = np.ones((1, k))
    b = np.zeros((k, 1))
    b[::linear.MIN_K_CHUNK, 0] = [1e16, 1.0, -1e16, 1.0]   # one product per slice
    c, sums = run_gemm(a, 0, b, 0, np.float64, row_sums=True)
    assert c[0, 0] == 1.0 and sums[0] == k


def test_a_sum_of_many_slices_is_added_in_groups_of_about_their_square_root():
    """Up to ONE_LEVEL_SLICES slices, one group (the tile's last block adds them all); beyond, groups
    of ceil(sqrt(s)) slices, each group's last block adding its own, with one counter per group after
    the tiles' counters."""
    assert [linear.slice_group(s) for s in (1, 2, 8, 9, 10, 16, 17, 128, 502)] == [1, 2, 8, 3, 4, 4, 5, 12, 23]
    assert linear.arrival_counters(5, 1) == 5                      # not split: a counter per tile
    assert linear.arrival_counters(5, 9) == 5 * (1 + 3)            # 3 groups of 3 slices
    assert linear.arrival_counters(1, 128) == 1 + 11               # 11 groups of 12 (the last of 8)
    # sized for groups even where the sum takes one level (the kernel's ONE_LEVEL_SLICES is fixed
    # when it compiles; the host's count must not depend on it)
    assert linear.arrival_counters(5, 8) == 5 * (1 + 3)
    assert linear.gemm_grid(linear.TILINGS[0], 3, 2, 40 * linear.TILINGS[0].BK, 10).counters == 1 + 3


@pytest.mark.parametrize("last_slice_arrives", ["last", "first"])
def test_a_sum_in_groups_adds_each_groups_slices_in_order_then_the_groups_in_order(last_slice_arrives,
                                                                                     monkeypatch):
    """Nine slices: groups (0, 1, 2), (3, 4, 5), (6, 7, 8). Partial products 1, 1, 1e16 | 1, 0, 0 |
    1, 0, 1 (float64, whose spacing at 1e16 is 2) give 1e16 + 2, 1 and 2 by group, then 1e16 + 6 in
    group order; added in plain slice order, or the groups in reverse, they give 1e16 + 4. The same
    whichever block of each group, and whichever group, arrives last."""
    if last_slice_arrives == "first":
        run_blocks_in_reverse(monkeypatch)
    chunk = linear.MIN_K_CHUNK
    k = 9 * chunk
    a = np.ones((1, k))
    b = np.zeros((k, 1))
    b[::chunk, 0] = [1, 1, 1e16, 1, 0, 0, 1, 0, 1]          # one product per slice
    c, sums = cu.empty((1, 1), np.float64), cu.empty((1,), np.float64)
    linear.gemm(cu.to_device(a).reshape(1, 1, k), 0, k, cu.to_device(b).reshape(1, k, 1), 0, 1, c.reshape(1, 1, 1),
                1, 1, 1, k, row_sums=sums, splits=9)
    assert linear.gemm_grid(linear.tiling_for(1, 1), 1, 1, k, 9).splits == 9
    assert c.copy_to_host()[0, 0] - 1e16 == 6.0 and sums.copy_to_host()[0] == k
    assert not arrival_counters().any()         # every group's and tile's last block reset its counter


@given(m=st.integers(1, 2 * linear.TILINGS[0].BM + 3), n=st.integers(1, 2 * linear.TILINGS[0].BN + 3),
       slabs=st.integers(9, 60), splits=st.integers(9, 60), seed=st.integers(0, 2**16))
def test_a_product_summed_in_groups_matches_numpy_on_every_tile(m, n, slabs, splits, seed):
    """Many slices (groups of them) on a grid of up to three by three tiles of the platform's default
    tiling: each tile's groups have their own counters."""
    rng = np.random.default_rng(seed)
    k = slabs * linear.TILINGS[0].BK - int(rng.integers(0, linear.TILINGS[0].BK))
    assume(linear.gemm_grid(linear.TILINGS[0], m, n, k, splits).splits > linear.ONE_LEVEL_SLICES)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    c, sums = cu.empty((m, n), np.float64), cu.empty((m,), np.float64)
    linear.gemm(cu.to_device(a).reshape(1, m, k), 0, k, cu.to_device(b).reshape(1, k, n), 0, n, c.reshape(1, m, n),
                n, m, n, k, row_sums=sums, tiling=linear.TILINGS[0], splits=splits)
    np.testing.assert_allclose(c.copy_to_host(), a @ b, rtol=1e-12, atol=1e-12 * k)
    np.testing.assert_allclose(sums.copy_to_host(), a.sum(1), rtol=1e-12, atol=1e-12 * k)
    assert not arrival_counters().any()


@pytest.mark.parametrize("last_slice_arrives", ["last", "first"])
def test_groups_of_slices_on_row_tiles_beyond_the_grid_limit_keep_their_own_counters(last_slice_arrives,
                                                                                     monkeypatch):
    """5 row tiles on a grid 2 tiles high, 3 column tiles, 17 slices in 4 groups of 5: a block takes
    several row tiles in turn, each with its own tile and group counters."""
    if last_slice_arrives == "first":
        run_blocks_in_reverse(monkeypatch)
    monkeypatch.setattr(linear, "MAX_GRID_Y", 2)
    tiling = linear.TILINGS[0]
    m, n, k = 4 * tiling.BM + 5, 2 * tiling.BN + 1, 17 * tiling.BK
    grid = linear.gemm_grid(tiling, m, n, k, 17)
    assert grid.grid == (3, 2, 17) and linear.slice_group(17) == 5 and grid.counters == 15 * (1 + 4)
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    c, sums = cu.empty((m, n), np.float64), cu.empty((m,), np.float64)
    linear.gemm(cu.to_device(a).reshape(1, m, k), 0, k, cu.to_device(b).reshape(1, k, n), 0, n, c.reshape(1, m, n),
                n, m, n, k, row_sums=sums, tiling=tiling, splits=17)
    np.testing.assert_allclose(c.copy_to_host(), a @ b, rtol=1e-12, atol=1e-12 * k)
    np.testing.assert_allclose(sums.copy_to_host(), a.sum(1), rtol=1e-12, atol=1e-12 * k)
    assert not arrival_counters().any()


def test_row_tiles_beyond_the_grid_limit_are_taken_in_turn(monkeypatch):
    monkeypatch.setattr(linear, "MAX_GRID_Y", 2)      # 5 row tiles on a grid 2 tiles high
    monkeypatch.setattr(_core, "_multiprocessors", 20)   # and enough multiprocessors to split k in 3
    rng = np.random.default_rng(3)
    m, k = 4 * linear.TILINGS[0].BM + 5, 3 * linear.TILINGS[0].BK
    assert linear.tiling_for(m, 11) == linear.TILINGS[0]
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, 11))
    assert linear.split_k(m, 11, k) == 3
    for max_splits in (1, linear.MAX_SPLITS):
        monkeypatch.setattr(linear, "MAX_SPLITS", max_splits)
        c, sums = run_gemm(a, 0, b, 0, np.float64, row_sums=True)
        np.testing.assert_allclose(c, a @ b, rtol=1e-12)
        np.testing.assert_allclose(sums, a.sum(1), rtol=1e-12)
    assert not arrival_counters().any()


def test_an_empty_grid_launches_nothing(monkeypatch):
    monkeypatch.setattr(_core, "_FAST_LAUNCH", False)     # the stand-in kernel is no Numba dispatcher
    calls = []

    class Kernel:
        def __getitem__(self, config):
            return lambda *args: calls.append(config)
    with cu.count_launches() as launches:
        _core.launch_grid(Kernel(), (0, 3), (8, 8))
        _core.launch_grid(Kernel(), (2, 3, 0), (8, 8))
        _core.launch_grid(Kernel(), (1, 1), (8, 8))
    assert calls == [((1, 1), (8, 8))] and launches() == 3


def test_matmul_with_an_empty_operand_gives_zeros_without_a_launch_error():
    a, b = np.zeros((0, 3), np.float32), np.zeros((3, 4), np.float32)
    assert cu.matmul(cu.to_device(a), cu.to_device(b)).copy_to_host().shape == (0, 4)


@pytest.mark.parametrize("masked", [linear.MASK_A, linear.MASK_B])
@pytest.mark.parametrize("max_splits", [1, 8])
def test_a_masked_operand_is_read_through_its_relu_mask(masked, max_splits, monkeypatch):
    """The backward of a fused Linear/Conv2d + ReLU: grad_y is read as grad_y ⊙ 1[y > 0] (y = 0,
    negative or NaN: no gradient), as relu_backward then the GEMM would give."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((6, 40)), rng.standard_normal((40, 5))
    y = rng.standard_normal((6, 40) if masked == linear.MASK_A else (40, 5))
    y[0, :3] = [0.0, np.nan, -0.0]
    operand = a if masked == linear.MASK_A else b
    m, n, k = 6, 5, 40
    monkeypatch.setattr(linear, "MAX_SPLITS", max_splits)
    assert (linear.split_k(m, n, k) > 1) == (max_splits > 1)
    da, db, dy = cu.to_device(a.astype(np.float32)), cu.to_device(b.astype(np.float32)), cu.to_device(y.astype(np.float32))
    c = cu.empty((m, n), np.float32)
    sums = cu.empty((m,), np.float32)
    linear.gemm(da.reshape(1, 6, 40), 0, 40, db.reshape(1, 40, 5), 0, 5, c.reshape(1, m, n), n, m, n, k,
                row_sums=sums, mask=dy.reshape(1, *y.shape), masked=masked)
    gated = np.where(y > 0, operand, 0.0)
    a_used, b_used = (gated, b) if masked == linear.MASK_A else (a, gated)
    np.testing.assert_allclose(c.copy_to_host(), a_used @ b_used, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(sums.copy_to_host(), a_used.sum(1), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("max_splits", [1, 8])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_a_dropout_in_the_epilogue_is_dropout_forward_of_the_relu_output(p, max_splits, monkeypatch):
    """linear_relu_dropout_forward = dropout_forward(linear_relu_forward(...)) bit for bit: the same
    hash of (seed, flat index), also when the last block of a split tile applies it."""
    monkeypatch.setattr(linear, "MAX_SPLITS", max_splits)
    rng = np.random.default_rng(6)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((13, 40), (11, 40), (11,)))
    assert (linear.split_k(13, 11, 40) > 1) == (max_splits > 1)
    dx, dw, db = cu.to_device(x), cu.to_device(w), cu.to_device(b)
    fused = cu.linear_relu_dropout_forward(dx, dw, db, p, 1234).copy_to_host()
    plain = cu.dropout_forward(cu.linear_relu_forward(dx, dw, db), p, 1234).copy_to_host()
    np.testing.assert_array_equal(fused, plain)
    assert 0 < (fused == 0).mean() < 1


def test_a_masked_operand_is_scaled_where_its_mask_passes():
    """The backward of a fused Linear + ReLU + Dropout: grad_z read as grad_z ⊙ 1[z > 0] / (1 - p)."""
    rng = np.random.default_rng(7)
    g, w, x = (rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (5, 4), (6, 4)))
    z = np.maximum(rng.standard_normal((6, 5)), 0).astype(np.float32)
    p = 0.25
    needs = (True, True, True)
    got = cu.linear_relu_dropout_backward(cu.to_device(g), cu.to_device(z), cu.to_device(x), cu.to_device(w), needs, p)
    gated = np.where(z > 0, g * np.float32(1 / (1 - p)), np.float32(0))
    want = (gated @ w, gated.T @ x, gated.sum(0))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.copy_to_host(), b, rtol=2e-5, atol=2e-5)
    # grad_b alone (no grad_W GEMM to carry it): the mask and scale applied before the sum
    _, _, grad_b = cu.linear_relu_dropout_backward(cu.to_device(g), cu.to_device(z), cu.to_device(x),
                                                   cu.to_device(w), (False, False, True), p)
    np.testing.assert_allclose(grad_b.copy_to_host(), gated.sum(0), rtol=2e-5, atol=2e-5)


def test_a_fused_dropout_needs_a_plain_output_and_no_masked_operand():
    a = cu.to_device(np.ones((1, 2, 3), np.float32))
    plain_c = cu.empty((1, 2, 2), np.float32)
    linear.gemm(a, 0, 3, a, 1, 3, plain_c, 2, 2, 2, 3, dropout=(0.5, 1))      # accepted
    with pytest.raises(ValueError, match="fused dropout"):                     # C split over planes
        linear.gemm(a, 0, 3, a, 1, 3, cu.empty((2, 2, 1), np.float32), 1, 2, 2, 3, dropout=(0.5, 1))
    with pytest.raises(ValueError, match="fused dropout"):                     # a masked operand
        linear.gemm(a, 0, 3, a, 1, 3, plain_c, 2, 2, 2, 3, dropout=(0.5, 1), mask=a, masked=linear.MASK_A)


def split_columns(matrix, p):
    """The split-column layout of a logical (R, C) matrix: element (r, c) at [c // p, r, c % p]
    (an NCHW activation is (C, N P) with p = P), its slots past C filled with NaN (never read)."""
    r, c = matrix.shape
    q = -(-c // p)
    padded = np.full((r, q * p), np.nan)
    padded[:, :c] = matrix
    return np.ascontiguousarray(padded.reshape(r, q, p).transpose(1, 0, 2))


@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize("pa, pb", [(1, 3), (3, 1), (5, 13)])
def test_operands_split_in_planes_narrower_than_a_slab_are_read_right(ta, tb, pa, pb):
    """Planes of p < BK columns (tiny NCHW outputs): each thread's k column steps across several
    planes per slab (_next_slab_column), also from a split-K slice's start (k = 37: slices start at
    multiples of BK, not of p)."""
    rng = np.random.default_rng(pa * 10 + pb + 100 * ta + 1000 * tb)
    m, n, k = 5, 6, 37
    assert linear.split_k(m, n, k) > 1
    a = rng.standard_normal((k, m) if ta else (m, k))
    b = rng.standard_normal((n, k) if tb else (k, n))
    c = cu.empty((m, n), np.float64)
    sums = cu.empty((m,), np.float64)
    linear.gemm(cu.to_device(split_columns(a, pa)), ta, pa, cu.to_device(split_columns(b, pb)), tb, pb,
                c.reshape(1, m, n), n, m, n, k, row_sums=sums)
    op_a, op_b = (a.T if ta else a), (b.T if tb else b)
    np.testing.assert_allclose(c.copy_to_host(), op_a @ op_b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sums.copy_to_host(), op_a.sum(1), rtol=1e-12, atol=1e-12)


@pytest.fixture(params=linear.GPU_TILINGS, ids=["gpu-default", "gpu-32x128", "gpu-64x128-8x8"])
def gpu_tiling(request, monkeypatch):
    """A GPU tiling (the default: 64x64 tiles, 16-deep slabs, 4x4 per thread, 256 threads), passed
    to ``gemm``: in the simulator, the written-out multiply, the vector-friendly register tiles and
    the fetch of a slab's elements run as they do on a GPU (the simulator's own tilings are 8x8
    and 4x16, 2x2 per thread)."""
    monkeypatch.setattr(linear, "MIN_K_CHUNK", request.param[2])
    return linear.make_tiling(*request.param)


@pytest.mark.parametrize("ta, tb, split, masked", [(0, 0, 1, linear.MASK_NONE), (0, 1, 8, linear.MASK_A),
                                                    (1, 0, 8, linear.MASK_B), (1, 1, 1, linear.MASK_A)])
def test_the_gpu_tiling_gives_the_product_in_the_simulator(gpu_tiling, monkeypatch, ta, tb, split, masked):
    """Edges of the tiles (m, n = 67, 70 past 64x64; 67, 131 past 32x128 and 64x128), k = 37 (a partial slab,
    and with split-K three slices of 16), operands split in planes (p = 5 and 7), A read through a
    strided view (a group's slice, as grouped convolution passes), row sums, and a ReLU mask on
    either operand."""
    rng = np.random.default_rng(ta + 2 * tb + 4 * split)
    monkeypatch.setattr(linear, "MAX_SPLITS", split)
    m, n, k, pa, pb = 67, 70 if gpu_tiling.BN == 64 else 131, 37, 5, 7
    assert (linear.split_k(m, n, k, gpu_tiling) > 1) == (split > 1)
    a = rng.standard_normal((k, m) if ta else (m, k))
    b = rng.standard_normal((n, k) if tb else (k, n))
    y = rng.standard_normal(a.shape if masked == linear.MASK_A else b.shape)
    a3, b3 = split_columns(a, pa), split_columns(b, pb)
    # A as rows 2 .. of a taller array: a view whose first element is not its block's
    taller = np.zeros((a3.shape[0], a3.shape[1] + 3, a3.shape[2]))
    taller[:, 2:2 + a3.shape[1]] = a3
    da = cu.to_device(taller)[:, 2:2 + a3.shape[1]]
    mask = None
    if masked != linear.MASK_NONE:
        y3 = split_columns(y, pa if masked == linear.MASK_A else pb)
        if masked == linear.MASK_A:
            taller_y = np.zeros_like(taller)
            taller_y[:, 2:2 + y3.shape[1]] = y3
            mask = cu.to_device(taller_y)[:, 2:2 + y3.shape[1]]
        else:
            mask = cu.to_device(y3)
    c = cu.empty((m, n), np.float64)
    sums = cu.empty((m,), np.float64)
    linear.gemm(da, ta, pa, cu.to_device(b3), tb, pb, c.reshape(1, m, n), n, m, n, k, row_sums=sums, mask=mask,
                masked=masked)
    if masked == linear.MASK_A:
        a = np.where(y > 0, a, 0.0)
    elif masked == linear.MASK_B:
        b = np.where(y > 0, b, 0.0)
    op_a, op_b = (a.T if ta else a), (b.T if tb else b)
    np.testing.assert_allclose(c.copy_to_host(), op_a @ op_b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sums.copy_to_host(), op_a.sum(1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tiles, reason", [((64, 64, 16, 3, 4), "must divide"), ((64, 64, 12, 4, 4), "multiple of BK"),
                                           ((8, 8, 4, 2, 2), "multiple of 8"), ((128, 128, 16, 4, 4), "at most 256"),
                                           ((64, 64, 0, 4, 4), "positive")])
def test_a_tiling_the_kernel_cannot_run_is_refused(tiles, reason):
    with pytest.raises(ValueError, match=reason):
        linear.make_tiling(*tiles)
    assert linear.make_tiling(*linear.GPU_TILINGS[0]).NT == 256


def test_the_gemm_tiling_setting_gives_the_tilings_and_a_register_cap_for_two_blocks():
    assert linear.gpu_tilings("") == (linear.Tiling(64, 64, 16, 4, 4, 128), linear.Tiling(32, 128, 16, 4, 4, 128),
                                      linear.Tiling(64, 128, 16, 8, 8, 255))
    assert linear.gpu_tilings("64,128,16,8,8") == (linear.Tiling(64, 128, 16, 8, 8, 255),)     # 128 threads
    assert linear.gpu_tilings("64,128,16,8,8,168;64,64,16,4,4") == (linear.Tiling(64, 128, 16, 8, 8, 168),
                                                                      linear.Tiling(64, 64, 16, 4, 4, 128))


@pytest.mark.parametrize("setting, reason", [("64,64", "BM,BN,BK,TM,TN"), ("64,64,16,4,x", "BM,BN,BK,TM,TN"),
                                             ("64,64,16,4,4,0", "positive"), ("64,64,16,3,4", "must divide"),
                                             ("128,128,16,4,4", "at most 256"), ("64,64,16,4,4,300", "at most 255"),
                                             ("128,128,32,8,8", "shared memory"), ("64,64,16,4,4;", "BM,BN,BK,TM,TN")])
def test_a_gemm_tiling_setting_the_kernel_cannot_run_names_the_variable(setting, reason):
    with pytest.raises(ValueError, match=reason) as error:
        linear.gpu_tilings(setting)
    assert "FASTNN_CUDA_GEMM_TILES" in str(error.value)


def test_a_gemm_takes_the_default_tiling_unless_another_covers_its_output_with_an_eighth_less(gpu_tilings):
    default, rows32, wide = gpu_tilings
    assert linear.tiling_for(256, 1024) == default
    assert linear.tiling_for(800, 50176) == default       # 832 rows against 800: not an eighth
    assert linear.tiling_for(32, 50176) == rows32          # half the rows of a 64-row tile
    assert linear.tiling_for(10, 1024) == rows32
    assert linear.tiling_for(32, 25) == default            # 32 x 128 covers as much as 64 x 64
    assert linear.tiling_for(0, 10) == default
    assert linear.candidate_tilings(32, 50176) == [rows32]
    assert linear.candidate_tilings(32, 25) == [default, rows32]
    assert linear.candidate_tilings(64, 50176) == [default, rows32, wide]
    assert linear.candidate_tilings(800, 50176) == [default, rows32, wide]   # 832 rows, or 800 in 32-row tiles
    assert all(linear.tiling_for(m, n) != wide for m in (1, 63, 64, 65, 200) for n in (1, 64, 100, 129))


def _closure_hash(kernel):
    import hashlib

    from numba.core.serialize import dumps
    return hashlib.sha256(dumps(tuple(c.cell_contents for c in kernel.py_func.__closure__))).hexdigest()


def test_the_tiling_keys_the_gemms_disk_cache():
    """Numba's disk cache keys a kernel on its closure's values (module constants and globals are
    not in the key): the tiling, its register cap and its device functions are in the GEMM kernel's
    closure, so a kernel of another tiling is compiled, not loaded from this one's cache entry, and
    the same tiling made again hashes the same (its cache entry is found)."""
    from numba import float32
    default, other = (linear.make_tiling(*t) for t in linear.GPU_TILINGS[:2])
    kernel = linear._make_gemm(float32, False, False, False, default)
    cells = [c.cell_contents for c in kernel.py_func.__closure__]
    assert tuple(default) in cells
    assert _closure_hash(kernel) == _closure_hash(linear._make_gemm(float32, False, False, False, default))
    assert _closure_hash(kernel) != _closure_hash(linear._make_gemm(float32, False, False, False, other))
    capped = linear.make_tiling(*linear.GPU_TILINGS[0], registers=96)
    assert _closure_hash(kernel) != _closure_hash(linear._make_gemm(float32, False, False, False, capped))
