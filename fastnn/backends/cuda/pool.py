"""Max and average pooling on the device; the same math and index convention as ``reference/pool.py``.

Both backward kernels are gathers over the input (each input pixel sums the outputs whose window
holds it and, for max, chose it), so overlapping windows need no atomics and no zero-fill launch.
The max backward's contract carries no geometry: the forward attaches it to the indices array it
returns; indices from elsewhere take a zero fill and an atomic scatter instead.

Max unpooling (same contract as the reference's, in ``reference/resample.py``): a zero fill and a
scatter forward (indices that repeat within a plane keep one of their values, not necessarily the
last one as NumPy's put does), a gather backward (one launch).

Precision: a kernel computes in its arrays' dtype. Numba types a float literal, and an int mixed
with a float32, as float64, so the kernels write their constants as ``x.dtype.type(0)`` (a float32
constant for float32 arrays): the window sums are short and stay in the dtype, as the reference's.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, uint64

from ..reference.pool import pool_output_size
from ._core import (empty, kernel, launch, launch_grid, pixel_launch, pixel_strides, plane_position, to_device,
                    unravel4, windows_holding)
from .elementwise import contiguous, zeros

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "max_unpool2d_forward", "max_unpool2d_backward", "max_unpool2d_indices_outside"]


# The pooling kernels' grids (``_core.pixel_launch``): x over the pixels of a plane (the outputs'
# forward, the inputs' backward), y over channels, z over slices of the batch. A thread works out its
# pixel and window bounds once and walks its channels and images: no division per element.
@kernel
def _max_pool(x, y, indices, n_img, ch, h, w, ho, wo, kh, kw, sh, sw, ph, pw):
    """y and indices (N, C, Ho, Wo) = each window's max of x (N, C, H, W) and its flat H*W index, the
    first maximum in (i, j) order (a NaN wins, as in the reference). The three are the flat memory
    of C-contiguous arrays: a thread works out its output pixel's window, clipped to the plane, once
    and keeps the offsets of its (channel, image) planes, stepped by the images' strides."""
    lowest = x.dtype.type(-math.inf)
    plane_in = uint64(h * w)
    plane_out = uint64(ho * wo)
    images = uint64(cuda.gridDim.z) * uint64(ch)          # planes from one of the thread's images to the next
    x0, x_step, y0, y_step = pixel_strides()
    for q in range(x0, ho * wo, x_step):
        oh, ow = plane_position(q, wo)
        top = oh * sh - ph
        left = ow * sw - pw
        i_lo, i_hi = max(0, -top), min(kh, h - top)        # the taps inside the plane: [i_lo, i_hi) x [j_lo, j_hi)
        j_lo, j_hi = max(0, -left), min(kw, w - left)
        first = max(top, 0) * w + max(left, 0)             # the scan starts at the first in-bounds position
        for c in range(y0, ch, y_step):
            n = cuda.blockIdx.z
            plane = uint64(n) * uint64(ch) + uint64(c)
            src = plane * plane_in
            dst = plane * plane_out + uint64(q)
            while n < n_img:
                best = lowest
                best_i = first
                i = i_lo
                while i < i_hi:
                    row = (top + i) * w + left             # + j >= 0 for the taps inside
                    j = j_lo
                    while j < j_hi:
                        v = x[src + uint64(row + j)]
                        if v > best or math.isnan(v):
                            best = v
                            best_i = row + j
                        j += 1
                    i += 1
                y[dst] = best
                indices[dst] = best_i
                src += images * plane_in
                dst += images * plane_out
                n += cuda.gridDim.z


