"""Every cuda kernel against the reference kernel of the same name, on small shapes (odd sizes,
stride 2, padding, dilation, groups), float32 and a float64 case. Runs under Numba's CUDA
simulator in CI (see conftest.py); with ``NUMBA_ENABLE_CUDASIM=0`` on a GPU."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import fastnn.backends.reference as ref
import fastnn.device

if fastnn.device.cuda_unavailable_reason():
    pytest.skip(f"the cuda device is not usable: {fastnn.device.cuda_unavailable_reason()}", allow_module_level=True)
import fastnn.backends.cuda as cu  # noqa: E402

from device_arrays import close, dev, host  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


CONV_CASES = [  # x shape, weight shape, stride, padding, dilation, groups, bias, dtype
    ((2, 3, 5, 6), (4, 3, 3, 3), (1, 1), (0, 0), (1, 1), 1, True, np.float32),
    ((1, 2, 7, 5), (3, 2, 3, 2), (2, 2), (1, 1), (1, 1), 1, True, np.float32),
    ((2, 4, 6, 6), (4, 2, 3, 3), (2, 1), (1, 2), (2, 1), 2, False, np.float32),
    ((1, 1, 5, 5), (2, 1, 5, 5), (1, 1), (2, 2), (1, 1), 1, True, np.float64),
    ((1, 4, 5, 5), (6, 2, 3, 3), (1, 1), (1, 1), (1, 1), 2, True, np.float32),
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups, has_bias, dtype", CONV_CASES)
def test_conv2d_matches_reference(rng, x_shape, w_shape, stride, padding, dilation, groups, has_bias, dtype):
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    b = rand(rng, (w_shape[0],), dtype) if has_bias else None
    y, saved = cu.conv2d_forward(dev(x), dev(w), None if b is None else dev(b), stride, padding, dilation, groups)
    y_ref, saved_ref = ref.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    close(y, y_ref)
    g = rand(rng, y_ref.shape, dtype)
    needs = (True, True, has_bias)
    for got, want in zip(cu.conv2d_backward(dev(g), saved, needs), ref.conv2d_backward(g, saved_ref, needs)):
        if want is None:
            assert got is None
        else:
            close(got, want)


def test_im2col_col2im_match_reference(rng):
    x = rand(rng, (2, 3, 5, 4))
    args = ((3, 2), (2, 1), (1, 1), (1, 2))
    cols = ref.im2col(x, *args)
    close(cu.im2col(dev(x), *args), cols)
    close(cu.col2im(dev(cols), x.shape, *args), ref.col2im(cols, x.shape, *args))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
       kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       padding=st.tuples(st.integers(0, 2), st.integers(0, 2)), dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       grid=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 2)),
       block=st.tuples(st.integers(1, 3), st.integers(1, 2)), data=st.data())
def test_im2col_col2im_match_reference_on_any_geometry_and_grid(n, c, h, w, kernel, stride, padding, dilation, grid,
                                                               block, data):
    """Odd sizes, strides, paddings and dilations, with the pixel, row and batch loops of the kernels
    split over several blocks along x, y and z and threads along x and y (the simulator's own launch
    is one block of 4 threads along x)."""
    from fastnn.backends.cuda import conv
    ho = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    assume(ho > 0 and wo > 0)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x = rand(rng, (n, c, h, w))
    args = (kernel, stride, padding, dilation)
    cols = ref.im2col(x, *args)
    one_block = conv.pixel_launch
    conv.pixel_launch = lambda pixels, rows, images: (grid, block)
    try:
        close(cu.im2col(dev(x), *args), cols)
        close(cu.col2im(dev(cols), x.shape, *args), ref.col2im(cols, x.shape, *args))
    finally:
        conv.pixel_launch = one_block


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
       kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)), padding=st.tuples(st.integers(0, 5), st.integers(0, 5)),
       grid_z=st.integers(1, 3), data=st.data())
def test_col2im_at_unit_stride_walks_the_taps_that_read_each_pixel(n, c, h, w, kernel, padding, grid_z, data):
    """Stride 1 and dilation 1 (col2im's rectangle of taps, one add per tap): kernels up to 5x5,
    paddings beyond the kernel (pixels no window reads, windows wholly in the padding), both cols
    layouts (the conv's (1, K, N P) through conv2d_backward and im2col's (N, K, P)), images split
    over grid z."""
    from fastnn.backends.cuda import conv
    ho, wo = h + 2 * padding[0] - kernel[0] + 1, w + 2 * padding[1] - kernel[1] + 1
    assume(ho > 0 and wo > 0)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    args = (kernel, (1, 1), padding, (1, 1))
    cols = rand(rng, (n, c * kernel[0] * kernel[1], ho * wo))
    one_block = conv.pixel_launch
    conv.pixel_launch = lambda pixels, rows, images: ((1, 1, grid_z), (4, 2))
    try:
        close(cu.col2im(dev(cols), (n, c, h, w), *args), ref.col2im(cols, (n, c, h, w), *args))
        # the conv's layout: grad_x of a conv2d whose grad_y is ones is col2im of W^T · ones
        x = rand(rng, (n, c, h, w))
        weight = rand(rng, (2, c) + kernel)
        _, saved = cu.conv2d_forward(dev(x), dev(weight), None, (1, 1), padding, (1, 1), 1)
        grad_y = rand(rng, (n, 2, ho, wo))
        grad_x, _, _ = cu.conv2d_backward(dev(grad_y), saved, (True, False, False))
        grad_cols = np.einsum("ok,nop->nkp", weight.reshape(2, -1), grad_y.reshape(n, 2, -1))
        close(grad_x, ref.col2im(grad_cols, (n, c, h, w), *args))
    finally:
        conv.pixel_launch = one_block


@pytest.mark.parametrize("shape, args", [((2, 3, 0, 4), ((1, 1), (1, 1), (1, 1), (1, 1))),    # all padding
                                         ((0, 3, 5, 5), ((3, 3), (1, 1), (1, 1), (1, 1))),    # no image
                                         ((1, 0, 4, 4), ((3, 3), (1, 1), (1, 1), (1, 1)))])   # no channel
def test_im2col_of_an_empty_input_is_the_references(shape, args):
    """Columns read nothing from an input with no element: zeros where the padding gives windows
    (the simulator's fresh memory is NaN, so an unwritten column fails), nothing where none does."""
    x = np.ones(shape, np.float32)
    np.testing.assert_array_equal(host(cu.im2col(dev(x), *args)), ref.im2col(x, *args))


def test_the_pixel_launch_fills_warps_and_slices_the_batch_until_the_gpu_is_busy(monkeypatch):
    from fastnn.backends.cuda import _core
    monkeypatch.setattr(_core, "SIMULATOR", False)
    monkeypatch.setattr(_core, "THREADS", 256)
    monkeypatch.setattr(_core, "MAX_BLOCKS", 8192)
    monkeypatch.setattr(_core, "multiprocessors", lambda: 132)
    # (grid, block); two waves of 2048 threads on 132 multiprocessors: 540,672 threads with work
    assert _core.pixel_launch(784, 25, 256) == ((4, 25, 22), (256, 1))    # tfconvnet conv1's im2col, batch 256
    assert _core.pixel_launch(196, 800, 256) == ((1, 800, 4), (224, 1))   # conv2's: 7 warps cover 196 pixels
    assert _core.pixel_launch(196, 800, 1) == ((1, 800, 1), (224, 1))     # never more slices than images
    assert _core.pixel_launch(49, 64, 256) == ((1, 16, 132), (64, 4))     # pool2's 7x7 outputs: 4 channels a block
    assert _core.pixel_launch(1, 3, 2) == ((1, 1, 2), (32, 3))            # no more rows a block than rows
    assert _core.pixel_launch(10 ** 8, 70000, 3) == ((8192, 65535, 1), (256, 1))
    assert _core.pixel_launch(0, 5, 4)[0][0] == 0                         # nothing to do: launch_grid skips it


@pytest.mark.parametrize("shape", [(3, 5, 7), (6, 17, 9), (1, 1, 1)])
@pytest.mark.parametrize("has_bias", [True, False])
def test_linear_and_matmul_match_reference(rng, shape, has_bias):
    n, k, o = shape
    x, w = rand(rng, (n, k)), rand(rng, (o, k))
    b = rand(rng, (o,)) if has_bias else None
    close(cu.linear_forward(dev(x), dev(w), None if b is None else dev(b)), ref.linear_forward(x, w, b))
    g = rand(rng, (n, o))
    needs = (True, True, has_bias)
    for got, want in zip(cu.linear_backward(dev(g), dev(x), dev(w), needs), ref.linear_backward(g, x, w, needs)):
        if want is None:
            assert got is None
        else:
            close(got, want)
    close(cu.matmul(dev(x), dev(w.T)), ref.matmul(x, np.ascontiguousarray(w.T)))


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups, has_bias, dtype", CONV_CASES)
def test_conv2d_relu_matches_reference_conv_then_relu(rng, x_shape, w_shape, stride, padding, dilation, groups,
                                                      has_bias, dtype):
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    b = rand(rng, (w_shape[0],), dtype) if has_bias else None
    y, saved = cu.conv2d_relu_forward(dev(x), dev(w), None if b is None else dev(b), stride, padding, dilation,
                                      groups)
    z_ref, saved_ref = ref.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    y_ref = ref.relu_forward(z_ref)
    close(y, y_ref)
    g = rand(rng, y_ref.shape, dtype)
    # the ReLU mask is applied as the GEMMs read grad_y; with grad_b but no grad_W it is applied first
    for needs in [(True, True, has_bias), (True, False, has_bias), (False, True, has_bias), (False, False, True)]:
        for got, want in zip(cu.conv2d_relu_backward(dev(g), y, saved, needs),
                             ref.conv2d_backward(ref.relu_backward(g, y_ref), saved_ref, needs)):
            if want is None:
                assert got is None
            else:
                close(got, want)


@pytest.mark.parametrize("shape", [(3, 5, 7), (6, 17, 9)])
@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_relu_matches_reference_linear_then_relu(rng, shape, has_bias, dtype):
    n, k, o = shape
    x, w = rand(rng, (n, k), dtype), rand(rng, (o, k), dtype)
    b = rand(rng, (o,), dtype) if has_bias else None
    y = cu.linear_relu_forward(dev(x), dev(w), None if b is None else dev(b))
    y_ref = ref.linear_relu_forward(x, w, b)
    close(y, y_ref)
    assert (y_ref == 0).any()
    g = rand(rng, (n, o), dtype)
    for needs in [(True, True, has_bias), (True, False, has_bias), (False, True, has_bias), (False, False, True)]:
        for got, want in zip(cu.linear_relu_backward(dev(g), y, dev(x), dev(w), needs),
                             ref.linear_relu_backward(g, y_ref, x, w, needs)):
            if want is None:
                assert got is None
            else:
                close(got, want)


def test_gemm_float64_and_partial_tiles(rng):
    a, b = rand(rng, (19, 23), np.float64), rand(rng, (23, 11), np.float64)
    close(cu.matmul(dev(a), dev(b)), a @ b)


POOL_CASES = [((2, 3, 7, 6), (2, 2), (2, 2), (0, 0)), ((1, 2, 5, 5), (3, 3), (2, 2), (1, 1)),
              ((1, 1, 6, 7), (3, 2), (1, 2), (1, 0))]


@pytest.mark.parametrize("shape, kernel_size, stride, padding", POOL_CASES)
def test_pooling_matches_reference(rng, shape, kernel_size, stride, padding):
    _pooling_matches_reference(rng, shape, kernel_size, stride, padding)


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7)),
       kernel_size=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       padding=st.tuples(st.integers(0, 1), st.integers(0, 1)),
       grid=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 2)),
       block=st.tuples(st.integers(1, 3), st.integers(1, 2)), seed=st.integers(0, 2 ** 16))
