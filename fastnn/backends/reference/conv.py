"""2-D convolution (cross-correlation, as PyTorch's conv2d) by im2col + GEMM.

im2col unrolls every receptive field of x into a column:
    cols[n, (c, i, j), (oh, ow)] = x[n, c, oh sH - pH + i dH, ow sW - pW + j dW]   (0 in the padding)
so that, per image n and group g (channels split into ``groups`` independent blocks; W_g viewed
as a (O/groups, C/groups kH kW) matrix, cols_g the group's rows):
    forward    y[n]_g     = W_g cols[n]_g + b_g
    backward   grad_W_g   = Σ_n grad_y[n]_g cols[n]_g^T
               grad_cols  = W_g^T grad_y[n]_g
               grad_x     = col2im(grad_cols)       (col2im is im2col's transpose: it sums the
                                                     overlapping windows back onto x)
               grad_b     = Σ_{n, oh, ow} grad_y
with Ho = (H + 2 pH - dH (kH - 1) - 1) // sH + 1 (and likewise Wo).
"""
import numpy as np

from .activation import relu_backward, relu_forward

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "conv2d_relu_forward",
           "conv2d_relu_backward"]


def conv_output_size(size, kernel, stride, padding, dilation):
    """Ho = (H + 2 pad - dilation (kernel - 1) - 1) // stride + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _tap(offset, dilation, stride, out):
    """The slice of a padded axis that kernel tap ``offset`` reads for outputs 0 .. out-1."""
    start = offset * dilation
    return slice(start, start + stride * (out - 1) + 1, stride)


def im2col(x, kernel_size, stride, padding, dilation):
    """x (N, C, H, W) -> cols (N, C kH kW, Ho Wo), rows ordered (c, i, j), columns (oh, ow)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    ho, wo = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, c, kh, kw, ho, wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, _tap(i, dh, sh, ho), _tap(j, dw, sw, wo)]
    return cols.reshape(n, c * kh * kw, ho * wo)


def col2im(cols, x_shape, kernel_size, stride, padding, dilation):
    """cols (N, C kH kW, Ho Wo) -> x (N, C, H, W): each entry added where im2col read it."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    ho, wo = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), cols.dtype)
    cols = cols.reshape(n, c, kh, kw, ho, wo)
    for i in range(kh):
        for j in range(kw):
            # one tap's slice never repeats a position, so += accumulates correctly
            xp[:, :, _tap(i, dh, sh, ho), _tap(j, dw, sw, wo)] += cols[:, :, i, j]
    return np.ascontiguousarray(xp[:, :, ph:ph + h, pw:pw + w])


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    """y = W · im2col(x) + b per group; returns (y (N, O, Ho, Wo), saved for conv2d_backward)."""
    n, _, h, w = x.shape
    o, cg, kh, kw = weight.shape
    ho, wo = conv_output_size(h, kh, stride[0], padding[0], dilation[0]), \
        conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    cols = im2col(x, (kh, kw), stride, padding, dilation)
    w_g = weight.reshape(groups, o // groups, cg * kh * kw)            # (G, O/G, K)
    cols_g = cols.reshape(n, groups, cg * kh * kw, ho * wo)            # (N, G, K, P)
    y = np.matmul(w_g, cols_g).reshape(n, o, ho, wo)                   # (N, G, O/G, P)
    if bias is not None:
        y += bias.reshape(1, o, 1, 1)
    saved = (x.shape, weight, cols, stride, padding, dilation, groups, bias is not None)
    return y, saved


def conv2d_backward(grad_y, saved, needs_input_grad):
    """grad_W = Σ_n grad_y cols^T, grad_x = col2im(W^T grad_y), grad_b = Σ grad_y (per group)."""
    x_shape, weight, cols, stride, padding, dilation, groups, has_bias = saved
    n = x_shape[0]
    o, cg, kh, kw = weight.shape
    k, p = cg * kh * kw, cols.shape[-1]
    grad_y = np.asarray(grad_y, dtype=cols.dtype)
    gy_g = grad_y.reshape(n, groups, o // groups, p)                   # (N, G, O/G, P)
    cols_g = cols.reshape(n, groups, k, p)                             # (N, G, K, P)
    w_g = weight.reshape(groups, o // groups, k)                       # (G, O/G, K)
    grad_x = grad_w = grad_b = None
    if needs_input_grad[0]:
        grad_cols = np.matmul(w_g.transpose(0, 2, 1), gy_g).reshape(cols.shape)
        grad_x = col2im(grad_cols, x_shape, (kh, kw), stride, padding, dilation)
    if needs_input_grad[1]:
        grad_w = np.matmul(gy_g, cols_g.transpose(0, 1, 3, 2)).sum(axis=0).reshape(weight.shape)
    if needs_input_grad[2] and has_bias:
        grad_b = grad_y.sum(axis=(0, 2, 3))
    return grad_x, grad_w, grad_b


def conv2d_relu_forward(x, weight, bias, stride, padding, dilation, groups):
    """y = max(conv2d(x), 0): a Conv2d and the ReLU after it as one op (nn.Sequential fuses them)."""
    z, saved = conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    return relu_forward(z), saved


def conv2d_relu_backward(grad_y, y, saved, needs_input_grad):
    """conv2d_backward at grad_y ⊙ 1[y > 0], y the output of conv2d_relu_forward."""
    return conv2d_backward(relu_backward(grad_y, y), saved, needs_input_grad)
