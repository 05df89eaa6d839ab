"""Implicit-GEMM convolution: the GEMM's windows operand (B read as the windows of an NCHW tensor,
``linear.WINDOW_HEADER``) against the reference's im2col, and conv2d forward and backward built on
it against the reference on any geometry, both input-gradient paths (the windows of grad_y at
stride 1, col2im of W^T grad_y otherwise), split k, the fused ReLU mask and float64. Runs under
Numba's CUDA simulator in CI; with ``NUMBA_ENABLE_CUDASIM=0`` on a GPU."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import fastnn.backends.reference as ref
import fastnn.device

if fastnn.device.cuda_unavailable_reason():
    pytest.skip(f"the cuda device is not usable: {fastnn.device.cuda_unavailable_reason()}", allow_module_level=True)
import fastnn.backends.cuda as cu  # noqa: E402
from fastnn.backends.cuda import conv, linear  # noqa: E402

from device_arrays import close, dev  # noqa: E402
from fastnn.backends.reference.conv import conv_output_size  # noqa: E402


def _windows_matrix(x, kernel, stride, padding, dilation):
    """The (C kH kW, N Ho Wo) matrix a forward convolution's windows operand stands for: im2col's."""
    cols = ref.im2col(x, kernel, stride, padding, dilation)           # (N, K, P)
    return np.ascontiguousarray(cols.transpose(1, 0, 2).reshape(cols.shape[1], -1))


geometry = dict(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
                kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
                # stride 1 (where the input gradient's windows path runs) half the time
                stride=st.one_of(st.just((1, 1)), st.tuples(st.integers(1, 3), st.integers(1, 3))),
                padding=st.tuples(st.integers(0, 4), st.integers(0, 4)),
                dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)))


@settings(max_examples=20, deadline=None)
@given(**geometry, transposed=st.booleans(), data=st.data())
def test_gemm_reads_the_windows_operand_as_im2col_would_write_it(n, c, h, w, kernel, stride, padding, dilation,
                                                                 transposed, data):
    """I · windows(x) = im2col(x), and with B transposed (the weight gradient's form, k along the
    pixels, split into slices when long) I · windows(x)^T = im2col(x)^T: each element at its tap and
    pixel, zeros in the padding, paddings wider than the kernel included."""
    ho, wo = (conv_output_size(s, k, st_, p, d) for s, k, st_, p, d in zip((h, w), kernel, stride, padding, dilation))
    assume(ho > 0 and wo > 0)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    expected = _windows_matrix(x, kernel, stride, padding, dilation)
    taps, pixels = expected.shape
    windows = conv._input_windows(x.shape, 0, c, kernel, stride, padding, dilation, ho, wo)
    if transposed:
        expected = np.ascontiguousarray(expected.T)
    rows = expected.shape[0]
    out = cu.empty((1,) + expected.shape, np.float32)
    identity = dev(np.eye(rows, dtype=np.float32).reshape(1, rows, rows))
    linear.gemm(identity, 0, rows, dev(x), int(transposed), 0, out, expected.shape[1], rows, expected.shape[1], rows,
                windows=windows)
    close(out.reshape(expected.shape), expected)


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
       kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)), padding=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)), data=st.data())
def test_input_gradient_windows_read_grad_y_at_each_tap_that_reaches_a_pixel(n, c, h, w, kernel, padding, dilation,
                                                                              data):
    """The input gradient's windows (of grad_y, displaced by -(i dH, j dW), origins +padding, over the
    input's plane): element ((o, i, j), (n, h, w)) is grad_y[n, o, h + pH - i dH, w + pW - j dW], 0
    where that is outside grad_y."""
    ho, wo = (conv_output_size(s, k, 1, p, d) for s, k, p, d in zip((h, w), kernel, padding, dilation))
    assume(ho > 0 and wo > 0)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    grad_y = rng.standard_normal((n, c, ho, wo)).astype(np.float32)
    expected = np.zeros((c, kernel[0], kernel[1], n, h, w), np.float32)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            for r in range(h):
                for s in range(w):
                    oh, ow = r + padding[0] - i * dilation[0], s + padding[1] - j * dilation[1]
                    if 0 <= oh < ho and 0 <= ow < wo:
                        expected[:, i, j, :, r, s] = grad_y[:, :, oh, ow].T
    expected = expected.reshape(c * kernel[0] * kernel[1], n * h * w)
    windows = conv._windows(grad_y.shape, 0, c, kernel, dilation, -1, (h, w), (1, 1), padding)
    rows = expected.shape[0]
    out = cu.empty((1,) + expected.shape, np.float32)
    identity = dev(np.eye(rows, dtype=np.float32).reshape(1, rows, rows))
    linear.gemm(identity, 0, rows, dev(grad_y), 0, 0, out, expected.shape[1], rows, expected.shape[1], rows,
                windows=windows)
    close(out.reshape(expected.shape), expected)


@pytest.fixture(params=["windows", "col2im", "im2col"])
def input_gradient_path(request, monkeypatch):
    """conv2d forced through one path: the input gradient by the windows GEMM wherever the stride is
    1, or by col2im of W^T grad_y everywhere (the choice on a GPU depends on the shapes and timing), or
    every GEMM on im2col's columns (``FASTNN_CUDA_IMPLICIT_CONV=0``)."""
    if request.param == "windows":
        monkeypatch.setattr(conv, "_input_gradient_paths",
                            lambda stride, *shape: ("windows",) if tuple(stride) == (1, 1) else ("col2im",))
    elif request.param == "col2im":
        monkeypatch.setattr(conv, "_input_gradient_paths", lambda stride, *shape: ("col2im",))
    else:
        monkeypatch.setattr(conv, "IMPLICIT", False)
    return request.param