def test_pooling_matches_reference_on_any_geometry_and_grid(shape, kernel_size, stride, padding, grid, block, seed):
    """The pixel, channel and batch loops of the pooling kernels split over several blocks and
    threads along x and y."""
    from fastnn.backends.cuda import pool
    assume(all(2 * p <= k for p, k in zip(padding, kernel_size)))        # the reference's (PyTorch's) rule
    assume(all(s + 2 * p >= k for s, p, k in zip(shape[2:], padding, kernel_size)))
    one_block = pool.pixel_launch
    pool.pixel_launch = lambda pixels, rows, images: (grid, block)
    try:
        _pooling_matches_reference(np.random.default_rng(seed), shape, kernel_size, stride, padding)
    finally:
        pool.pixel_launch = one_block


def test_max_pool_picks_a_nan_and_its_index_like_the_reference(rng):
    """A NaN in a window is its max, at the NaN's index (the last NaN in (i, j) order), as in the
    reference; ties keep the first maximum."""
    x = rand(rng, (2, 3, 6, 7))
    x[0, 1, 2, 3] = x[1, 2, 0, 0] = x[1, 2, 0, 1] = np.nan
    x[0, 0, 4:6, 4:6] = 5.0                                   # a tie within one window
    for args in [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 2), (1, 1))]:
        y, indices = cu.max_pool2d_forward(dev(x), *args)
        y_ref, indices_ref = ref.max_pool2d_forward(x, *args)
        np.testing.assert_array_equal(host(y), y_ref)          # NaN where the reference has NaN
        np.testing.assert_array_equal(host(indices), indices_ref)


