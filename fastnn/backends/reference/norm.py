"""Batch normalisation over every axis but the channel axis 1.

y = (x - mean) / sqrt(var + eps) * weight + bias; in training, mean/var are the batch statistics
(biased var for normalising; the running variance is updated with the unbiased one, like PyTorch).
"""
import numpy as np

from .activation import relu_backward, relu_forward

__all__ = ["batch_norm_forward", "batch_norm_backward", "batch_norm_relu_forward", "batch_norm_relu_backward",
           "standardize_rows_forward", "standardize_rows_backward", "instance_norm_running_stats_"]


def _stat_shape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Returns (y, saved); updates running_mean/running_var in place when training."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = _stat_shape(x)
    if training:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        if running_mean is not None:
            n = x.size // x.shape[1]
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * var * (n / max(n - 1, 1))
    else:
        mean, var = running_mean, running_var
    invstd = (1 / np.sqrt(var + eps)).astype(x.dtype, copy=False)
    x_hat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    y = x_hat if weight is None else x_hat * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y.astype(x.dtype, copy=False), (x_hat, invstd, weight, training)


def batch_norm_backward(grad_y, saved, needs_input_grad):
    """grad_x = invstd / n * (n g - sum g - x_hat sum(g x_hat)), g = grad_y * weight (training);
    grad_x = grad_y * weight * invstd (eval, statistics are constants)."""
    x_hat, invstd, weight, training = saved
    axes = (0,) + tuple(range(2, x_hat.ndim))
    shape = _stat_shape(x_hat)
    grad_bias = grad_y.sum(axis=axes)
    grad_weight = (grad_y * x_hat).sum(axis=axes)
    g = grad_y if weight is None else grad_y * weight.reshape(shape)
    grad_x = None
    if needs_input_grad[0]:
        if training:
            n = x_hat.size // x_hat.shape[1]
            sum_g = g.sum(axis=axes).reshape(shape)
            sum_g_xhat = (g * x_hat).sum(axis=axes).reshape(shape)
            grad_x = invstd.reshape(shape) / n * (n * g - sum_g - x_hat * sum_g_xhat)
        else:
            grad_x = g * invstd.reshape(shape)
    return grad_x, grad_weight, grad_bias



def batch_norm_relu_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """y = max(batch_norm(x), 0): a BatchNorm and the ReLU after it as one op (nn.Sequential
    fuses them); (y, saved) like batch_norm_forward."""
    z, saved = batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps)
    return relu_forward(z), saved


def batch_norm_relu_backward(grad_y, y, saved, needs_input_grad):
    """batch_norm_backward at grad_y ⊙ 1[y > 0], y the output of batch_norm_relu_forward."""
    return batch_norm_backward(relu_backward(grad_y, y), saved, needs_input_grad)

def standardize_rows_forward(x, eps):
    """Per row of a 2-D (M, K) array: x_hat = (x - mean) / sqrt(var + eps) (biased variance).

    The core of LayerNorm (rows = samples), GroupNorm (rows = (sample, group)) and InstanceNorm
    (rows = (sample, channel)); the affine part is applied by the caller. Returns (x_hat, invstd).
    """
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    invstd = (1 / np.sqrt(var + eps)).astype(x.dtype, copy=False)
    return ((x - mean) * invstd).astype(x.dtype, copy=False), invstd


def standardize_rows_backward(grad_x_hat, x_hat, invstd):
    """grad_x = invstd / K (K g - sum g - x_hat sum(g x_hat)), sums along each row."""
    k = x_hat.shape[1]
    sum_g = grad_x_hat.sum(axis=1, keepdims=True)
    sum_g_xhat = (grad_x_hat * x_hat).sum(axis=1, keepdims=True)
    return invstd / k * (k * grad_x_hat - sum_g - x_hat * sum_g_xhat)


def instance_norm_running_stats_(x, running_mean, running_var, momentum):
    """InstanceNorm's running statistics (C,), updated in place: each follows the mean over the
    batch of the per-(sample, channel) statistics (mean, unbiased variance) of x (N, C, *spatial)."""
    n, c = x.shape[:2]
    planes = x.reshape(n, c, -1)
    count = planes.shape[2]
    mean = planes.mean(axis=2).mean(axis=0)
    var = (planes.var(axis=2) * count / max(count - 1, 1)).mean(axis=0)
    running_mean *= 1 - momentum
    running_mean += momentum * mean.astype(running_mean.dtype)
    running_var *= 1 - momentum
    running_var += momentum * var.astype(running_var.dtype)
