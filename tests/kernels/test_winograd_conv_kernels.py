"""The Winograd F(2x2, 5x5) convolution (csrc/winograd_conv.c) against the reference: its Cython
binding over hypothesis-drawn geometries (channel counts across the 16-lane blocks, every padding
from 0 to 4, odd output sizes that cut the last 2x2 tiles, thread teams larger than the batch), the
cpu backend's choice of it, PyTorch, and its argument checks.

Tolerance: the transforms scale terms by up to 5 (B^T) and 1/24 (G), so a Winograd result carries
about 10x im2col's rounding error: atol is 5e-5 of the largest expected value where the other
kernels are held to 1e-5 (tfconvnet's layer at batch 64 measures 3e-6 forward, 8e-6 for grad_W)."""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from kernel_cases import (assert_gradients_close, assert_same_bits, float64_reference_conv, rand,
                          run_stride1_conv_binding)

import fastnn.backends.cpu as cpu
import fastnn.backends.reference as ref
from fastnn.backends.cpu import _conv, own_sgemm
from fastnn.backends.cpu import conv as cpu_conv

ALL = (True, True, True)

pytestmark = pytest.mark.skipif(not _conv.winograd_available(), reason="the Winograd kernels need AVX-512F")


def assert_winograd_close(actual, expected):
    assert actual.shape == expected.shape and actual.dtype == np.float32
    magnitude = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=5e-5 * magnitude)


@st.composite
def winograd_geometries(draw):
    """(x_shape, weight_shape, padding) of a 5x5 convolution with a non-empty output."""
    padding = (draw(st.integers(0, 4)), draw(st.integers(0, 4)))
    hw = tuple(max(1, 5 - 2 * p) + draw(st.integers(0, 12)) for p in padding)
    x_shape = (draw(st.integers(1, 5)), draw(st.integers(1, 20)), *hw)
    return x_shape, (draw(st.integers(1, 40)), x_shape[1], 5, 5), padding


def _winograd(x, w, b, padding, threads, relu, grad_y):
    """Forward and backward through the binding, outputs and scratch pre-filled with NaN."""
    return run_stride1_conv_binding(_conv.conv2d_winograd_forward, _conv.conv2d_winograd_backward,
                                    _conv.winograd_workspace_size(x.shape, w.shape[0], padding, threads),
                                    x, w, b, padding, threads, relu, grad_y)


@settings(max_examples=50, deadline=None)
@given(geometry=winograd_geometries(), bias=st.booleans(), relu=st.booleans(), threads=st.integers(1, 3),
       seed=st.integers(0, 2**31))
# a pre-activation of 9e-6, within Winograd's rounding of 0: the ReLU mask must be the kernel's own
@example(geometry=((2, 5, 8, 14), (28, 5, 5, 5), (3, 0)), bias=True, relu=True, threads=1, seed=1702543)
def test_winograd_conv_matches_the_reference(geometry, bias, relu, threads, seed):
    x_shape, w_shape, padding = geometry
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, np.float32), rand(rng, w_shape, np.float32)
    b = rand(rng, w_shape[:1], np.float32) if bias else None
    grad_y = rand(rng, (x_shape[0], w_shape[0], x_shape[2] + 2 * padding[0] - 4, x_shape[3] + 2 * padding[1] - 4),
                  np.float32)
    y, grads = _winograd(x, w, b, padding, threads, relu, grad_y)
    y_ref, grads_ref = float64_reference_conv(x, w, b, padding, relu, grad_y, relu_output=y)
    assert_winograd_close(y, y_ref)
    for g, g_ref in zip(grads, grads_ref):
        if g_ref is None:
            assert g is None and not bias
        else:
            assert_winograd_close(g, g_ref)


def test_winograd_conv_matches_the_reference_on_tfconvnets_layer():
    rng = np.random.default_rng(1)
    x, w, b = rand(rng, (16, 32, 14, 14), np.float32), rand(rng, (64, 32, 5, 5), np.float32), rand(rng, (64,), np.float32)
    grad_y = rand(rng, (16, 64, 14, 14), np.float32)
    y, grads = _winograd(x, w, b, (2, 2), 2, True, grad_y)
    y_ref, grads_ref = float64_reference_conv(x, w, b, (2, 2), True, grad_y, relu_output=y)
    assert_winograd_close(y, y_ref)
    for g, g_ref in zip(grads, grads_ref):
        assert_winograd_close(g, g_ref)