def _pooling_matches_reference(rng, shape, kernel_size, stride, padding):
    x = (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.5 - 3).astype(np.float32)  # no ties
    args = (kernel_size, stride, padding)
    y, indices = cu.max_pool2d_forward(dev(x), *args)
    y_ref, indices_ref = ref.max_pool2d_forward(x, *args)
    close(y, y_ref)
    close(indices, indices_ref)
    g = rand(rng, y_ref.shape)
    close(cu.max_pool2d_backward(dev(g), indices, shape), ref.max_pool2d_backward(g, indices_ref, shape))
    # indices that did not come from this backend's forward (no geometry attached): the scatter path
    close(cu.max_pool2d_backward(dev(g), dev(indices_ref), shape), ref.max_pool2d_backward(g, indices_ref, shape))
    close(cu.avg_pool2d_forward(dev(x), *args), ref.avg_pool2d_forward(x, *args))
    g = rand(rng, y_ref.shape)
    close(cu.avg_pool2d_backward(dev(g), shape, *args), ref.avg_pool2d_backward(g, shape, *args))


@pytest.mark.parametrize("name, extra", [("relu", ()), ("sigmoid", ()), ("tanh", ()), ("leaky_relu", (0.1,)),
                                         ("elu", (0.7,))])
def test_activations_match_reference(rng, name, extra):
    x = rand(rng, (3, 7)) * 3
    y = getattr(cu, name + "_forward")(dev(x), *extra)
    y_ref = getattr(ref, name + "_forward")(x, *extra)
    close(y, y_ref)
    g = rand(rng, x.shape)
    saved, saved_ref = (dev(x), x) if name == "leaky_relu" else (y, y_ref)
    close(getattr(cu, name + "_backward")(dev(g), saved, *extra), getattr(ref, name + "_backward")(g, saved_ref, *extra))


