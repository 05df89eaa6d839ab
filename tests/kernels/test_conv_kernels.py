"""Convolution kernels: compiled (cpu) vs reference over hypothesis-drawn geometries, the
reference backward vs central finite differences, and the reference vs PyTorch."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_cases import (
    DTYPES,
    assert_close,
    assert_gradients_close,
    conv_geometries,
    noncontiguous,
    out_size,
    rand,
)

import fastnn
import fastnn.backends.cpu as cpu
import fastnn.backends.reference as ref
from fastnn.backends.cpu import _blas, _conv, _openmp
from fastnn.backends.cpu import conv as cpu_conv

ALL = (True, True, True)


@pytest.fixture(params=["images", "batched"])
def schedule(request, monkeypatch):
    """The compiled conv in one schedule for every batch size: per image, on two OpenMP threads
    (so that the per-thread partial sums are added), or batched; yields its name, which the
    forward records as saved[0]. The direct and Winograd kernels, which would take some of these
    float32 layers, are off here: tests/kernels/test_direct_conv_kernels.py and
    test_winograd_conv_kernels.py have theirs."""
    with fastnn.use_backend("cpu"):          # loads the backend: BLAS limited to one thread
        if request.param == "images":
            fastnn.set_num_threads(2)
            if not _blas.get_split():        # BLAS keeps its own pool here: per image needs 1 thread
                fastnn.set_num_threads(1)
        monkeypatch.setattr(cpu_conv, "PER_IMAGE_MIN_IMAGES_PER_THREAD", 0 if request.param == "images" else 10**9)
        monkeypatch.setitem(cpu_conv._direct, "enabled", False)
        monkeypatch.setitem(cpu_conv._winograd, "enabled", False)
        yield request.param


def _forward(schedule, x, w, b, *args):
    y, saved = cpu.conv2d_forward(x, w, b, *args)
    assert saved[0] == schedule
    return y, saved


def _conv_inputs(rng, geometry, dtype, bias=True):
    x = rand(rng, geometry["x_shape"], dtype)
    w = rand(rng, geometry["weight_shape"], dtype)
    b = rand(rng, geometry["weight_shape"][:1], dtype) if bias else None
    return x, w, b


def _args(geometry):
    return geometry["stride"], geometry["padding"], geometry["dilation"], geometry["groups"]


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(geometry=conv_geometries(), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_conv2d_forward_and_backward_match_reference(schedule, dtype, geometry, bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = _conv_inputs(rng, geometry, dtype, bias)
    y, saved = _forward(schedule, x, w, b, *_args(geometry))
    y_ref, saved_ref = ref.conv2d_forward(x, w, b, *_args(geometry))
    assert y.flags.c_contiguous
    assert_close(y, y_ref, dtype)
    grad_y = rand(rng, y.shape, dtype)
    grads = cpu.conv2d_backward(grad_y, saved, ALL)
    grads_ref = ref.conv2d_backward(grad_y, saved_ref, ALL)
    for name, g, g_ref in zip(("x", "weight", "bias"), grads, grads_ref):
        if g_ref is None:
            assert g is None and name == "bias" and not bias
        else:
            assert_close(g, g_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", [
    dict(x_shape=(4, 32, 14, 14), weight_shape=(64, 32, 5, 5), stride=(1, 1), padding=(2, 2), dilation=(1, 1),
         groups=1),                                                       # tfconvnet's conv2
    dict(x_shape=(3, 8, 23, 19), weight_shape=(6, 4, 3, 4), stride=(2, 3), padding=(2, 1), dilation=(2, 1),
         groups=2),
    dict(x_shape=(5, 16, 9, 7), weight_shape=(12, 16, 1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1),
         groups=1),                                                       # 1x1: x is its own column matrix
    dict(x_shape=(6, 6, 9, 7), weight_shape=(6, 2, 1, 1), stride=(1, 1), padding=(0, 0), dilation=(2, 1),
         groups=3),
], ids=["tfconvnet-conv2", "strided-dilated-grouped", "pointwise", "pointwise-grouped"])
def test_conv2d_matches_reference_on_layers_large_enough_for_openmp(schedule, dtype, geometry):
    rng = np.random.default_rng(6)
    x, w, b = _conv_inputs(rng, geometry, dtype)
    y, saved = _forward(schedule, x, w, b, *_args(geometry))
    y_ref, saved_ref = ref.conv2d_forward(x, w, b, *_args(geometry))
    assert_close(y, y_ref, dtype)
    grad_y = rand(rng, y.shape, dtype)
    for g, g_ref in zip(cpu.conv2d_backward(grad_y, saved, ALL), ref.conv2d_backward(grad_y, saved_ref, ALL)):
        assert_close(g, g_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_accepts_non_contiguous_inputs(schedule, dtype):
    rng = np.random.default_rng(0)
    geometry = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    x, w, b = rand(rng, (2, 4, 9, 8), dtype), rand(rng, (6, 2, 3, 3), dtype), rand(rng, (6,), dtype)
    x_nc, w_nc, b_nc = noncontiguous(x), np.asfortranarray(w), noncontiguous(b)
    assert not (x_nc.flags.c_contiguous or w_nc.flags.c_contiguous or b_nc.flags.c_contiguous)
    y, saved = _forward(schedule, x_nc, w_nc, b_nc, *_args(geometry))
    y_ref, saved_ref = ref.conv2d_forward(x, w, b, *_args(geometry))
    assert_close(y, y_ref, dtype)
    grad_y = rand(rng, y.shape, dtype)
    for g, g_ref in zip(cpu.conv2d_backward(noncontiguous(grad_y), saved, ALL),
                        ref.conv2d_backward(grad_y, saved_ref, ALL)):
        assert_close(g, g_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(geometry=conv_geometries(), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_conv2d_relu_matches_the_reference_conv_then_relu(schedule, dtype, geometry, bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = _conv_inputs(rng, geometry, dtype, bias)
    y, saved = cpu.conv2d_relu_forward(x, w, b, *_args(geometry))
    assert saved[0] == schedule
    z_ref, saved_ref = ref.conv2d_forward(x, w, b, *_args(geometry))
    y_ref = ref.relu_forward(z_ref)
    assert_close(y, y_ref, dtype)
    assert (y >= 0).all()
    grad_y = rand(rng, y.shape, dtype)
    grads = cpu.conv2d_relu_backward(grad_y, y, saved, ALL)
    grads_ref = ref.conv2d_backward(ref.relu_backward(grad_y, y_ref), saved_ref, ALL)
    for g, g_ref in zip(grads, grads_ref):
        if g_ref is None:
            assert g is None
        else:
            assert_close(g, g_ref, dtype)


def test_conv2d_relu_gives_the_same_bits_as_conv2d_then_relu(schedule):
    rng = np.random.default_rng(10)
    x, w, b = rand(rng, (6, 8, 12, 12), np.float32), rand(rng, (16, 8, 3, 3), np.float32), rand(rng, (16,), np.float32)
    args = ((1, 1), (1, 1), (1, 1), 1)
    y, saved = cpu.conv2d_relu_forward(x, w, b, *args)
    z, saved_z = _forward(schedule, x, w, b, *args)
    np.testing.assert_array_equal(y, cpu.relu_forward(z))
    grad_y = rand(rng, y.shape, np.float32)
    for fused, plain in zip(cpu.conv2d_relu_backward(grad_y, y, saved, ALL),
                            cpu.conv2d_backward(cpu.relu_backward(grad_y, y), saved_z, ALL)):
        np.testing.assert_array_equal(fused, plain)


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True),
                                   (False, True, True)])
def test_conv2d_backward_computes_only_what_is_needed(schedule, needs):
    rng = np.random.default_rng(1)
    x, w, b = rand(rng, (2, 3, 6, 6), np.float64), rand(rng, (4, 3, 3, 3), np.float64), rand(rng, (4,), np.float64)
    y, saved = _forward(schedule, x, w, b, (1, 1), (1, 1), (1, 1), 1)
    _, saved_ref = ref.conv2d_forward(x, w, b, (1, 1), (1, 1), (1, 1), 1)
    grad_y = rand(rng, y.shape, np.float64)
    grads_ref = ref.conv2d_backward(grad_y, saved_ref, ALL)
    assert_gradients_close(needs, cpu.conv2d_backward(grad_y, saved, needs), grads_ref)


def test_conv2d_backward_can_run_twice_on_the_same_saved_state(schedule):
    rng = np.random.default_rng(2)
    x, w = rand(rng, (5, 2, 5, 5), np.float32), rand(rng, (3, 2, 3, 3), np.float32)
    y, saved = _forward(schedule, x, w, None, (1, 1), (0, 0), (1, 1), 1)
    grad_y = rand(rng, y.shape, np.float32)
    first = cpu.conv2d_backward(grad_y, saved, ALL)
    second = cpu.conv2d_backward(grad_y, saved, ALL)
    assert first[2] is None
    for a, b in zip(first[:2], second[:2]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", [cpu, ref], ids=["cpu", "reference"])
def test_conv2d_with_an_empty_batch(backend):
    x, w, b = np.zeros((0, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32), np.ones(3, np.float32)
    y, saved = backend.conv2d_forward(x, w, b, (1, 1), (1, 1), (1, 1), 1)
    assert y.shape == (0, 3, 5, 5)
    gx, gw, gb = backend.conv2d_backward(np.zeros(y.shape, np.float32), saved, ALL)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (3,)
    assert not gw.any() and not gb.any()


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(geometry=conv_geometries(), seed=st.integers(0, 2**31), contiguous=st.booleans())
def test_im2col_and_col2im_match_reference(dtype, geometry, seed, contiguous):
    rng = np.random.default_rng(seed)
    x = rand(rng, geometry["x_shape"], dtype)
    c = geometry["x_shape"][1]
    kernel = geometry["weight_shape"][2:]
    args = (kernel, geometry["stride"], geometry["padding"], geometry["dilation"])
    cols = cpu.im2col(x if contiguous else noncontiguous(x), *args)
    np.testing.assert_array_equal(cols, ref.im2col(x, *args))  # a pure copy: exact
    grad_cols = rand(rng, cols.shape, dtype)
    assert_close(cpu.col2im(grad_cols if contiguous else noncontiguous(grad_cols), x.shape, *args),
                 ref.col2im(grad_cols, x.shape, *args), dtype)
    assert cols.shape[1] == c * kernel[0] * kernel[1]


@pytest.mark.parametrize("backend", [cpu, ref], ids=["cpu", "reference"])
@settings(max_examples=25, deadline=None)
@given(geometry=conv_geometries(), seed=st.integers(0, 2**31))
def test_col2im_is_the_adjoint_of_im2col(backend, geometry, seed):
    # <im2col(x), c> = <x, col2im(c)>: col2im is exactly the transpose that backward needs
    rng = np.random.default_rng(seed)
    x = rand(rng, geometry["x_shape"], np.float64)
    args = (geometry["weight_shape"][2:], geometry["stride"], geometry["padding"], geometry["dilation"])
    cols = backend.im2col(x, *args)
    c = rand(rng, cols.shape, np.float64)
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, backend.col2im(c, x.shape, *args)), rtol=1e-10)


def test_compiled_layout_kernels_give_the_same_bits_on_one_and_two_threads():
    rng = np.random.default_rng(3)
    x = rand(rng, (8, 16, 20, 20), np.float32)  # large enough to start an OpenMP team
    args = ((3, 3), (1, 1), (1, 1), (1, 1))
    before = _openmp.get_num_threads()
    try:
        _openmp.set_num_threads(1)
        assert _openmp.get_num_threads() == 1
        one = cpu.im2col(x, *args)
        one_back = cpu.col2im(one, x.shape, *args)
        _openmp.set_num_threads(2)
        np.testing.assert_array_equal(cpu.im2col(x, *args), one)
        np.testing.assert_array_equal(cpu.col2im(one, x.shape, *args), one_back)
    finally:
        _openmp.set_num_threads(before)
    assert _openmp.max_threads() >= 1


def test_conv2d_from_concurrent_python_threads(schedule):
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(4)
    xs = [rand(rng, (4, 3, 12, 12), np.float32) for _ in range(6)]
    w = rand(rng, (8, 3, 3, 3), np.float32)

    def run(x):
        y, saved = _forward(schedule, x, w, None, (1, 1), (1, 1), (1, 1), 1)
        return y, cpu.conv2d_backward(np.ones_like(y), saved, ALL)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, xs))
    for x, (y, grads) in zip(xs, results):
        y_ref, saved_ref = ref.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), 1)
        assert_close(y, y_ref)
        for g, g_ref in zip(grads[:2], ref.conv2d_backward(np.ones_like(y), saved_ref, ALL)[:2]):
            assert_close(g, g_ref)


def test_per_image_conv_weight_gradient_sums_every_image_once_whatever_the_team_size():
    # more threads than images: idle threads' partial sums must be zeros, not left-over memory
    rng = np.random.default_rng(8)
    x, w, b = rand(rng, (3, 4, 6, 6), np.float64), rand(rng, (5, 4, 3, 3), np.float64), rand(rng, (5,), np.float64)
    args = ((1, 1), (1, 1), (1, 1))
    y_ref, saved_ref = ref.conv2d_forward(x, w, b, *args, 1)
    grad_y = rand(rng, y_ref.shape, np.float64)
    grads_ref = ref.conv2d_backward(grad_y, saved_ref, ALL)
    for threads in (1, 2, 5):
        workspace = np.full(_conv.workspace_size(x.shape, 5, (3, 3), *args, threads), np.nan)
        y = np.full(y_ref.shape, np.nan)
        _conv.conv2d_forward_images(x, w, b, 1, (3, 3), *args, workspace, y, threads)
        assert_close(y, y_ref)
        grad_x, grad_w, grad_b = np.full(x.shape, np.nan), np.full(w.shape, np.nan), np.full(5, np.nan)
        _conv.conv2d_backward_images(x, w, grad_y, 1, (3, 3), *args, workspace, grad_x, grad_w,
                                     np.full(threads * w.size, np.nan), grad_b, np.full(threads * 5, np.nan),
                                     threads)
        for g, g_ref in zip((grad_x, grad_w, grad_b), grads_ref):
            assert_close(g, g_ref)


@pytest.mark.parametrize("mistake, message", [
    (dict(workspace=np.zeros(7, np.float32)), "workspace must hold"),
    (dict(y=np.zeros((2, 3, 5, 4), np.float32)), "y must have shape"),
    (dict(bias=np.zeros(2, np.float32)), "bias must have shape"),
    (dict(weight=np.zeros((3, 2, 3, 3), np.float32)), "does not fit"),
    (dict(x=np.zeros((0, 2, 5, 5), np.float32)), "non-empty"),
    (dict(threads=0), "threads must be"),
])
def test_per_image_conv_kernel_rejects_buffers_that_do_not_fit(mistake, message):
    args = dict(x=np.zeros((2, 2, 5, 5), np.float32), weight=np.zeros((3, 2, 3, 3), np.float32),
                bias=np.zeros(3, np.float32), y=np.zeros((2, 3, 5, 5), np.float32), threads=2)
    args["workspace"] = np.zeros(_conv.workspace_size((2, 2, 5, 5), 3, (3, 3), (1, 1), (1, 1), (1, 1), 2), np.float32)
    args.update(mistake)
    with pytest.raises(ValueError, match=message):
        _conv.conv2d_forward_images(args["x"], args["weight"], args["bias"], 2 if "weight" in mistake else 1,
                                    (3, 3), (1, 1), (1, 1), (1, 1), args["workspace"], args["y"], args["threads"])


# -- the reference against finite differences ------------------------------------------------

def _numeric_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() w.r.t. every entry of a (modified in place)."""
    grad = np.zeros_like(a)
    flat, gflat = a.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("geometry", [
    dict(x_shape=(2, 2, 5, 4), weight_shape=(3, 2, 3, 2), stride=(1, 1), padding=(1, 0), dilation=(1, 1), groups=1),
    dict(x_shape=(1, 4, 7, 6), weight_shape=(4, 2, 2, 3), stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2),
    dict(x_shape=(2, 3, 6, 6), weight_shape=(3, 1, 3, 3), stride=(2, 3), padding=(2, 1), dilation=(1, 2), groups=3),
])
def test_reference_conv2d_backward_matches_finite_differences(geometry):
    rng = np.random.default_rng(5)
    x, w, b = _conv_inputs(rng, geometry, np.float64)
    y, saved = ref.conv2d_forward(x, w, b, *_args(geometry))
    r = rand(rng, y.shape, np.float64)                       # L = Σ y ⊙ r, so dL/dy = r

    def loss():
        return float(np.sum(ref.conv2d_forward(x, w, b, *_args(geometry))[0] * r))

    grad_x, grad_w, grad_b = ref.conv2d_backward(r, saved, ALL)
    np.testing.assert_allclose(grad_x, _numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_w, _numeric_grad(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_b, _numeric_grad(loss, b), rtol=1e-6, atol=1e-8)


# -- the reference (and the compiled kernels) against PyTorch ---------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", [cpu, ref], ids=["cpu", "reference"])
@settings(max_examples=20, deadline=None)
@given(geometry=conv_geometries(), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_conv2d_matches_pytorch(backend, dtype, geometry, bias, seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x, w, b = _conv_inputs(rng, geometry, dtype, bias)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ty = torch.nn.functional.conv2d(tx, tw, tb, geometry["stride"], geometry["padding"], geometry["dilation"],
                                    geometry["groups"])
    y, saved = backend.conv2d_forward(x, w, b, *_args(geometry))
    assert_close(y, ty.detach().numpy(), dtype)
    grad_y = rand(rng, y.shape, dtype)
    ty.backward(torch.tensor(grad_y))
    grad_x, grad_w, grad_b = backend.conv2d_backward(grad_y, saved, ALL)
    assert_close(grad_x, tx.grad.numpy(), dtype)
    assert_close(grad_w, tw.grad.numpy(), dtype)
    if bias:
        assert_close(grad_b, tb.grad.numpy(), dtype)


def test_im2col_output_size_formula():
    x = np.zeros((1, 1, 10, 9), np.float32)
    cols = cpu.im2col(x, (3, 2), (2, 3), (1, 0), (2, 1))
    assert cols.shape == (1, 6, out_size(10, 3, 2, 1, 2) * out_size(9, 2, 3, 0, 1))
