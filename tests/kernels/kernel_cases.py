"""Shared pieces of the kernel tests: hypothesis strategies for conv/pool geometries, tolerances,
random arrays and non-contiguous views of them."""
import numpy as np
from hypothesis import strategies as st

DTYPES = [np.float32, np.float64]

# float32: sums of many products lose absolute precision near zero, so atol scales with the
# magnitude of the expected values; float64 is held tight.
TOL = {np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5), np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12)}


def assert_close(actual, expected, dtype=None, scale=10.0):
    """assert_allclose with the dtype's tolerance, atol scaled by max(1, max|expected|)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    dtype = np.dtype(dtype or expected.dtype)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    tol = TOL[dtype]
    magnitude = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * magnitude)


def assert_gradients_close(needs, grads, grads_ref, close=None):
    """Each gradient asked for (needs[i]) matches its reference by ``close`` (assert_close by
    default); the others are None."""
    for need, g, g_ref in zip(needs, grads, grads_ref):
        if need:
            (close or assert_close)(g, g_ref)
        else:
            assert g is None


def assert_same_bits(first, second):
    """Two (y, gradients) results of the same call hold the same bits (None where not asked for)."""
    np.testing.assert_array_equal(first[0], second[0])
    for a, c in zip(first[1], second[1]):
        np.testing.assert_array_equal(a, c)


def run_stride1_conv_binding(forward, backward, workspace_size, x, w, b, padding, threads, relu, grad_y):
    """Forward and backward of a stride-1 float32 conv binding of ``_conv`` (direct, Winograd):
    outputs and scratch pre-filled with NaN, so anything a kernel fails to write shows. Returns
    (y, (grad_x, grad_w, grad_b))."""
    workspace = np.full(workspace_size, np.nan, np.float32)
    y = np.full((x.shape[0], w.shape[0], x.shape[2] + 2 * padding[0] - w.shape[2] + 1,
                 x.shape[3] + 2 * padding[1] - w.shape[3] + 1), np.nan, np.float32)
    forward(x, w, b, padding, workspace, y, threads, relu)
    grads = (np.full(x.shape, np.nan, np.float32), np.full(w.shape, np.nan, np.float32),
             None if b is None else np.full(w.shape[0], np.nan, np.float32))
    backward(x, w, grad_y, padding, workspace, *grads, None if b is None else np.full(threads * w.shape[0], np.nan),
             threads, y if relu else None)
    return y, grads


def float64_reference_conv(x, w, b, padding, relu, grad_y, relu_output=None):
    """The reference's stride-1 conv (+ ReLU) of x, w, b in float64, and its gradients at grad_y:
    (y, (grad_x, grad_w, grad_b)).

    With ``relu``, the backward passes grad_y where ``relu_output`` (the kernel's own float32
    output, which a fused ReLU's backward reads) is > 0, else where the float64 y is: a
    pre-activation within the kernel's rounding of 0 may have the other sign in float64, and one
    flipped mask element moves grad_b by a whole grad_y term (hypothesis found |z| = 9e-6 under
    Winograd's 1e-4 rounding: grad_b off by 5%)."""
    import fastnn.backends.reference as ref
    z, saved = ref.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                  None if b is None else b.astype(np.float64), (1, 1), padding, (1, 1), 1)
    y = ref.relu_forward(z) if relu else z
    mask_source = y if relu_output is None else np.asarray(relu_output, np.float64)
    upstream = ref.relu_backward(grad_y.astype(np.float64), mask_source) if relu else grad_y.astype(np.float64)
    return y, ref.conv2d_backward(upstream, saved, (True, True, True))


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def noncontiguous(a):
    """The same values, viewed every other element of a twice-as-wide buffer (not C-contiguous)."""
    buf = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan if a.dtype.kind == "f" else -1, a.dtype)
    buf[..., ::2] = a
    return buf[..., ::2]


def out_size(size, kernel, stride, padding, dilation=1):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@st.composite
def conv_geometries(draw, max_batch=3, max_group_channels=3, max_groups=3, max_kernel=4):
    """dict(x_shape, weight_shape, stride, padding, dilation, groups) with Ho, Wo >= 1."""
    groups = draw(st.integers(1, max_groups))
    c = groups * draw(st.integers(1, max_group_channels))
    o = groups * draw(st.integers(1, max_group_channels))
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    hw = []
    for a in range(2):
        reach = dilation[a] * (kernel[a] - 1) + 1
        hw.append(max(1, reach - 2 * padding[a]) + draw(st.integers(0, 6)))
    return dict(x_shape=(draw(st.integers(1, max_batch)), c, *hw), weight_shape=(o, c // groups, *kernel),
                stride=stride, padding=padding, dilation=dilation, groups=groups)


@st.composite
def pool_geometries(draw, max_kernel=4):
    """dict(x_shape, kernel_size, stride, padding) with padding <= kernel / 2 (PyTorch's rule)."""
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    hw = [max(1, kernel[a] - 2 * padding[a]) + draw(st.integers(0, 7)) for a in range(2)]
    return dict(x_shape=(draw(st.integers(1, 3)), draw(st.integers(1, 4)), *hw),
                kernel_size=kernel, stride=stride, padding=padding)