@pytest.mark.parametrize("shape, dim", [((3, 5), 1), ((4, 3), 0), ((2, 3, 4), 1)])
def test_softmax_log_softmax_match_reference(rng, shape, dim):
    x, g = rand(rng, shape) * 4, rand(rng, shape)
    for name in ("softmax", "log_softmax"):
        y = getattr(cu, name + "_forward")(dev(x), dim)
        y_ref = getattr(ref, name + "_forward")(x, dim)
        close(y, y_ref)
        close(getattr(cu, name + "_backward")(dev(g), y, dim), getattr(ref, name + "_backward")(g, y_ref, dim))


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 3)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_matches_reference(rng, shape, reduction, smoothing):
    logits = rand(rng, shape) * 3
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:]).astype(np.int64)
    loss, saved = cu.cross_entropy_forward(dev(logits), dev(target), reduction, smoothing)
    loss_ref, saved_ref = ref.cross_entropy_forward(logits, target, reduction, smoothing)
    close(loss, loss_ref)
    g = rand(rng, np.shape(loss_ref)) if reduction == "none" else np.asarray(0.7, np.float32)
    close(cu.cross_entropy_backward(dev(g), saved), ref.cross_entropy_backward(g, saved_ref))


def test_cross_entropy_out_of_range_target_gives_nan():
    loss, _ = cu.cross_entropy_forward(dev(np.zeros((2, 3), np.float32)), dev(np.array([0, 5])), "mean", 0.0)
    assert np.isnan(host(loss))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_reference(rng, reduction):
    x, t = rand(rng, (3, 5)), rand(rng, (3, 5))
    loss, diff = cu.mse_loss_forward(dev(x), dev(t), reduction)
    loss_ref, diff_ref = ref.mse_loss_forward(x, t, reduction)
    close(loss, loss_ref)
    g = rand(rng, (3, 5)) if reduction == "none" else np.asarray(1.3, np.float32)
    close(cu.mse_loss_backward(dev(g), diff, reduction), ref.mse_loss_backward(g, diff_ref, reduction))