@settings(max_examples=12, deadline=None)
@given(**geometry, groups=st.integers(1, 2), out_per_group=st.integers(1, 3), relu=st.booleans(),
       has_bias=st.booleans(), data=st.data())
def test_conv2d_matches_reference_on_any_geometry(input_gradient_path, n, c, h, w, kernel, stride, padding, dilation,
                                                  groups, out_per_group, relu, has_bias, data):
    """Forward, grad_x, grad_W and grad_b of conv2d (and of the fused conv2d + ReLU, whose mask the
    GEMMs apply as they read grad_y, windows included) against the reference: odd sizes, strides,
    paddings beyond the kernel, dilations, groups; grad_W's k (N Ho Wo pixels) split into slices
    when long."""
    ho, wo = (conv_output_size(s, k, st_, p, d) for s, k, st_, p, d in zip((h, w), kernel, stride, padding, dilation))
    assume(ho > 0 and wo > 0)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x = rng.standard_normal((n, c * groups, h, w)).astype(np.float32)
    weight = rng.standard_normal((out_per_group * groups, c) + kernel).astype(np.float32)
    bias = rng.standard_normal(out_per_group * groups).astype(np.float32) if has_bias else None
    args = (stride, padding, dilation, groups)
    z_ref, saved_ref = ref.conv2d_forward(x, weight, bias, *args)
    forward = cu.conv2d_relu_forward if relu else cu.conv2d_forward
    y, saved = forward(dev(x), dev(weight), None if bias is None else dev(bias), *args)
    y_ref = ref.relu_forward(z_ref) if relu else z_ref
    close(y, y_ref)
    grad_y = rng.standard_normal(y_ref.shape).astype(np.float32)
    needs = (True, True, has_bias)
    got = cu.conv2d_relu_backward(dev(grad_y), y, saved, needs) if relu else cu.conv2d_backward(dev(grad_y), saved,
                                                                                                 needs)
    want = ref.conv2d_backward(ref.relu_backward(grad_y, y_ref) if relu else grad_y, saved_ref, needs)
    for g, r in zip(got, want):
        if r is None:
            assert g is None
        else:
            close(g, r)


@pytest.mark.parametrize("x_shape, w_shape, padding, dilation, groups", [
    ((2, 3, 6, 5), (4, 3, 3, 3), (1, 1), (1, 1), 1),
    ((1, 4, 7, 7), (6, 2, 5, 3), (2, 0), (1, 2), 2),
    ((3, 2, 4, 9), (2, 2, 1, 4), (0, 3), (2, 1), 1),
])
def test_fused_relu_mask_reaches_the_input_gradient_through_both_paths(input_gradient_path, x_shape, w_shape, padding,
                                                                       dilation, groups):
    """conv2d + ReLU at stride 1: grad_x of grad_y ⊙ 1[y > 0], the mask read with grad_y's windows
    (or by the W^T grad_y GEMM before col2im), alone and with grad_W."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape).astype(np.float32)
    weight = rng.standard_normal(w_shape).astype(np.float32)
    args = ((1, 1), padding, dilation, groups)
    y, saved = cu.conv2d_relu_forward(dev(x), dev(weight), None, *args)
    z_ref, saved_ref = ref.conv2d_forward(x, weight, None, *args)
    grad_y = rng.standard_normal(z_ref.shape).astype(np.float32)
    masked = ref.relu_backward(grad_y, ref.relu_forward(z_ref))
    assert 0 < np.count_nonzero(masked) < masked.size
    for needs in [(True, False, False), (True, True, False)]:
        for g, r in zip(cu.conv2d_relu_backward(dev(grad_y), y, saved, needs),
                        ref.conv2d_backward(masked, saved_ref, needs)):
            if r is None:
                assert g is None
            else:
                close(g, r)


def test_fused_relu_backward_takes_a_batch_of_one_sliced_from_more_channels(input_gradient_path):
    """grad_y (1, 4, H, W) sliced from a (1, 8, H, W) array is C-contiguous with another stride on its
    length-1 batch axis than y's: the windows path reads both as flat memory and takes it (review
    finding: the layout check compared strides and refused it)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 8, 4, 4)).astype(np.float32)
    weight = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    args = ((1, 1), (1, 1), (1, 1), 1)
    y, saved = cu.conv2d_relu_forward(dev(x), dev(weight), None, *args)
    wider = rng.standard_normal((1, 8, 4, 4)).astype(np.float32)
    grad_y = dev(wider)[:, :4]
    assert grad_y.is_c_contiguous() and grad_y.strides != y.strides
    z_ref, saved_ref = ref.conv2d_forward(x, weight, None, *args)
    want = ref.conv2d_backward(ref.relu_backward(wider[:, :4], ref.relu_forward(z_ref)), saved_ref, (True, True, False))
    got = cu.conv2d_relu_backward(grad_y, y, saved, (True, True, False))
    close(got[0], want[0])
    close(got[1], want[1])


