"""Max and average pooling over (N, C, H, W), written as a loop over the kH kW kernel taps.

Window of output (oh, ow): input rows oh sH - pH + i (i < kH), columns ow sW - pW + j (j < kW);
Ho = (H + 2 pH - kH) // sH + 1.
    max:  y = max over the window, padding = -inf; indices = ih W + iw of that maximum in the
          input's H*W plane (the first maximum; a NaN wins; PyTorch's convention).
          grad_x[n, c].flat[indices] += grad_y          (overlapping windows accumulate)
    avg:  y = Σ window / (kH kW), padding counted as zeros (count_include_pad=True).
          grad_x[window] += grad_y / (kH kW)
"""
import numpy as np

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward"]


def pool_output_size(size, kernel, stride, padding):
    """Ho = (H + 2 pad - kernel) // stride + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def _tap(offset, stride, out):
    return slice(offset, offset + stride * (out - 1) + 1, stride)


def _geometry(shape, kernel_size, stride, padding):
    h, w = shape[2:]
    return pool_output_size(h, kernel_size[0], stride[0], padding[0]), \
        pool_output_size(w, kernel_size[1], stride[1], padding[1])


def max_pool2d_forward(x, kernel_size, stride, padding):
    """(y, indices): the max of each window and its flat H*W index (int64)."""
    n, c, _, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    ho, wo = _geometry(x.shape, kernel_size, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    top = np.arange(ho) * sh - ph                                      # first input row of each window
    left = np.arange(wo) * sw - pw
    y = np.full((n, c, ho, wo), -np.inf, x.dtype)
    # the scan starts at the window's first position inside the input
    indices = np.broadcast_to(np.maximum(top, 0)[:, None] * w + np.maximum(left, 0)[None, :],
                              (n, c, ho, wo)).astype(np.int64)
    for i in range(kh):
        for j in range(kw):
            v = xp[:, :, _tap(i, sh, ho), _tap(j, sw, wo)]
            take = (v > y) | np.isnan(v)                               # -inf padding is never taken
            y = np.where(take, v, y)
            indices = np.where(take, (top[:, None] + i) * w + (left[None, :] + j), indices)
    return y, indices


def max_pool2d_backward(grad_y, indices, x_shape):
    """grad_x[n, c].flat[indices[n, c]] += grad_y[n, c]."""
    n, c, h, w = x_shape
    outputs = grad_y.shape[2] * grad_y.shape[3]
    grad_x = np.zeros((n * c, h * w), grad_y.dtype)
    planes = np.arange(n * c)[:, None]
    np.add.at(grad_x, (planes, indices.reshape(n * c, outputs)), grad_y.reshape(n * c, outputs))
    return grad_x.reshape(x_shape)


def avg_pool2d_forward(x, kernel_size, stride, padding):
    """y = Σ window / (kH kW), zeros in the padding."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    ho, wo = _geometry(x.shape, kernel_size, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros(x.shape[:2] + (ho, wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            y += xp[:, :, _tap(i, sh, ho), _tap(j, sw, wo)]
    return y / (kh * kw)


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding):
    """grad_x[window] += grad_y / (kH kW) for every window."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    ho, wo = grad_y.shape[2:]
    grad_xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), grad_y.dtype)
    share = grad_y / (kh * kw)
    for i in range(kh):
        for j in range(kw):
            grad_xp[:, :, _tap(i, sh, ho), _tap(j, sw, wo)] += share
    return np.ascontiguousarray(grad_xp[:, :, ph:ph + h, pw:pw + w])