@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (5, 3)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_reference(rng, shape, training, affine):
    c = shape[1]
    x = rand(rng, shape) * 2 + 1
    w, b = (rand(rng, (c,)), rand(rng, (c,))) if affine else (None, None)
    rm, rv = rand(rng, (c,)), rng.random(c).astype(np.float32) + 0.5
    rm_d, rv_d = dev(rm), dev(rv)
    y, saved = cu.batch_norm_forward(dev(x), None if w is None else dev(w), None if b is None else dev(b),
                                     rm_d, rv_d, training, 0.1, 1e-5)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y_ref, saved_ref = ref.batch_norm_forward(x, w, b, rm_ref, rv_ref, training, 0.1, 1e-5)
    close(y, y_ref)
    close(rm_d, rm_ref)
    close(rv_d, rv_ref)
    g = rand(rng, shape)
    for got, want in zip(cu.batch_norm_backward(dev(g), saved, (True,)), ref.batch_norm_backward(g, saved_ref, (True,))):
        close(got, want)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_matches_reference_batch_norm_then_relu(rng, training):
    shape, c = (3, 4, 3, 5), 4
    x, w, b = rand(rng, shape), rand(rng, (c,)), rand(rng, (c,))
    rm, rv = rand(rng, (c,)), rng.random(c).astype(np.float32) + 0.5
    y, saved = cu.batch_norm_relu_forward(dev(x), dev(w), dev(b), dev(rm), dev(rv), training, 0.1, 1e-5)
    z_ref, saved_ref = ref.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training, 0.1, 1e-5)
    y_ref = ref.relu_forward(z_ref)
    close(y, y_ref)
    assert (y_ref == 0).any()
    g = rand(rng, shape)
    for got, want in zip(cu.batch_norm_relu_backward(dev(g), y, saved, (True,)),
                         ref.batch_norm_backward(ref.relu_backward(g, y_ref), saved_ref, (True,))):
        close(got, want)


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (2, 3, 1, 1), (1, 2, 7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_instance_norm_running_stats_match_reference(rng, shape, dtype):
    c = shape[1]
    x = rand(rng, shape, dtype) * 3 + 1
    rm, rv = rand(rng, (c,), dtype), rng.random(c).astype(dtype) + 0.5
    rm_d, rv_d = dev(rm), dev(rv)
    cu.instance_norm_running_stats_(dev(x), rm_d, rv_d, 0.3)
    ref.instance_norm_running_stats_(x, rm, rv, 0.3)
    close(rm_d, rm)
    close(rv_d, rv)


@pytest.mark.parametrize("momentum, dampening, weight_decay, nesterov", [(0.0, 0.0, 0.0, False), (0.9, 0.1, 0.01, False),
                                                                        (0.9, 0.0, 0.0, True)])
def test_sgd_step_matches_reference(rng, momentum, dampening, weight_decay, nesterov):
    p, p_d = rand(rng, (3, 5)), None
    p_d = dev(p)
    buf = buf_d = None
    for _ in range(2):
        g = rand(rng, (3, 5))
        buf = ref.sgd_step(p, g, buf, 0.1, momentum, dampening, weight_decay, nesterov)
        buf_d = cu.sgd_step(p_d, dev(g), buf_d, 0.1, momentum, dampening, weight_decay, nesterov)
        close(p_d, p)
        if momentum:
            close(buf_d, buf)
        else:
            assert buf_d is None


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, True)])
def test_sgd_step_foreach_matches_per_parameter_steps(rng, momentum, nesterov):
    shapes = [(3, 5), (7,), (2, 2, 3)]
    params = [rand(rng, s) for s in shapes]
    params_d = [dev(p) for p in params]
    bufs, bufs_d = [None] * 3, None
    for _ in range(2):
        grads = [rand(rng, s) for s in shapes]
        bufs = [ref.sgd_step(p, g, b, 0.1, momentum, 0.0, 0.01, nesterov) for p, g, b in zip(params, grads, bufs)]
        bufs_d = cu.sgd_step_foreach(params_d, [dev(g) for g in grads], bufs_d, 0.1, momentum, 0.0, 0.01, nesterov)
        for got, want in zip(params_d, params):
            close(got, want)
        if momentum:
            for got, want in zip(bufs_d, bufs):
                close(got, want)
        else:
            assert bufs_d is None