def test_conv2d_in_float64_matches_reference_through_both_input_gradient_paths(input_gradient_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6))
    weight = rng.standard_normal((4, 3, 3, 2))
    bias = rng.standard_normal(4)
    args = ((1, 1), (2, 1), (1, 2), 1)
    y, saved = cu.conv2d_forward(dev(x), dev(weight), dev(bias), *args)
    y_ref, saved_ref = ref.conv2d_forward(x, weight, bias, *args)
    close(y, y_ref)
    grad_y = rng.standard_normal(y_ref.shape)
    for g, r in zip(cu.conv2d_backward(dev(grad_y), saved, (True, True, True)),
                    ref.conv2d_backward(grad_y, saved_ref, (True, True, True))):
        close(g, r)


def test_input_gradient_tries_the_windows_gemm_where_it_issues_at_most_an_eighth_more_multiply_adds(gpu_tilings):
    """The paths of grad_x worth trying (the GPU's tilings, 25 taps, 50176 pixels), the heuristic
    choice first: the windows GEMM where the group's input channels fill its row tiles (first where
    they fill the default tiling's 64-row tiles); col2im alone at other strides, where the windows
    GEMM would waste tiles, or with no channels."""
    paths = lambda cg, stride=(1, 1): conv._input_gradient_paths(stride, cg, 64, 25, 50176, 50176)   # noqa: E731
    assert paths(64) == paths(128) == ("windows", "col2im")
    assert paths(32) == ("col2im", "windows")           # 32-row tiles: as many multiply-adds as W^T grad_y's
    assert paths(64, (2, 2)) == ("col2im",)
    assert paths(16) == paths(3) == paths(65) == paths(0) == ("col2im",)
    assert conv._input_gradient_paths((1, 1), 1, 32, 9, 784, 784) == ("col2im",)


def test_implicit_convolution_launches_no_im2col_and_keeps_no_columns(monkeypatch):
    """The forward is one GEMM (no im2col launch) and saves, for grad_W, x's windows, not columns;
    the im2col setting launches im2col and keeps its columns for grad_W."""
    rng = np.random.default_rng(0)
    x, weight = dev(rng.standard_normal((2, 3, 6, 6)).astype(np.float32)), dev(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    with cu.count_launches() as launches:
        _, saved = cu.conv2d_forward(x, weight, None, (1, 1), (1, 1), (1, 1), 1)
    (b, pb, windows), = saved[1]             # one group's B operand
    assert launches() == 1 and b is x and pb == 0 and windows is not None
    monkeypatch.setattr(conv, "IMPLICIT", False)
    with cu.count_launches() as launches:
        _, saved = cu.conv2d_forward(x, weight, None, (1, 1), (1, 1), (1, 1), 1)
    (b, pb, windows), = saved[1]
    assert launches() == 2 and b.shape == (1, 27, 72) and pb == 72 and windows is None


def test_the_windows_table_is_built_once_per_geometry():
    first = conv._input_windows((2, 3, 7, 7), 0, 3, (3, 3), (1, 1), (1, 1), (1, 1), 7, 7)
    assert conv._input_windows((5, 3, 7, 7), 0, 3, (3, 3), (1, 1), (1, 1), (1, 1), 7, 7) is first   # any batch
    assert conv._input_windows((2, 3, 7, 7), 0, 3, (3, 3), (1, 1), (0, 0), (1, 1), 5, 5) is not first
    table = first.copy_to_host()
    # header, 27 taps, then zero entries for the fetch's reads past the matrix's edge
    assert table.dtype == np.int64 and table.shape == (linear.WINDOW_HEADER + 3 * (27 + linear.window_slack()),)
    assert not table[linear.WINDOW_HEADER + 3 * 27:].any()
    assert list(table[:linear.WINDOW_HEADER]) == [3 * 49, 7, 7, 7, 7, 1, 1, -1, -1]
    # tap (c=1, i=2, j=1): offset 1 * 49 + 2 * 7 + 1, displacement (2, 1)
    t = linear.WINDOW_HEADER + 3 * (9 + 2 * 3 + 1)
    assert list(table[t:t + 3]) == [49 + 14 + 1, 2, 1]
