"""Normalisation."""

from __future__ import annotations


from ..backend import kernels_for
from ..tensor import Tensor, as_tensor
from ._common import _result, _float_tensor, _check_ndim, _same_dtype


def batch_norm(
    input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over every axis but channels (axis 1).

    Training uses batch statistics and updates ``running_mean``/``running_var`` in place
    (unbiased variance, ``momentum`` weighting, like PyTorch); eval uses the running statistics.
    Shape: input (N, C) or (N, C, L) or (N, C, H, W); statistics and affine parameters (C,).
    """
    op = "batch_norm"
    x = _float_tensor(input, op)
    _check_ndim(x, (2, 3, 4, 5), op, "input", "(N, C, *)")
    c = x.shape[1]
    arrays = {}
    for name, value in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if value is None:
            arrays[name] = None
            continue
        t = value if isinstance(value, Tensor) else as_tensor(value, name=f"{op}: {name}")
        if tuple(t.shape) != (c,):
            raise ValueError(
                f"{op}: {name} must have shape ({c},) for an input with {c} channels, got {tuple(t.shape)}"
            )
        arrays[name] = t
    if not training and (arrays["running_mean"] is None or arrays["running_var"] is None):
        raise ValueError(f"{op}: running_mean and running_var are required when training=False")
    if training and x.size // c <= 1:
        raise ValueError(
            f"{op}: expected more than 1 value per channel when training, got input shape {tuple(x.shape)}"
        )
    w, b = arrays["weight"], arrays["bias"]
    _same_dtype(op, x, w, "weight")
    k = kernels_for(x)
    rm, rv = arrays["running_mean"], arrays["running_var"]
    y, saved = k.batch_norm_forward(
        x.data,
        None if w is None else w.data,
        None if b is None else b.data,
        None if rm is None else rm.data,
        None if rv is None else rv.data,
        bool(training),
        float(momentum),
        float(eps),
    )

    def backward(grad_y):
        gx, gw, gb = k.batch_norm_backward(grad_y, saved, (x.requires_grad,))
        return gx, (gw if w is not None else None), (gb if b is not None else None)

    return _result(y, op, (x, w, b), backward)