@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_adam_step_matches_reference(rng, weight_decay, decoupled):
    p = rand(rng, (7,))
    p_d = dev(p)
    m, v = np.zeros_like(p), np.zeros_like(p)
    m_d, v_d = cu.zeros_like(p_d), cu.zeros_like(p_d)
    for step in (1, 2):
        g = rand(rng, (7,))
        ref.adam_step(p, g, m, v, step, 0.01, 0.9, 0.999, 1e-8, weight_decay, decoupled)
        cu.adam_step(p_d, dev(g), m_d, v_d, step, 0.01, 0.9, 0.999, 1e-8, weight_decay, decoupled)
        close(p_d, p)
        close(m_d, m)
        close(v_d, v)


@settings(max_examples=10, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
       p=st.sampled_from([0.25, 0.4, 0.999, 1.0]), seed=st.integers(0, 2**31 - 1))
def test_dropout_keeps_the_reference_elements_bit_for_bit(shape, p, seed):
    """The device's mask is the reference's (backends/reference/dropout.py), the cpu's too: a run
    keeps the same elements on either device."""
    rng = np.random.default_rng(seed)
    x = rand(rng, shape)
    g = rand(rng, shape)
    assert host(cu.dropout_forward(dev(x), p, seed)).tobytes() == ref.dropout_forward(x, p, seed).tobytes()
    assert host(cu.dropout_backward(dev(g), p, seed)).tobytes() == ref.dropout_backward(g, p, seed).tobytes()


def test_reductions_copies_and_broadcasting(rng):
    a = rand(rng, (2, 3, 4))
    close(cu.sum(dev(a), (0, 2)), a.sum(axis=(0, 2)))
    close(cu.sum(dev(a), (1,), keepdims=True), a.sum(axis=1, keepdims=True))
    close(cu.sum(dev(a), None, scale=0.5), np.asarray(a.sum() * 0.5, np.float32))
    close(cu.permute(dev(a), (2, 0, 1)), np.ascontiguousarray(a.transpose(2, 0, 1)))
    b = rand(rng, (3, 1))
    for op, fn in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide)):
        close(cu.binary(op, dev(a), dev(b)), fn(a, b))
    close(cu.unbroadcast(dev(a), (3, 1)), a.sum(axis=(0, 2), keepdims=True)[0])
    close(cu.getitem(dev(a), (slice(None), slice(1, 3), slice(None, None, 2))), a[:, 1:3, ::2])
    close(cu.concatenate([dev(a), dev(a[:, :1])], 1), np.concatenate([a, a[:, :1]], 1))
    close(cu.astype(dev(a), np.float64), a.astype(np.float64))


@pytest.mark.parametrize("momentum, centered, weight_decay, dtype", [(0.0, False, 0.0, np.float32),
                                                                     (0.9, False, 0.01, np.float32),
                                                                     (0.0, True, 0.0, np.float32),
                                                                     (0.9, True, 0.01, np.float64)])
def test_rmsprop_step_matches_reference(rng, momentum, centered, weight_decay, dtype):
    p = rand(rng, (3, 5), dtype)
    p_d = dev(p)
    v, v_d = np.zeros_like(p), cu.zeros_like(p_d)
    buf, buf_d = (np.zeros_like(p), cu.zeros_like(p_d)) if momentum else (None, None)
    avg, avg_d = (np.zeros_like(p), cu.zeros_like(p_d)) if centered else (None, None)
    for _ in range(2):
        g = rand(rng, (3, 5), dtype)
        ref.rmsprop_step(p, g, v, buf, avg, 0.01, 0.99, 1e-8, weight_decay, momentum, centered)
        assert cu.rmsprop_step(p_d, dev(g), v_d, buf_d, avg_d, 0.01, 0.99, 1e-8, weight_decay, momentum,
                               centered) is None
        close(p_d, p)
        close(v_d, v)
        if momentum:
            close(buf_d, buf)
        if centered:
            close(avg_d, avg)


def test_rmsprop_step_refuses_host_state(rng):
    p = dev(rand(rng, (4,)))
    with pytest.raises(TypeError, match="square_avg"):
        cu.rmsprop_step(p, dev(rand(rng, (4,))), np.zeros(4, np.float32), None, None, 0.01, 0.99, 1e-8, 0.0, 0.0,
                        False)