@pytest.mark.parametrize("x_shape, w_shape, padding", [
    ((7, 20, 13, 13), (33, 20, 5, 5), (2, 2)),    # 49 tiles: groups of 2 images, the last one partial
    ((3, 17, 40, 40), (16, 17, 5, 5), (2, 2)),    # 400 tiles: one image a group
    ((5, 16, 6, 9), (16, 16, 5, 5), (0, 4)),      # odd output sizes (2 x 13): cut last tiles
])
@pytest.mark.parametrize("needs", [ALL, (False, True, True), (True, False, False), (False, False, True)])
def test_winograd_conv_on_pinned_layouts_and_partial_gradients(x_shape, w_shape, padding, needs):
    rng = np.random.default_rng(sum(x_shape) + sum(needs))
    x, w, b = rand(rng, x_shape, np.float32), rand(rng, w_shape, np.float32), rand(rng, w_shape[:1], np.float32)
    out_shape = (x_shape[0], w_shape[0], x_shape[2] + 2 * padding[0] - 4, x_shape[3] + 2 * padding[1] - 4)
    grad_y = rand(rng, out_shape, np.float32)
    threads = 2
    workspace = np.full(_conv.winograd_workspace_size(x.shape, w.shape[0], padding, threads), np.nan, np.float32)
    y = np.full(out_shape, np.nan, np.float32)
    _conv.conv2d_winograd_forward(x, w, b, padding, workspace, y, threads, True)
    y_ref, grads_ref = float64_reference_conv(x, w, b, padding, True, grad_y, relu_output=y)
    assert_winograd_close(y, y_ref)
    grads = [np.full(a.shape, np.nan, np.float32) if need else None for need, a in zip(needs, (x, w, b))]
    _conv.conv2d_winograd_backward(x, w, grad_y, padding, workspace, *grads,
                                   np.empty(threads * w.shape[0]) if needs[2] else None, threads, y)
    assert_gradients_close(needs, grads, grads_ref, assert_winograd_close)


def test_winograd_conv_gives_the_same_bits_on_every_run():
    rng = np.random.default_rng(2)
    x, w, b = rand(rng, (9, 20, 11, 13), np.float32), rand(rng, (24, 20, 5, 5), np.float32), rand(rng, (24,), np.float32)
    grad_y = rand(rng, (9, 24, 11, 13), np.float32)
    first = _winograd(x, w, b, (2, 2), 2, True, grad_y)
    second = _winograd(x, w, b, (2, 2), 2, True, grad_y)
    assert_same_bits(first, second)


def test_winograd_conv_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, (6, 32, 14, 14), np.float32), rand(rng, (64, 32, 5, 5), np.float32), rand(rng, (64,), np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.relu(torch.nn.functional.conv2d(tx, tw, tb, 1, 2))
    grad_y = rand(rng, tuple(ty.shape), np.float32)
    ty.backward(torch.tensor(grad_y))
    y, grads = _winograd(x, w, b, (2, 2), 2, True, grad_y)
    assert_winograd_close(y, ty.detach().numpy())
    for g, t in zip(grads, (tx, tw, tb)):
        assert_winograd_close(g, t.grad.numpy())


@pytest.mark.parametrize("relu", [False, True])
def test_cpu_backend_runs_tfconvnets_second_layer_by_winograd(two_threads, relu):
    """(and keeps to it in the backward, whatever the switches say by then)"""
    rng = np.random.default_rng(4)
    x, w, b = rand(rng, (8, 32, 14, 14), np.float32), rand(rng, (64, 32, 5, 5), np.float32), rand(rng, (64,), np.float32)
    args = ((1, 1), (2, 2), (1, 1), 1)
    forward = cpu.conv2d_relu_forward if relu else cpu.conv2d_forward
    y, saved = forward(x, w, b, *args)
    assert saved[0] == "winograd"
    grad_y = rand(rng, y.shape, np.float32)
    previous = cpu_conv.set_winograd_enabled(False)
    try:
        grads = cpu.conv2d_relu_backward(grad_y, y, saved, ALL) if relu else cpu.conv2d_backward(grad_y, saved, ALL)
    finally:
        cpu_conv.set_winograd_enabled(previous)
    y_ref, grads_ref = float64_reference_conv(x, w, b, (2, 2), relu, grad_y, relu_output=y)
    assert_winograd_close(y, y_ref)
    for g, g_ref in zip(grads, grads_ref):
        assert_winograd_close(g, g_ref)


@pytest.mark.parametrize("x_shape, w_shape, args, dtype", [
    ((8, 32, 14, 14), (64, 32, 5, 5), ((1, 1), (2, 2), (1, 1), 1), np.float64),   # float64
    ((8, 32, 14, 14), (64, 32, 3, 3), ((1, 1), (1, 1), (1, 1), 1), np.float32),   # 3x3
    ((8, 32, 14, 14), (64, 32, 5, 5), ((2, 2), (2, 2), (1, 1), 1), np.float32),   # strided
    ((8, 32, 14, 14), (64, 16, 5, 5), ((1, 1), (2, 2), (1, 1), 2), np.float32),   # grouped
    ((8, 8, 14, 14), (64, 8, 5, 5), ((1, 1), (2, 2), (1, 1), 1), np.float32),     # few input channels
    ((8, 32, 14, 14), (64, 32, 5, 5), ((1, 1), (5, 5), (1, 1), 1), np.float32),   # padding past 4
    ((1, 32, 14, 14), (64, 32, 5, 5), ((1, 1), (2, 2), (1, 1), 1), np.float32),   # batch 1: a thread idles
])
def test_cpu_backend_leaves_other_convolutions_to_the_other_schedules(two_threads, x_shape, w_shape, args, dtype):
    rng = np.random.default_rng(5)
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    y, saved = cpu.conv2d_forward(x, w, None, *args)
    assert saved[0] != "winograd"
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, None, *args)[0], rtol=1e-4,
                               atol=1e-5 * max(1.0, float(np.abs(y).max())))


