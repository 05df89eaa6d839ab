"""2-D convolution on the device: implicit GEMM (the GEMM reads the input's windows in place), with
im2col and col2im kept for the kernel contract and for the input gradient where implicit GEMM would
waste its tiles.

Same math as ``reference/conv.py``. The GEMM's B operand is the matrix of x's windows (rows the taps
(c, i, j), columns the output pixels (n, oh, ow): what im2col would write, read from x itself,
``linear.WINDOW_HEADER``), so one GEMM per group covers the whole batch with no columns in memory:
y viewed as the (O, N P) matrix is written straight into NCHW by the GEMM's epilogue, with the bias
added there. Backward:
    grad_W    = grad_y (O, N P) · windows(x)^T    (grad_y read in place as NCHW)
    grad_b    = Σ_{n, p} grad_y                   (summed inside the grad_W GEMM)
    grad_x    = W'^T-windows GEMM at stride 1: grad_x[n, c, h, w] = Σ_{o, i, j} W[o, c, i, j]
                grad_y[n, o, h + pH - i dH, w + pW - j dW], the windows of grad_y (one GEMM),
                or col2im(W^T · grad_y) (a gather, no atomics): ``_input_gradient_paths``, timed
                on a GPU where both are worth trying
``FASTNN_CUDA_IMPLICIT_CONV=0`` makes every convolution im2col + GEMM instead (the columns written by
an im2col launch, kept for grad_W, and grad_x always by col2im): for comparing the two on a GPU.
"""
from __future__ import annotations

import os

import numpy as np
from numba import cuda, uint64

from ..reference.conv import conv_output_size
from ._core import context_key, empty, kernel, launch_grid, pixel_launch, pixel_strides, plane_position, to_device
from .elementwise import contiguous, relu_backward, sum as _sum
from . import autotune, linear
from .linear import BIAS_NONE, BIAS_ROW, MASK_A, MASK_B, WINDOW_HEADER, gemm

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "conv2d_relu_forward",
           "conv2d_relu_backward"]

IMPLICIT = os.environ.get("FASTNN_CUDA_IMPLICIT_CONV", "1") != "0"


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


_WINDOWS = {}


def _windows(source_shape, first_channel, channels, kernel_size, dilation, sign, column_plane, stride, offset):
    """The windows operand (``linear.WINDOW_HEADER``) of a C-contiguous NCHW ``source_shape``: taps
    (c, i, j) over its channels first_channel ... + channels, displaced by sign (i dH, j dW); column
    pixels over ``column_plane`` (Ho, Wo) with origins (oh sH + offsetH, ow sW + offsetW). Built on
    the host once per geometry and kept on the device (a few hundred int64s).

    Forward (and grad_W): sign +1, stride, offset -padding, the column plane the output's. grad_x at
    stride 1: the windows of grad_y, sign -1, offset +padding, the column plane the input's."""
    slack = linear.window_slack()
    key = (context_key(), tuple(source_shape[1:]), first_channel, channels, tuple(kernel_size), tuple(dilation),
           sign, tuple(column_plane), tuple(stride), tuple(offset), slack)
    table = _WINDOWS.get(key)
    if table is None:
        _, c, h, w = source_shape
        kh, kw = kernel_size
        ch, cw = column_plane
        header = [c * h * w, h, w, max(ch, 1), max(cw, 1), stride[0], stride[1], offset[0], offset[1]]
        assert len(header) == WINDOW_HEADER
        channel, i, j = np.meshgrid(np.arange(first_channel, first_channel + channels), np.arange(kh), np.arange(kw),
                                    indexing="ij")
        dh, dw = sign * i * dilation[0], sign * j * dilation[1]
        taps = np.stack([channel * h * w + dh * w + dw, dh, dw], axis=-1).reshape(-1)
        past_edge = np.zeros(3 * slack, np.int64)      # read, never used, past the matrix's edge
        table = _WINDOWS[key] = to_device(np.concatenate([np.asarray(header, np.int64), taps.astype(np.int64),
                                                          past_edge]))
    return table


def _input_windows(x_shape, g, cg, kernel_size, stride, padding, dilation, ho, wo):
    """Group g's windows of the input x (the forward's and grad_W's B operand)."""
    return _windows(x_shape, g * cg, cg, kernel_size, dilation, 1, (ho, wo), stride, (-padding[0], -padding[1]))


