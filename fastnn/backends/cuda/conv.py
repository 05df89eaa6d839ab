"""2-D convolution on the device: im2col + the tiled GEMM, col2im as a gather (no atomics).

Same math as ``reference/conv.py``. The forward's columns are laid out (C kH kW, N Ho Wo) so one
GEMM per group covers the whole batch: y viewed as the (O, N P) matrix is written straight into
NCHW by the GEMM's epilogue, with the bias added there. Backward:
    grad_W    = grad_y (O, N P) · cols^T          (grad_y read in place as NCHW)
    grad_cols = W^T · grad_y                     (K, N P)
    grad_x    = col2im(grad_cols): each input pixel sums the taps that read it (a gather)
    grad_b    = Σ_{n, p} grad_y                   (summed inside the grad_W GEMM)
"""
from __future__ import annotations

from numba import cuda, uint64

from ..reference.conv import conv_output_size
from ._core import empty, kernel, launch_grid, pixel_launch, pixel_strides, plane_position
from .elementwise import contiguous, relu_backward, sum as _sum
from .linear import BIAS_NONE, BIAS_ROW, MASK_A, MASK_B, gemm

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "conv2d_relu_forward",
           "conv2d_relu_backward"]


# im2col and col2im compute in the arrays' dtype: their zero is ``cols.dtype.type(0)``, as Numba
# types a float literal (0.0) as float64, which would make the copy and col2im's sum float64.
#
# Their grids (``_core.pixel_launch``): x over pixels (im2col: output pixels p = (oh, ow); col2im: input
# pixels (ih, iw)), y over rows (c, i, j) or channels, z over slices of the batch. A thread keeps its
# pixel and row (one divmod each, once) and walks its images: no division per element (Numba's
# integer arithmetic is 64-bit, ~70 instructions a division; the earlier flat grid did five per element).
@kernel
def _im2col(x, cols, n_img, ch, h, w, batch_major, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    """cols[(c, i, j), (n, oh, ow)] = x[n, c, oh sH - pH + i dH, ow sW - pW + j dW] (0 in the padding);
    batch_major: cols stored (N, K, P) (the kernel contract) instead of (1, K, N P).

    x and cols are the flat memory of the C-contiguous (N, C, H, W) input and of cols: a thread works
    out the offsets of its (pixel, row) in image blockIdx.z once, then steps both by its images'
    strides (no 4-D index arithmetic per element; offsets are unsigned, so no wraparound code)."""
    p_count = ho * wo
    rows = ch * kh * kw
    zero = cols.dtype.type(0)
    image_step = uint64(cuda.gridDim.z)
    x_image = uint64(ch * h * w)                                   # x's stride between images
    cols_image = uint64(rows * p_count if batch_major else p_count)
    cols_row = uint64(p_count if batch_major else n_img * p_count)
    x0, x_step, y0, y_step = pixel_strides()
    for p in range(x0, p_count, x_step):
        oh, ow = plane_position(p, wo)
        for row in range(y0, rows, y_step):
            j = row % kw
            r = row // kw
            i = r % kh
            c = r // kh
            ih = oh * sh - ph + i * dh
            iw = ow * sw - pw + j * dw
            n = cuda.blockIdx.z
            out = uint64(row) * cols_row + uint64(p) + uint64(n) * cols_image
            out_step = image_step * cols_image
            if 0 <= ih < h and 0 <= iw < w:
                src = uint64(n) * x_image + uint64((c * h + ih) * w + iw)
                src_step = image_step * x_image
                while n < n_img:
                    cols[out] = x[src]
                    out += out_step
                    src += src_step
                    n += cuda.gridDim.z
            else:
                while n < n_img:
                    cols[out] = zero
                    out += out_step
                    n += cuda.gridDim.z


@cuda.jit(device=True)
def _window_position(pos, stride):
    """The output index whose window starts at ``pos`` along one axis (pos = o stride), or -1 when
    none does: no division for stride 1."""
    if pos < 0:
        return -1
    if stride == 1:
        return pos
    if pos % stride != 0:
        return -1
    return pos // stride


@kernel
def _col2im(cols, grad_x, n_img, ch, h, w, batch_major, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    """grad_x[n, c, ih, iw] = Σ over the taps (i, j) whose window position reads (ih, iw), i then j.

    cols and grad_x are the flat memory of the C-contiguous cols and (N, C, H, W) gradient: a thread
    keeps the offsets of its (pixel, channel) in its current image and steps them by the images'
    strides. At stride 1 and dilation 1 (the common case) the taps that read (ih, iw) are a
    rectangle [i_lo, i_hi] x [j_lo, j_hi] worked out once, and walking it is one add per tap: the
    next j is a row of cols on and an output column back, the next i kw rows on and an output row
    back. Otherwise each tap's window position is worked out per image (``_window_position``)."""
    p_count = ho * wo
    zero = grad_x.dtype.type(0)
    cols_image = uint64(ch * kh * kw * p_count if batch_major else p_count)
    cols_row = uint64(p_count if batch_major else n_img * p_count)
    x_image = uint64(ch * h * w)
    image_step = uint64(cuda.gridDim.z)
    unit = sh == 1 and sw == 1 and dh == 1 and dw == 1
    # the steps between taps, used only when there are taps (cols_row >= p_count >= wo >= 1): 0 otherwise,
    # as an unsigned subtraction must not wrap
    some = p_count > 0 and n_img > 0
    j_step = cols_row - uint64(1) if some else uint64(0)
    i_step = uint64(kw) * cols_row - uint64(wo) if some else uint64(0)
    x0, x_step, y0, y_step = pixel_strides()
    for q in range(x0, h * w, x_step):
        ih, iw = plane_position(q, w)
        # the taps at stride 1: oh = ih + pH - i in [0, Ho), ow = iw + pW - j in [0, Wo)
        i_lo = max(0, ih + ph - ho + 1)
        i_hi = min(kh - 1, ih + ph)
        j_lo = max(0, iw + pw - wo + 1)
        j_hi = min(kw - 1, iw + pw)
        for c in range(y0, ch, y_step):
            n = cuda.blockIdx.z
            image = uint64(n) * cols_image                 # offset of image n in cols
            out = uint64(n) * x_image + uint64(c * h * w + q)
            first = uint64(0)
            if unit and i_lo <= i_hi and j_lo <= j_hi:     # offset of tap (i_lo, j_lo) in an image
                first = uint64((c * kh + i_lo) * kw + j_lo) * cols_row + uint64((ih + ph - i_lo) * wo + iw + pw - j_lo)
            while n < n_img:
                acc = zero
                if unit:
                    row_at = image + first
                    i = i_lo
                    while i <= i_hi:
                        at = row_at
                        j = j_lo
                        while j <= j_hi:
                            acc += cols[at]
                            at += j_step
                            j += 1
                        row_at += i_step
                        i += 1
                else:
                    for i in range(kh):
                        oh = _window_position(ih + ph - i * dh, sh)
                        if oh < 0 or oh >= ho:
                            continue
                        # indices >= 0: unsigned, no wraparound
                        at = image + uint64((c * kh + i) * kw) * cols_row + uint64(oh * wo)
                        for j in range(kw):
                            ow = _window_position(iw + pw - j * dw, sw)
                            if ow < 0 or ow >= wo:
                                continue
                            acc += cols[at + uint64(j) * cols_row + uint64(ow)]
                grad_x[out] = acc
                image += image_step * cols_image
                out += image_step * x_image
                n += cuda.gridDim.z


def _group(a, axis, g, size):
    """Group g's part of ``a`` along ``axis`` (size ``size`` each): a[..., g size:(g + 1) size, ...];
    ``a`` itself when that is all of it (one group: a view costs ~20 us of host time per launch)."""
    if g == 0 and size == a.shape[axis]:
        return a
    return a[(slice(None),) * axis + (slice(g * size, (g + 1) * size),)]


def _geometry(x_shape, kernel_size, stride, padding, dilation):
    h, w = x_shape[2:]
    return (conv_output_size(h, kernel_size[0], stride[0], padding[0], dilation[0]),
            conv_output_size(w, kernel_size[1], stride[1], padding[1], dilation[1]))


def _im2col_into(x, cols, batch_major, kernel_size, stride, padding, dilation, ho, wo):
    """im2col of the C-contiguous x into the fresh cols (read and written as their flat memory)."""
    n, c, h, w = x.shape
    grid, block = pixel_launch(ho * wo, c * kernel_size[0] * kernel_size[1], n)
    launch_grid(_im2col, grid, block, x.reshape(x.size), cols.reshape(cols.size), n, c, h, w, int(batch_major),
                kernel_size[0], kernel_size[1], stride[0], stride[1], padding[0], padding[1], dilation[0],
                dilation[1], ho, wo)


def _col2im_from(cols, x_shape, batch_major, kernel_size, stride, padding, dilation, ho, wo, dtype):
    """col2im of the C-contiguous cols into a fresh grad_x (both read and written as flat memory)."""
    grad_x = empty(x_shape, dtype)
    n, c, h, w = x_shape
    launch_grid(_col2im, *pixel_launch(h * w, c, n), cols.reshape(cols.size), grad_x.reshape(grad_x.size), n, c, h,
                w, int(batch_major), kernel_size[0], kernel_size[1], stride[0], stride[1], padding[0], padding[1],
                dilation[0], dilation[1], ho, wo)
    return grad_x


def im2col(x, kernel_size, stride, padding, dilation):
    """x (N, C, H, W) -> cols (N, C kH kW, Ho Wo), rows ordered (c, i, j), columns (oh, ow)."""
    x = contiguous(x)
    n, c = x.shape[:2]
    ho, wo = _geometry(x.shape, kernel_size, stride, padding, dilation)
    cols = empty((n, c * kernel_size[0] * kernel_size[1], ho * wo), x.dtype)
    _im2col_into(x, cols, True, kernel_size, stride, padding, dilation, ho, wo)
    return cols


def col2im(cols, x_shape, kernel_size, stride, padding, dilation):
    """cols (N, C kH kW, Ho Wo) -> x (N, C, H, W): each entry added where im2col read it."""
    ho, wo = _geometry(x_shape, kernel_size, stride, padding, dilation)
    return _col2im_from(contiguous(cols), tuple(x_shape), True, kernel_size, stride, padding, dilation,
                        ho, wo, cols.dtype)


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, relu=False):
    """y = W · im2col(x) + b per group (max(., 0) in the GEMM's epilogue with ``relu``); returns
    (y (N, O, Ho, Wo), saved for conv2d_backward)."""
    x, weight = contiguous(x), contiguous(weight)
    n, c = x.shape[:2]
    o, cg, kh, kw = weight.shape
    ho, wo = _geometry(x.shape, (kh, kw), stride, padding, dilation)
    p = ho * wo
    k = cg * kh * kw
    cols = empty((1, c * kh * kw, n * p), x.dtype)
    _im2col_into(x, cols, False, (kh, kw), stride, padding, dilation, ho, wo)
    y = empty((n, o, ho, wo), x.dtype)
    y3 = y.reshape(n, o, p)
    w2 = weight.reshape(o, k)
    og = o // groups
    for g in range(groups):
        a = _group(w2, 0, g, og).reshape(1, og, k)
        b = _group(cols, 1, g, k)
        out = _group(y3, 1, g, og)
        gb = None if bias is None else _group(bias, 0, g, og)
        gemm(a, 0, k, b, 0, n * p, out, p, og, n * p, k, gb, BIAS_NONE if bias is None else BIAS_ROW, relu=relu)
    saved = (x.shape, weight, cols, stride, padding, dilation, groups, bias is not None)
    return y, saved


def conv2d_backward(grad_y, saved, needs_input_grad, relu_output=None):
    """grad_W = Σ_n grad_y cols^T, grad_x = col2im(W^T grad_y), grad_b = Σ grad_y (per group).
    With ``relu_output`` y: the same at grad_y ⊙ 1[y > 0], the mask applied as the GEMMs read grad_y."""
    x_shape, weight, cols, stride, padding, dilation, groups, has_bias = saved
    want_bias = needs_input_grad[2] and has_bias
    # grad_b comes with the grad_W GEMMs' row sums, whose blocks exist only for C kH kW > 0 columns
    fuse_bias = want_bias and needs_input_grad[1] and weight.size > 0
    if relu_output is not None and want_bias and not fuse_bias:
        grad_y, relu_output = relu_backward(grad_y, relu_output), None   # grad_b alone: a plain sum below
    grad_y = contiguous(grad_y)
    n = x_shape[0]
    o, cg, kh, kw = weight.shape
    ho, wo = grad_y.shape[2:]
    p = ho * wo
    k = cg * kh * kw
    og = o // groups
    gy3 = grad_y.reshape(n, o, p)
    y3 = None if relu_output is None else contiguous(relu_output).reshape(n, o, p)   # laid out like gy3
    w2 = weight.reshape(o, k)
    grad_x = grad_w = grad_b = None
    if needs_input_grad[1]:
        grad_w = empty(weight.shape, weight.dtype)
        grad_b = empty((o,), grad_y.dtype) if fuse_bias else None
        gw2 = grad_w.reshape(o, k)
        for g in range(groups):
            a = _group(gy3, 1, g, og)
            b = _group(cols, 1, g, k)
            out = _group(gw2, 0, g, og).reshape(1, og, k)
            gemm(a, 0, p, b, 1, n * p, out, k, og, k, n * p,
                 row_sums=None if grad_b is None else _group(grad_b, 0, g, og),   # grad_b fused
                 mask=None if y3 is None else _group(y3, 1, g, og), masked=MASK_A)
    if want_bias and not fuse_bias:
        grad_b = _sum(grad_y, (0, 2, 3))
    if needs_input_grad[0]:
        grad_cols = empty(cols.shape, cols.dtype)
        for g in range(groups):
            a = _group(w2, 0, g, og).reshape(1, og, k)
            b = _group(gy3, 1, g, og)
            out = _group(grad_cols, 1, g, k)
            gemm(a, 1, k, b, 0, p, out, n * p, k, n * p, og,
                 mask=None if y3 is None else _group(y3, 1, g, og), masked=MASK_B)
        grad_x = _col2im_from(grad_cols, tuple(x_shape), False, (kh, kw), stride, padding, dilation, ho, wo,
                              cols.dtype)
    return grad_x, grad_w, grad_b


def conv2d_relu_forward(x, weight, bias, stride, padding, dilation, groups):
    """max(conv2d(x), 0) (nn.Sequential's fused Conv2d + ReLU): the ReLU in the GEMM's epilogue."""
    return conv2d_forward(x, weight, bias, stride, padding, dilation, groups, relu=True)


def conv2d_relu_backward(grad_y, y, saved, needs_input_grad):
    """conv2d_backward at grad_y ⊙ 1[y > 0]: the mask is applied as the backward GEMMs read grad_y
    (no relu_backward launch)."""
    return conv2d_backward(grad_y, saved, needs_input_grad, relu_output=y)