@kernel
def _max_pool_backward(grad_y, indices, grad_x, total):
    """Scatter: grad_x[n, c].flat[indices] += grad_y (atomics: overlapping windows may collide)."""
    ch, w = grad_x.shape[1], grad_x.shape[3]
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        n, c, oh, ow = unravel4(t, ch, ho, wo)
        flat = indices[n, c, oh, ow]
        cuda.atomic.add(grad_x, (n, c, flat // w, flat % w), grad_y[n, c, oh, ow])


@kernel
def _max_pool_backward_gather(grad_y, indices, grad_x, n_img, ch, h, w, ho, wo, kh, kw, sh, sw, ph, pw):
    """grad_x[n, c, ih, iw] = Σ grad_y over the outputs whose window holds (ih, iw) and chose it.
    The three are the flat memory of C-contiguous arrays, walked as ``_max_pool`` walks its own."""
    zero = grad_x.dtype.type(0)
    plane_in = uint64(h * w)
    plane_out = uint64(ho * wo)
    images = uint64(cuda.gridDim.z) * uint64(ch)
    x0, x_step, y0, y_step = pixel_strides()
    for flat in range(x0, h * w, x_step):
        ih, iw = plane_position(flat, w)
        oh_lo, oh_hi = windows_holding(ih, ph, kh, sh, ho)     # lo >= 0
        ow_lo, ow_hi = windows_holding(iw, pw, kw, sw, wo)
        for c in range(y0, ch, y_step):
            n = cuda.blockIdx.z
            plane = uint64(n) * uint64(ch) + uint64(c)
            src = plane * plane_out
            dst = plane * plane_in + uint64(flat)
            while n < n_img:
                acc = zero
                oh = oh_lo
                while oh <= oh_hi:
                    at = src + uint64(oh * wo + ow_lo)
                    ow = ow_lo
                    while ow <= ow_hi:
                        if indices[at] == flat:
                            acc += grad_y[at]
                        at += uint64(1)
                        ow += 1
                    oh += 1
                grad_x[dst] = acc
                src += images * plane_out
                dst += images * plane_in
                n += cuda.gridDim.z


@kernel
def _avg_pool(x, y, kh, kw, sh, sw, ph, pw):
    n_img, ch, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    zero = y.dtype.type(0)
    inv = y.dtype.type(1) / y.dtype.type(kh * kw)
    x0, x_step, y0, y_step = pixel_strides()
    for q in range(x0, ho * wo, x_step):
        oh, ow = plane_position(q, wo)
        for c in range(y0, ch, y_step):
            for n in range(cuda.blockIdx.z, n_img, cuda.gridDim.z):
                acc = zero
                for i in range(kh):
                    ih = oh * sh - ph + i
                    if 0 <= ih < h:
                        for j in range(kw):
                            iw = ow * sw - pw + j
                            if 0 <= iw < w:
                                acc += x[n, c, ih, iw]
                y[n, c, oh, ow] = acc * inv


@kernel
def _avg_pool_backward(grad_y, grad_x, kh, kw, sh, sw, ph, pw):
    n_img, ch, h, w = grad_x.shape
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    zero = grad_x.dtype.type(0)
    inv = grad_x.dtype.type(1) / grad_x.dtype.type(kh * kw)
    x0, x_step, y0, y_step = pixel_strides()
    for q in range(x0, h * w, x_step):
        ih, iw = plane_position(q, w)
        oh_lo, oh_hi = windows_holding(ih, ph, kh, sh, ho)
        ow_lo, ow_hi = windows_holding(iw, pw, kw, sw, wo)
        for c in range(y0, ch, y_step):
            for n in range(cuda.blockIdx.z, n_img, cuda.gridDim.z):
                acc = zero
                for oh in range(oh_lo, oh_hi + 1):
                    for ow in range(ow_lo, ow_hi + 1):
                        acc += grad_y[n, c, oh, ow]
                grad_x[n, c, ih, iw] = acc * inv


@kernel
def _unpool_scatter(x, indices, y, total):
    """y[n, c].flat[indices[n, c, i, j]] = x[n, c, i, j]."""
    ch, h, w = x.shape[1], x.shape[2], x.shape[3]
    wo = y.shape[3]
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        n, c, i, j = unravel4(t, ch, h, w)
        flat = indices[n, c, i, j]
        y[n, c, flat // wo, flat % wo] = x[n, c, i, j]


@kernel
def _unpool_gather(grad_y, indices, grad_x, total):
    """grad_x[n, c, i, j] = grad_y[n, c].flat[indices[n, c, i, j]]."""
    ch, h, w = grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]
    wo = grad_y.shape[3]
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        n, c, i, j = unravel4(t, ch, h, w)
        flat = indices[n, c, i, j]
        grad_x[n, c, i, j] = grad_y[n, c, flat // wo, flat % wo]


@kernel
def _count_outside(indices, plane, counter, total):
    """counter[0] += #{t : indices[t] outside [0, plane)}."""
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        v = indices[t]
        if v < 0 or v >= plane:
            cuda.atomic.add(counter, 0, 1)


def _out_shape(x_shape, kernel_size, stride, padding):
    return (x_shape[0], x_shape[1], pool_output_size(x_shape[2], kernel_size[0], stride[0], padding[0]),
            pool_output_size(x_shape[3], kernel_size[1], stride[1], padding[1]))


def max_pool2d_forward(x, kernel_size, stride, padding):
    """(y, indices): the max of each window and its flat H*W index (int64)."""
    x = contiguous(x)
    shape = _out_shape(x.shape, kernel_size, stride, padding)
    y = empty(shape, x.dtype)
    indices = empty(shape, np.int64)
    launch_grid(_max_pool, *pixel_launch(shape[2] * shape[3], shape[1], shape[0]), x.reshape(x.size),
                y.reshape(y.size), indices.reshape(indices.size), *x.shape, shape[2], shape[3], kernel_size[0],
                kernel_size[1], stride[0], stride[1], padding[0], padding[1])
    indices.pool_geometry = (tuple(kernel_size), tuple(stride), tuple(padding))   # for the one-launch backward
    return y, indices


def max_pool2d_backward(grad_y, indices, x_shape):
    """grad_x[n, c].flat[indices[n, c]] += grad_y[n, c].

    Indices from this backend's forward carry their window geometry: one gather launch over the
    input (deterministic, no atomics). Other indices: a zero fill and an atomic scatter.
    """
    grad_y = contiguous(grad_y)
    geometry = getattr(indices, "pool_geometry", None)
    if geometry is not None:
        (kh, kw), (sh, sw), (ph, pw) = geometry
        grad_x = empty(x_shape, grad_y.dtype)
        n, c, h, w = x_shape
        launch_grid(_max_pool_backward_gather, *pixel_launch(h * w, c, n), grad_y.reshape(grad_y.size),
                    indices.reshape(indices.size), grad_x.reshape(grad_x.size), n, c, h, w, grad_y.shape[2],
                    grad_y.shape[3], kh, kw, sh, sw, ph, pw)
        return grad_x
    grad_x = zeros(x_shape, grad_y.dtype)
    total = grad_y.size
    launch(_max_pool_backward, total, grad_y, indices, grad_x, total)
    return grad_x


def avg_pool2d_forward(x, kernel_size, stride, padding):
    """y = Σ window / (kH kW), zeros in the padding."""
    x = contiguous(x)
    shape = _out_shape(x.shape, kernel_size, stride, padding)
    y = empty(shape, x.dtype)
    launch_grid(_avg_pool, *pixel_launch(shape[2] * shape[3], shape[1], shape[0]), x, y, kernel_size[0],
                kernel_size[1], stride[0], stride[1], padding[0], padding[1])
    return y


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding):
    """grad_x[window] += grad_y / (kH kW) for every window (gathered per input pixel)."""
    grad_y = contiguous(grad_y)
    grad_x = empty(x_shape, grad_y.dtype)
    launch_grid(_avg_pool_backward, *pixel_launch(x_shape[2] * x_shape[3], x_shape[1], x_shape[0]), grad_y,
                grad_x, kernel_size[0], kernel_size[1], stride[0], stride[1], padding[0], padding[1])
    return grad_x


def max_unpool2d_forward(x, indices, output_hw):
    """Scatter each value of x (N, C, h, w) to position ``indices`` (flat in the Ho*Wo plane), zeros
    elsewhere: a zero fill and one scatter launch. ``indices``: an int device array of x's shape."""
    x, indices = contiguous(x), contiguous(indices)
    n, c = x.shape[:2]
    y = zeros((n, c, int(output_hw[0]), int(output_hw[1])), x.dtype)
    total = x.size
    launch(_unpool_scatter, total, x, indices, y, total)
    return y


def max_unpool2d_backward(grad_y, indices):
    """grad_x = grad_y gathered at ``indices`` (one launch)."""
    grad_y, indices = contiguous(grad_y), contiguous(indices)
    grad_x = empty(indices.shape, grad_y.dtype)
    total = indices.size
    launch(_unpool_gather, total, grad_y, indices, grad_x, total)
    return grad_x


def max_unpool2d_indices_outside(indices, plane):
    """How many of ``indices`` lie outside [0, plane) (max_unpool2d's argument check): one launch
    and an 8-byte read-back, so that a bad index raises instead of writing outside y."""
    flat = contiguous(indices).reshape(indices.size)
    counter = to_device(np.zeros(1, np.int64))   # a copy, not a launch: still 0 under count_launches(dry_run=True)
    if flat.size:
        launch(_count_outside, flat.size, flat, int(plane), counter, flat.size)
    return int(counter.copy_to_host()[0])