def _input_gradient_paths(stride, cg, og, taps, input_pixels, output_pixels):
    """The ways of computing grad_x of a group (Cg input and Og output channels, kH kW = ``taps``)
    worth trying, the heuristic choice first (``autotune`` times them on a GPU):

    * "windows": one GEMM, W' (Cg, Og taps) · windows(grad_y) over the N H W ``input_pixels``. At
      stride 1 only (at other strides most of grad_y's taps would fall between the outputs), and
      when its tiles issue at most an eighth more multiply-adds than the other path's GEMM. First
      when Cg fills the default tiling's row tiles to within an eighth (Cg = 32 fills 32-row tiles,
      but its GEMM has few blocks for the GPU and reads each grad_y element once per tap: left for
      the timing to decide);
    * "col2im": W^T (Cg taps, Og) · grad_y over the N Ho Wo ``output_pixels``, then col2im."""
    if not (IMPLICIT and tuple(stride) == (1, 1) and cg > 0):
        return ("col2im",)
    windows_work = linear.tiling_for(cg, input_pixels).covered(cg, input_pixels) * og * taps
    columns_work = linear.tiling_for(cg * taps, output_pixels).covered(cg * taps, output_pixels) * og
    if windows_work * 8 > columns_work * 9:
        return ("col2im",)
    bm = linear.TILINGS[0].BM
    return ("windows", "col2im") if -(-cg // bm) * bm * 8 <= cg * 9 else ("col2im", "windows")


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, relu=False):
    """y = W · windows(x) + b per group (max(., 0) in the GEMM's epilogue with ``relu``), one GEMM
    per group and no im2col; returns (y (N, O, Ho, Wo), saved for conv2d_backward)."""
    x, weight = contiguous(x), contiguous(weight)
    n, c = x.shape[:2]
    o, cg, kh, kw = weight.shape
    ho, wo = _geometry(x.shape, (kh, kw), stride, padding, dilation)
    p = ho * wo
    k = cg * kh * kw
    y = empty((n, o, ho, wo), x.dtype)
    y3 = y.reshape(n, o, p)
    w2 = weight.reshape(o, k)
    og = o // groups
    cols = None
    if not IMPLICIT:
        cols = empty((1, c * kh * kw, n * p), x.dtype)
        _im2col_into(x, cols, False, (kh, kw), stride, padding, dilation, ho, wo)
    # per group, (b, pb, windows): its (Cg kH kW, N Ho Wo) input matrix as a GEMM's B operand, the windows
    # of x or its rows of the im2col columns; grad_W reads the same operands, transposed
    operands = [(x, 0, _input_windows(x.shape, g, cg, (kh, kw), stride, padding, dilation, ho, wo)) if cols is None
                else (_group(cols, 1, g, k), cols.shape[2], None) for g in range(groups)]
    for g, (b, pb, windows) in enumerate(operands):
        a = _group(w2, 0, g, og).reshape(1, og, k)
        out = _group(y3, 1, g, og)
        gb = None if bias is None else _group(bias, 0, g, og)
        gemm(a, 0, k, b, 0, pb, out, p, og, n * p, k, gb, BIAS_NONE if bias is None else BIAS_ROW, relu=relu,
             windows=windows)
    saved = (x.shape, operands, weight, stride, padding, dilation, groups, bias is not None)
    return y, saved


def _input_gradient_through_windows(grad_y, y, y3, weight, x_shape, stride, padding, dilation, groups):
    """grad_x (Cg, N H W) per group = W' (Cg, Og kH kW) · windows(grad_y), at stride 1: W' element
    (c, (o, i, j)) is W[o, c, i, j], the split layout of W as (Og, Cg, kH kW) with p = kH kW; read
    through the ReLU's mask y (laid out like grad_y) when there is one."""
    n, c, h, w = x_shape
    o, cg, kh, kw = weight.shape
    og = o // groups
    grad_x = empty(x_shape, grad_y.dtype)
    gx3 = grad_x.reshape(n, c, h * w)
    w3 = weight.reshape(o, cg, kh * kw)
    for g in range(groups):
        gemm(_group(w3, 0, g, og), 0, kh * kw, grad_y, 0, 0, _group(gx3, 1, g, cg), h * w, cg, n * h * w,
             og * kh * kw, mask=y, masked=MASK_B,
             windows=_windows(grad_y.shape, g * og, og, (kh, kw), dilation, -1, (h, w), (1, 1), padding))
    return grad_x


def _input_gradient_through_columns(grad_y, y, y3, weight, x_shape, stride, padding, dilation, groups):
    """grad_x = col2im(W^T grad_y) per group, grad_y read through the ReLU's mask y3 (grad_y's layout
    as (N, O, Ho Wo)) when there is one."""
    n, c = x_shape[:2]
    o, cg, kh, kw = weight.shape
    ho, wo = grad_y.shape[2:]
    p, k, og = ho * wo, cg * kh * kw, o // groups
    gy3 = grad_y.reshape(n, o, p)
    w2 = weight.reshape(o, k)
    grad_cols = empty((1, c * kh * kw, n * p), grad_y.dtype)
    for g in range(groups):
        gemm(_group(w2, 0, g, og).reshape(1, og, k), 1, k, _group(gy3, 1, g, og), 0, p, _group(grad_cols, 1, g, k),
             n * p, k, n * p, og, mask=None if y3 is None else _group(y3, 1, g, og), masked=MASK_B)
    return _col2im_from(grad_cols, tuple(x_shape), False, (kh, kw), stride, padding, dilation, ho, wo,
                        grad_cols.dtype)


