"""The direct convolution (csrc/direct_conv.c) against the reference: its Cython binding over
hypothesis-drawn geometries (any channel counts, kernels, paddings, row widths across the 16- and
32-pixel chunks, thread teams larger than the batch), the cpu backend's choice of it, and its
argument checks."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_cases import (assert_close, assert_gradients_close, assert_same_bits, float64_reference_conv, rand,
                          run_stride1_conv_binding)

import fastnn.backends.cpu as cpu
import fastnn.backends.reference as ref
from fastnn.backends.cpu import _conv
from fastnn.backends.cpu import conv as cpu_conv

ALL = (True, True, True)

pytestmark = pytest.mark.skipif(not _conv.direct_available(), reason="the direct kernels need AVX-512F")


@st.composite
def direct_geometries(draw):
    """(x_shape, weight_shape, padding): stride 1, dilation 1, one group, Ho and Wo >= 1; output
    rows from 1 to 40 pixels wide (one 16-lane chunk, one 32-lane chunk, 32 + a remainder)."""
    kernel = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    out_hw = (draw(st.integers(1, 12)), draw(st.integers(1, 40)))
    hw = tuple(max(1, out_hw[a] + kernel[a] - 1 - 2 * padding[a]) for a in range(2))
    x_shape = (draw(st.integers(1, 4)), draw(st.integers(1, 6)), *hw)
    weight_shape = (draw(st.integers(1, 40)), x_shape[1], *kernel)
    return x_shape, weight_shape, padding


def _direct(x, w, b, padding, threads, relu, grad_y):
    """Forward and backward through the binding, outputs and scratch pre-filled with NaN."""
    return run_stride1_conv_binding(_conv.conv2d_direct_forward, _conv.conv2d_direct_backward,
                                    _conv.direct_workspace_size(x.shape, w.shape[0], w.shape[2:], padding, threads),
                                    x, w, b, padding, threads, relu, grad_y)


@settings(max_examples=60, deadline=None)
@given(geometry=direct_geometries(), bias=st.booleans(), relu=st.booleans(), threads=st.integers(1, 3),
       seed=st.integers(0, 2**31))
def test_direct_conv_matches_the_reference(geometry, bias, relu, threads, seed):
    x_shape, w_shape, padding = geometry
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, np.float32), rand(rng, w_shape, np.float32)
    b = rand(rng, w_shape[:1], np.float32) if bias else None
    grad_y = rand(rng, (x_shape[0], w_shape[0], x_shape[2] + 2 * padding[0] - w_shape[2] + 1,
                        x_shape[3] + 2 * padding[1] - w_shape[3] + 1), np.float32)
    y, grads = _direct(x, w, b, padding, threads, relu, grad_y)
    y_ref, grads_ref = float64_reference_conv(x, w, b, padding, relu, grad_y, relu_output=y)
    assert_close(y, y_ref.astype(np.float32), np.float32)
    for g, g_ref in zip(grads, grads_ref):
        if g_ref is None:
            assert g is None and not bias
        else:
            assert_close(g, g_ref.astype(np.float32), np.float32)


def test_direct_conv_gives_the_same_bits_on_every_run():
    rng = np.random.default_rng(1)
    x, w, b = rand(rng, (7, 6, 14, 14), np.float32), rand(rng, (16, 6, 5, 5), np.float32), rand(rng, (16,), np.float32)
    grad_y = rand(rng, (7, 16, 10, 10), np.float32)
    first = _direct(x, w, b, (0, 0), 2, True, grad_y)
    second = _direct(x, w, b, (0, 0), 2, True, grad_y)
    assert_same_bits(first, second)


@pytest.mark.parametrize("x_shape, w_shape, padding", [
    ((8, 1, 28, 28), (6, 1, 5, 5), (2, 2)),     # LeNet-5 conv1: weight gradient over pixels
    ((8, 6, 14, 14), (16, 6, 5, 5), (0, 0)),    # LeNet-5 conv2: weight gradient over channels
    ((3, 4, 9, 11), (13, 4, 5, 5), (2, 2)),
])
@pytest.mark.parametrize("relu", [False, True])
def test_cpu_backend_runs_small_float32_convolutions_direct(two_threads, x_shape, w_shape, padding, relu):
    rng = np.random.default_rng(2)
    x, w, b = rand(rng, x_shape, np.float32), rand(rng, w_shape, np.float32), rand(rng, w_shape[:1], np.float32)
    args = ((1, 1), padding, (1, 1), 1)
    forward = cpu.conv2d_relu_forward if relu else cpu.conv2d_forward
    y, saved = forward(x, w, b, *args)
    assert saved[0] == "direct"
    z_ref, saved_ref = ref.conv2d_forward(x, w, b, *args)
    y_ref = ref.relu_forward(z_ref) if relu else z_ref
    assert_close(y, y_ref, np.float32)
    grad_y = rand(rng, y.shape, np.float32)
    grads = cpu.conv2d_relu_backward(grad_y, y, saved, ALL) if relu else cpu.conv2d_backward(grad_y, saved, ALL)
    for g, g_ref in zip(grads, ref.conv2d_backward(ref.relu_backward(grad_y, y_ref) if relu else grad_y,
                                                   saved_ref, ALL)):
        assert_close(g, g_ref, np.float32)


@pytest.mark.parametrize("x_shape, w_shape, args, dtype", [
    ((4, 6, 14, 14), (16, 6, 5, 5), ((1, 1), (0, 0), (1, 1), 1), np.float64),   # float64: im2col
    ((4, 6, 14, 14), (16, 6, 5, 5), ((2, 2), (0, 0), (1, 1), 1), np.float32),   # strided
    ((4, 6, 14, 14), (16, 6, 5, 5), ((1, 1), (0, 0), (2, 2), 1), np.float32),   # dilated
    ((4, 6, 14, 14), (16, 3, 5, 5), ((1, 1), (0, 0), (1, 1), 2), np.float32),   # grouped
    ((4, 6, 14, 14), (32, 6, 5, 5), ((1, 1), (0, 0), (1, 1), 1), np.float32),   # more than 16 outputs
    ((4, 6, 14, 14), (16, 6, 3, 3), ((1, 1), (1, 1), (1, 1), 1), np.float32),   # 3x3: measured slower
    ((4, 6, 14, 14), (16, 6, 1, 1), ((1, 1), (0, 0), (1, 1), 1), np.float32),   # 1x1: measured slower
    ((1, 16, 14, 14), (16, 16, 5, 5), ((1, 1), (2, 2), (1, 1), 1), np.float32),  # 400 deep
])
def test_cpu_backend_leaves_other_convolutions_to_im2col(x_shape, w_shape, args, dtype):
    rng = np.random.default_rng(3)
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    y, saved = cpu.conv2d_forward(x, w, None, *args)
    assert saved[0] in ("images", "batched")
    assert_close(y, ref.conv2d_forward(x, w, None, *args)[0], dtype)


@pytest.mark.parametrize("x_shape, w_shape, padding", [
    ((2, 2, 12, 41), (3, 2, 5, 5), (2, 2)),     # forward: 41-pixel rows, a 32-pixel tile and a 9-pixel one
    ((2, 1, 30, 34), (9, 1, 5, 5), (1, 1)),     # forward: 32-pixel tiles, a second block of channels
    ((2, 2, 12, 40), (3, 2, 3, 7), (1, 3)),     # weight gradient over pixels: a second block of 6 columns
    ((2, 3, 11, 12), (16, 3, 6, 6), (0, 0)),    # weight gradient over channels: 36 taps (25 + 11)
])
@pytest.mark.parametrize("needs", [ALL, (False, True, True), (True, False, False), (False, False, True)])
def test_direct_conv_on_pinned_tile_layouts_and_partial_gradients(x_shape, w_shape, padding, needs):
    rng = np.random.default_rng(sum(x_shape) + sum(needs))
    x, w, b = rand(rng, x_shape, np.float32), rand(rng, w_shape, np.float32), rand(rng, w_shape[:1], np.float32)
    args = ((1, 1), padding, (1, 1), 1)
    z_ref, saved_ref = ref.conv2d_forward(x, w, b, *args)
    grad_y = rand(rng, z_ref.shape, np.float32)
    threads = 2
    workspace = np.full(_conv.direct_workspace_size(x.shape, w.shape[0], w.shape[2:], padding, threads), np.nan,
                        np.float32)
    y = np.full(z_ref.shape, np.nan, np.float32)
    _conv.conv2d_direct_forward(x, w, b, padding, workspace, y, threads, False)
    assert_close(y, z_ref, np.float32)
    grads = [np.full(a.shape, np.nan, np.float32) if need else None for need, a in zip(needs, (x, w, b))]
    _conv.conv2d_direct_backward(x, w, grad_y, padding, workspace, *grads,
                                 np.empty(threads * w.shape[0]) if needs[2] else None, threads)
    assert_gradients_close(needs, grads, ref.conv2d_backward(grad_y, saved_ref, ALL),
                           lambda g, g_ref: assert_close(g, g_ref, np.float32))


def test_a_direct_forward_keeps_its_backward_when_the_kernels_are_switched_off(two_threads):
    rng = np.random.default_rng(7)
    x, w = rand(rng, (8, 6, 14, 14), np.float32), rand(rng, (16, 6, 5, 5), np.float32)
    y, saved = cpu.conv2d_relu_forward(x, w, None, (1, 1), (0, 0), (1, 1), 1)
    assert saved[0] == "direct"
    grad_y = rand(rng, y.shape, np.float32)
    previous = cpu_conv.set_direct_enabled(False)
    try:
        grads = cpu.conv2d_relu_backward(grad_y, y, saved, ALL)
    finally:
        cpu_conv.set_direct_enabled(previous)
    z_ref, saved_ref = ref.conv2d_forward(x, w, None, (1, 1), (0, 0), (1, 1), 1)
    for g, g_ref in zip(grads, ref.conv2d_backward(ref.relu_backward(grad_y, ref.relu_forward(z_ref)), saved_ref,
                                                   ALL)):
        if g_ref is None:
            assert g is None
        else:
            assert_close(g, g_ref, np.float32)


def test_switching_the_direct_kernels_off_gives_the_im2col_schedules():
    rng = np.random.default_rng(4)
    x, w = rand(rng, (8, 6, 14, 14), np.float32), rand(rng, (16, 6, 5, 5), np.float32)
    previous = cpu_conv.set_direct_enabled(False)
    try:
        y_off, saved = cpu.conv2d_forward(x, w, None, (1, 1), (0, 0), (1, 1), 1)
        assert saved[0] in ("images", "batched")
    finally:
        cpu_conv.set_direct_enabled(previous)
    y_on, saved = cpu.conv2d_forward(x, w, None, (1, 1), (0, 0), (1, 1), 1)
    assert saved[0] == "direct"
    assert_close(y_on, y_off, np.float32)


@pytest.mark.parametrize("mistake, error, message", [
    (dict(workspace=np.zeros(7, np.float32)), ValueError, "workspace must hold"),
    (dict(y=np.zeros((2, 3, 5, 4), np.float32)), ValueError, "y must have shape"),
    (dict(bias=np.zeros(2, np.float32)), ValueError, "bias must have shape"),
    (dict(weight=np.zeros((3, 1, 3, 3), np.float32)), ValueError, "input channels"),
    (dict(x=np.zeros((2, 2, 9, 9), np.float32), weight=np.zeros((3, 2, 9, 9), np.float32)), ValueError, "taps"),
    (dict(x=np.zeros((0, 2, 5, 5), np.float32)), ValueError, "non-empty"),
    (dict(threads=0), ValueError, "threads must be"),
    (dict(x=np.zeros((2, 2, 5, 5), np.float64)), ValueError, "dtype"),
])
def test_direct_conv_binding_rejects_arguments_that_do_not_fit(mistake, error, message):
    args = dict(x=np.zeros((2, 2, 5, 5), np.float32), weight=np.zeros((3, 2, 3, 3), np.float32),
                bias=np.zeros(3, np.float32), y=np.zeros((2, 3, 5, 5), np.float32), threads=2)
    args["workspace"] = np.zeros(_conv.direct_workspace_size((2, 2, 5, 5), 3, (3, 3), (1, 1), 2), np.float32)
    args.update(mistake)
    with pytest.raises(error, match=message):
        _conv.conv2d_direct_forward(args["x"], args["weight"], args["bias"], (1, 1), args["workspace"], args["y"],
                                    args["threads"])


def test_direct_conv_backward_rejects_gradients_of_the_wrong_shape():
    x, w = np.zeros((2, 2, 5, 5), np.float32), np.zeros((3, 2, 3, 3), np.float32)
    workspace = np.zeros(_conv.direct_workspace_size(x.shape, 3, (3, 3), (1, 1), 2), np.float32)
    grad_y = np.zeros((2, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="grad_w must have shape"):
        _conv.conv2d_direct_backward(x, w, grad_y, (1, 1), workspace, None, np.zeros((3, 2, 3, 2), np.float32),
                                     None, None, 2)
    with pytest.raises(ValueError, match="grad_y must have shape"):
        _conv.conv2d_direct_backward(x, w, grad_y[:1], (1, 1), workspace, None, None, None, None, 2)
    with pytest.raises(ValueError, match="grad_b needs grad_b_partial"):
        _conv.conv2d_direct_backward(x, w, grad_y, (1, 1), workspace, None, None, np.zeros(3, np.float32), None, 2)


def test_an_infinite_weight_does_not_spill_into_other_rows_of_the_input_gradient():
    # the input gradient's unmasked stores cover lanes past the row, where gy is 0: Inf * 0 = NaN
    # must not be added there (it would land in the next row or channel)
    x, w = np.ones((1, 2, 3, 3), np.float32), np.full((1, 2, 3, 3), 0.5, np.float32)
    w[0, 0, 2, 2] = np.inf
    grad_y = np.ones((1, 1, 1, 1), np.float32)
    _, (grad_x, _, _) = _direct(x, w, None, (0, 0), 1, False, grad_y)
    _, saved = ref.conv2d_forward(x, w, None, (1, 1), (0, 0), (1, 1), 1)
    expected = ref.conv2d_backward(grad_y, saved, ALL)[0]
    np.testing.assert_array_equal(grad_x, expected)
    assert np.isfinite(grad_x[0, 1]).all()