@pytest.mark.parametrize("shape, dtype", [((3, 7), np.float32), ((5, 1), np.float32), ((2, 6), np.float64)])
def test_standardize_rows_matches_reference(rng, shape, dtype):
    x = rand(rng, shape, dtype) * 2 + 1
    x_hat, invstd = cu.standardize_rows_forward(dev(x), 1e-5)
    x_hat_ref, invstd_ref = ref.standardize_rows_forward(x, 1e-5)
    close(x_hat, x_hat_ref)
    close(invstd, invstd_ref)
    g = rand(rng, shape, dtype)
    close(cu.standardize_rows_backward(dev(g), x_hat, invstd), ref.standardize_rows_backward(g, x_hat_ref, invstd_ref))


def _upstream(rng, loss_ref, reduction, dtype):
    return rand(rng, np.shape(loss_ref), dtype) if reduction == "none" else np.asarray(0.7, dtype)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_l1_loss_matches_reference(rng, reduction, dtype):
    x, t = rand(rng, (3, 5), dtype), rand(rng, (3, 5), dtype)
    t[0, 0] = x[0, 0]   # a zero difference: sign 0
    loss, diff = cu.l1_loss_forward(dev(x), dev(t), reduction)
    loss_ref, diff_ref = ref.l1_loss_forward(x, t, reduction)
    close(loss, loss_ref)
    close(diff, diff_ref)
    g = _upstream(rng, loss_ref, reduction, dtype)
    close(cu.l1_loss_backward(dev(g), diff, reduction), ref.l1_loss_backward(g, diff_ref, reduction))


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 3)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_matches_reference(rng, shape, reduction):
    logp = ref.log_softmax_forward(rand(rng, shape) * 3, 1)
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:]).astype(np.int64)
    loss = cu.nll_loss_forward(dev(logp), dev(target), reduction)
    loss_ref = ref.nll_loss_forward(logp, target, reduction)
    close(loss, loss_ref)
    g = _upstream(rng, loss_ref, reduction, np.float32)
    close(cu.nll_loss_backward(dev(g), shape, np.float32, dev(target), reduction),
          ref.nll_loss_backward(g, shape, np.float32, target, reduction))