_INPUT_GRADIENT_WAYS = {"windows": _input_gradient_through_windows, "col2im": _input_gradient_through_columns}
_INPUT_GRADIENT_WAY = {}


def _input_gradient_way(key, args):
    """The function computing grad_x for a conv2d_backward described by ``key`` (dtype char, x's
    shape, W's shape, stride, padding, dilation, groups, masked), called with ``args``: among the
    paths of ``_input_gradient_paths`` (``autotune.choose``: the fastest on this GPU; the heuristic
    choice while autotuning is off), remembered in _INPUT_GRADIENT_WAY."""
    x_shape, (o, cg, kh, kw), stride, groups = key[1], key[2], key[3], key[6]
    n, _, h, w = x_shape
    ho, wo = args[0].shape[2:]
    paths = _input_gradient_paths(stride, cg, o // groups, kh * kw, n * h * w, n * ho * wo)
    return autotune.choose(_INPUT_GRADIENT_WAY, "conv2d grad_x", key, {
        name: (lambda way=_INPUT_GRADIENT_WAYS[name]: way(*args)) for name in paths}, _INPUT_GRADIENT_WAYS.__getitem__)


def conv2d_backward(grad_y, saved, needs_input_grad, relu_output=None):
    """grad_W = Σ_n grad_y windows(x)^T, grad_x (a windows GEMM, or col2im(W^T grad_y)), grad_b = Σ
    grad_y (per group). With ``relu_output`` y: the same at grad_y ⊙ 1[y > 0], the mask applied as
    the GEMMs read grad_y."""
    x_shape, operands, weight, stride, padding, dilation, groups, has_bias = saved
    x_shape = tuple(x_shape)
    want_bias = needs_input_grad[2] and has_bias
    # grad_b comes with the grad_W GEMMs' row sums, whose blocks exist only for C kH kW > 0 columns
    fuse_bias = want_bias and needs_input_grad[1] and weight.size > 0
    if relu_output is not None and want_bias and not fuse_bias:
        grad_y, relu_output = relu_backward(grad_y, relu_output), None   # grad_b alone: a plain sum below
    grad_y = contiguous(grad_y)
    n, c, h, w = x_shape
    o, cg, kh, kw = weight.shape
    ho, wo = grad_y.shape[2:]
    p = ho * wo
    k = cg * kh * kw
    og = o // groups
    gy3 = grad_y.reshape(n, o, p)
    y = None if relu_output is None else contiguous(relu_output)      # laid out like grad_y
    y3 = None if y is None else y.reshape(n, o, p)
    grad_x = grad_w = grad_b = None
    if needs_input_grad[1]:
        grad_w = empty(weight.shape, weight.dtype)
        grad_b = empty((o,), grad_y.dtype) if fuse_bias else None
        gw2 = grad_w.reshape(o, k)
        for g, (b, pb, windows) in enumerate(operands):
            a = _group(gy3, 1, g, og)
            out = _group(gw2, 0, g, og).reshape(1, og, k)
            gemm(a, 0, p, b, 1, pb, out, k, og, k, n * p,
                 row_sums=None if grad_b is None else _group(grad_b, 0, g, og),   # grad_b fused
                 mask=None if y3 is None else _group(y3, 1, g, og), masked=MASK_A, windows=windows)
    if want_bias and not fuse_bias:
        grad_b = _sum(grad_y, (0, 2, 3))
    if needs_input_grad[0]:
        key = (grad_y.dtype.char, x_shape, weight.shape, tuple(stride), tuple(padding), tuple(dilation), groups,
               y is not None)
        args = (grad_y, y, y3, weight, x_shape, stride, padding, dilation, groups)
        way = _INPUT_GRADIENT_WAY.get(key)
        if way is None:
            way = _input_gradient_way(key, args)
        grad_x = way(*args)
    return grad_x, grad_w, grad_b


def conv2d_relu_forward(x, weight, bias, stride, padding, dilation, groups):
    """max(conv2d(x), 0) (nn.Sequential's fused Conv2d + ReLU): the ReLU in the GEMM's epilogue."""
    return conv2d_forward(x, weight, bias, stride, padding, dilation, groups, relu=True)


def conv2d_relu_backward(grad_y, y, saved, needs_input_grad):
    """conv2d_backward at grad_y ⊙ 1[y > 0]: the mask is applied as the backward GEMMs read grad_y
    (no relu_backward launch)."""
    return conv2d_backward(grad_y, saved, needs_input_grad, relu_output=y)