def test_switching_winograd_or_the_own_sgemm_off_gives_the_im2col_schedules(two_threads):
    rng = np.random.default_rng(6)
    x, w = rand(rng, (8, 32, 14, 14), np.float32), rand(rng, (64, 32, 5, 5), np.float32)
    args = ((1, 1), (2, 2), (1, 1), 1)
    for switch in (cpu_conv.set_winograd_enabled, own_sgemm.set_enabled):
        previous = switch(False)
        try:
            y_off, saved = cpu.conv2d_forward(x, w, None, *args)
            assert saved[0] in ("images", "batched")
        finally:
            switch(previous)
    y_on, saved = cpu.conv2d_forward(x, w, None, *args)
    assert saved[0] == "winograd"
    assert_winograd_close(y_on, y_off)


@pytest.mark.parametrize("mistake, message", [
    (dict(workspace=np.zeros(7, np.float32)), "workspace must hold"),
    (dict(y=np.zeros((2, 3, 5, 4), np.float32)), "y must have shape"),
    (dict(bias=np.zeros(2, np.float32)), "bias must have shape"),
    (dict(weight=np.zeros((3, 1, 5, 5), np.float32)), r"must be \(O, 2, 5, 5\)"),
    (dict(weight=np.zeros((3, 2, 3, 3), np.float32)), r"must be \(O, 2, 5, 5\)"),
    (dict(padding=(5, 0)), "padding must be 0 to 4"),
    (dict(x=np.zeros((2, 2, 1, 1), np.float32), padding=(1, 1)), "non-empty output"),
    (dict(threads=0), "threads must be"),
])
def test_winograd_conv_binding_rejects_arguments_that_do_not_fit(mistake, message):
    args = dict(x=np.zeros((2, 2, 5, 5), np.float32), weight=np.zeros((3, 2, 5, 5), np.float32),
                bias=np.zeros(3, np.float32), y=np.zeros((2, 3, 5, 5), np.float32), threads=2, padding=(2, 2))
    args["workspace"] = np.zeros(_conv.winograd_workspace_size((2, 2, 5, 5), 3, (2, 2), 2), np.float32)
    args.update(mistake)
    with pytest.raises(ValueError, match=message):
        _conv.conv2d_winograd_forward(args["x"], args["weight"], args["bias"], args["padding"], args["workspace"],
                                      args["y"], args["threads"])


def test_winograd_conv_backward_rejects_gradients_of_the_wrong_shape():
    x, w = np.zeros((2, 2, 5, 5), np.float32), np.zeros((3, 2, 5, 5), np.float32)
    workspace = np.zeros(_conv.winograd_workspace_size(x.shape, 3, (2, 2), 2), np.float32)
    grad_y = np.zeros((2, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="grad_x must have shape"):
        _conv.conv2d_winograd_backward(x, w, grad_y, (2, 2), workspace, np.zeros((2, 2, 5, 4), np.float32), None,
                                       None, None, 2)
    with pytest.raises(ValueError, match="grad_y must have shape"):
        _conv.conv2d_winograd_backward(x, w, grad_y[:, :2].copy(), (2, 2), workspace, None, None, None, None, 2)
    with pytest.raises(ValueError, match="relu_y must have shape"):
        _conv.conv2d_winograd_backward(x, w, grad_y, (2, 2), workspace, None, None, None, None, 2, grad_y[:1])


def test_winograd_binding_rejects_an_empty_input_that_padding_would_make_a_non_empty_output():
    # in_h = 0 with padding 4 gives a 4-row output, but the input gradient (a forward onto x) has no
    # tiles: the binding must say so, never divide by zero in C
    with pytest.raises(ValueError, match="non-empty"):
        _conv.winograd_workspace_size((1, 16, 0, 4), 16, (4, 4), 1)


def test_cpu_backend_leaves_an_empty_input_to_the_other_schedules(two_threads):
    x, w = np.zeros((4, 16, 0, 4), np.float32), np.ones((16, 16, 5, 5), np.float32)
    y, saved = cpu.conv2d_forward(x, w, None, (1, 1), (4, 4), (1, 1), 1)
    assert saved[0] != "winograd"
    np.testing.assert_array_equal(y, ref.conv2d_forward(x, w, None, (1, 1), (4, 4), (1, 1), 1)[0])