def test_nll_loss_float64_and_out_of_range_target_gives_nan(rng):
    logp = rand(rng, (3, 4), np.float64)
    target = np.array([3, 0, 2])
    close(cu.nll_loss_forward(dev(logp), dev(target), "sum"), ref.nll_loss_forward(logp, target, "sum"))
    assert np.isnan(host(cu.nll_loss_forward(dev(logp), dev(np.array([0, 4, 1])), "mean")))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("pos_weight", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_matches_reference(rng, reduction, pos_weight, dtype):
    x = rand(rng, (3, 4), dtype) * 4
    x[0, :2] = (30, -30)   # the stable branches
    t = rng.random((3, 4)).astype(dtype)
    pw = rng.random(4).astype(dtype) + 0.5 if pos_weight else None
    pw_d = None if pw is None else dev(pw)
    loss = cu.bce_with_logits_forward(dev(x), dev(t), reduction, pw_d)
    loss_ref = ref.bce_with_logits_forward(x, t, reduction, pw)
    close(loss, loss_ref)
    g = _upstream(rng, loss_ref, reduction, dtype)
    got = cu.bce_with_logits_backward(dev(g), dev(x), dev(t), reduction, pw_d)
    for a, b in zip(got, ref.bce_with_logits_backward(g, x, t, reduction, pw)):
        close(a, b)


@pytest.mark.parametrize("shape, kernel_size, stride, padding, dtype",
                         [((2, 3, 6, 4), (2, 2), (2, 2), (0, 0), np.float32),
                          ((1, 2, 5, 5), (3, 3), (2, 2), (1, 1), np.float64)])
def test_max_unpool2d_matches_reference(rng, shape, kernel_size, stride, padding, dtype):
    x = (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.5 - 3).astype(dtype)   # no ties
    y, indices = ref.max_pool2d_forward(x, kernel_size, stride, padding)
    out_hw = shape[2:]
    close(cu.max_unpool2d_forward(dev(y), dev(indices), out_hw), ref.max_unpool2d_forward(y, indices, out_hw))
    g = rand(rng, (shape[0], shape[1]) + out_hw, dtype)
    close(cu.max_unpool2d_backward(dev(g), dev(indices)), ref.max_unpool2d_backward(g, indices))


@pytest.mark.parametrize("shape, out_hw", [((2, 3, 5, 6), (7, 4)), ((1, 1, 1, 9), (3, 2)), ((3, 2, 8, 8), (8, 8))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resample2d_matches_reference(rng, shape, out_hw, dtype):
    h, w = shape[2:]
    mh = ref.interpolation_matrix(h, out_hw[0], "linear", h / out_hw[0], False, dtype)
    mw = ref.adaptive_avg_matrix(w, out_hw[1], dtype)
    x, g = rand(rng, shape, dtype), rand(rng, shape[:2] + out_hw, dtype)
    mh_d = cu.interpolation_matrix(h, out_hw[0], "linear", h / out_hw[0], False, dtype)
    mw_d = cu.adaptive_avg_matrix(w, out_hw[1], dtype)
    close(mh_d, mh)
    close(mw_d, mw)
    close(cu.resample2d_forward(dev(x), mh_d, mw_d), ref.resample2d_forward(x, mh, mw))
    close(cu.resample2d_backward(dev(g), mh_d, mw_d), ref.resample2d_backward(g, mh, mw))


def test_resample2d_rows_beyond_the_gemm_grid_are_covered(rng, monkeypatch):
    import fastnn.backends.cuda.linear as cuda_linear
    monkeypatch.setattr(cuda_linear, "MAX_GRID_Y", 1)      # N C H rows: 3 or 4 row tiles on a grid 1 tile high
    bm = cuda_linear.TILINGS[0].BM
    c = bm // 4                                 # 2 planes in the simulator (8-row tiles), 16 on a GPU
    x, g = rand(rng, (2, c, 5, 6)), rand(rng, (2, c, 7, 4))
    assert 2 * c * 5 > 2 * bm and cuda_linear.tiling_for(2 * c * 5, 7).BM == bm
    mh, mw = ref.interpolation_matrix(5, 7, "linear", 5 / 7, False, np.float32), ref.adaptive_avg_matrix(6, 4, np.float32)
    close(cu.resample2d_forward(dev(x), dev(mh), dev(mw)), ref.resample2d_forward(x, mh, mw))
    close(cu.resample2d_backward(dev(g), dev(mh), dev(mw)), ref.resample2d_backward(g, mh, mw))


def test_resampling_matrix_cache_is_bounded():
    import fastnn.backends.cuda.resample as cuda_resample
    for i in range(cuda_resample._CACHED_MATRICES + 10):
        cu.interpolation_matrix(5, 9, "linear", 5 / 9 + i * 1e-3, False, np.float32)
    assert len(cuda_resample._MATRICES) == cuda_resample._CACHED_MATRICES


def test_missing_kernel_raises_not_implemented():
    with pytest.raises(NotImplementedError, match="argmax.*cuda"):
        cu.argmax


@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_backward_with_no_input_channels_sums_the_bias_gradient_alone(rng, relu):
    """No columns in the weight gradient's GEMM, hence no blocks to sum grad_b's rows: summed apart
    (through the ReLU mask for the fused op)."""
    x, w, b = np.zeros((2, 0, 5, 5), np.float32), np.zeros((3, 0, 3, 3), np.float32), rand(rng, (3,))
    forward = cu.conv2d_relu_forward if relu else cu.conv2d_forward
    y, saved = forward(dev(x), dev(w), dev(b), (1, 1), (1, 1), (1, 1), 1)
    z_ref, saved_ref = ref.conv2d_forward(x, w, b, (1, 1), (1, 1), (1, 1), 1)
    y_ref = ref.relu_forward(z_ref) if relu else z_ref
    close(y, y_ref)
    g = rand(rng, y_ref.shape)
    needs = (True, True, True)
    got = cu.conv2d_relu_backward(dev(g), y, saved, needs) if relu else cu.conv2d_backward(dev(g), saved, needs)
    want = ref.conv2d_backward(ref.relu_backward(g, y_ref) if relu else g, saved_ref, needs)
    for a, e in zip(got, want):
        close(a, e)


def test_relu_on_cuda_propagates_nan_like_the_reference():
    x = np.array([np.nan, -1.0, -0.0, 2.0], np.float32)
    np.testing.assert_array_equal(cu.relu_forward(dev(x)).copy_to_host(), ref.relu_forward(x))

