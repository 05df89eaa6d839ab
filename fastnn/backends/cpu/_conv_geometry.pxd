"""The conv_geometry struct of csrc/im2col.h and its checked construction, shared by the
_im2col and _conv extensions."""


cdef extern from "im2col.h" nogil:
    ctypedef struct conv_geometry:
        Py_ssize_t batch, channels, height, width
        Py_ssize_t kernel_h, kernel_w
        Py_ssize_t stride_h, stride_w
        Py_ssize_t pad_h, pad_w
        Py_ssize_t dilation_h, dilation_w
        Py_ssize_t out_h, out_w


cdef inline conv_geometry conv_geometry_of(const Py_ssize_t *x_shape, kernel_size, stride, padding,
                                            dilation) except *:
    """The geometry of a 4-D x (N, C, H, W) under the given pairs; ValueError if it is invalid."""
    cdef conv_geometry g
    g.batch, g.channels, g.height, g.width = x_shape[0], x_shape[1], x_shape[2], x_shape[3]
    g.kernel_h, g.kernel_w = kernel_size
    g.stride_h, g.stride_w = stride
    g.pad_h, g.pad_w = padding
    g.dilation_h, g.dilation_w = dilation
    if min(g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w) < 1 \
            or min(g.pad_h, g.pad_w) < 0:
        raise ValueError(f"im2col: invalid geometry kernel_size={kernel_size}, stride={stride}, "
                         f"padding={padding}, dilation={dilation}")
    g.out_h = (g.height + 2 * g.pad_h - g.dilation_h * (g.kernel_h - 1) - 1) // g.stride_h + 1
    g.out_w = (g.width + 2 * g.pad_w - g.dilation_w * (g.kernel_w - 1) - 1) // g.stride_w + 1
    if g.out_h < 1 or g.out_w < 1:
        raise ValueError(f"im2col: the dilated kernel {kernel_size} does not fit the padded input "
                         f"{(g.height, g.width)} with padding {padding}")
    return g
