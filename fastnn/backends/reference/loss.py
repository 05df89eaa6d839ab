"""Losses. Class dimension is axis 1 (N, C) or (N, C, d1, ...), targets are int class indices."""
import numpy as np

from .softmax import log_softmax_forward

__all__ = ["cross_entropy_forward", "cross_entropy_backward", "mse_loss_forward", "mse_loss_backward",
           "nll_loss_forward", "nll_loss_backward", "l1_loss_forward", "l1_loss_backward",
           "bce_with_logits_forward", "bce_with_logits_backward"]


def _reduce(per_item, reduction):
    if reduction == "mean":
        return np.asarray(per_item.mean(), dtype=per_item.dtype)
    if reduction == "sum":
        return np.asarray(per_item.sum(), dtype=per_item.dtype)
    return per_item


def cross_entropy_forward(logits, target, reduction, label_smoothing):
    """loss_n = -sum_c q_nc log softmax(logits_n)_c, with q = (1 - ε) onehot(target) + ε / C.

    Returns (loss, saved). ``logits`` (N, C, *), ``target`` int (N, *).
    """
    num_classes = logits.shape[1]
    log_p = log_softmax_forward(logits, 1)
    picked = np.take_along_axis(log_p, np.expand_dims(target, 1), axis=1)[:, 0]
    per_item = -(1 - label_smoothing) * picked
    if label_smoothing:
        per_item = per_item - label_smoothing / num_classes * log_p.sum(axis=1)
    return _reduce(per_item, reduction), (log_p, target, reduction, label_smoothing)


def cross_entropy_backward(grad_loss, saved):
    """grad_logits = (softmax(logits) - q) * grad_loss (/ number of items for 'mean')."""
    log_p, target, reduction, label_smoothing = saved
    num_classes = log_p.shape[1]
    grad = np.exp(log_p)
    if label_smoothing:
        grad -= label_smoothing / num_classes
    onehot = np.zeros_like(grad)
    np.put_along_axis(onehot, np.expand_dims(target, 1), 1 - label_smoothing, axis=1)
    grad -= onehot
    if reduction == "none":
        return grad * np.expand_dims(grad_loss, 1)
    scale = grad_loss / (target.size if reduction == "mean" else 1)
    return grad * scale


def mse_loss_forward(x, target, reduction):
    """loss = reduce((x - target)²)."""
    diff = x - target
    return _reduce(diff * diff, reduction), diff


def mse_loss_backward(grad_loss, diff, reduction):
    """grad_x = 2 (x - target) * grad_loss (/ n for 'mean'); grad_target = -grad_x."""
    scale = 2 * grad_loss / (diff.size if reduction == "mean" else 1)
    return diff * scale


def nll_loss_forward(log_probs, target, reduction):
    """loss_n = -log_probs[n, target_n]. ``log_probs`` (N, C, *), ``target`` int (N, *)."""
    picked = np.take_along_axis(log_probs, np.expand_dims(target, 1), axis=1)[:, 0]
    return _reduce(-picked, reduction)


def nll_loss_backward(grad_loss, log_probs_shape, dtype, target, reduction):
    """grad[n, target_n] = -grad_loss (/ number of items for 'mean'), zero elsewhere."""
    grad = np.zeros(log_probs_shape, dtype)
    if reduction == "none":
        values = -np.expand_dims(grad_loss, 1)
    else:
        values = np.full((1,) * len(log_probs_shape), -grad_loss / (target.size if reduction == "mean" else 1), dtype)
        values = np.broadcast_to(values, (target.shape[0], 1) + target.shape[1:])
    np.put_along_axis(grad, np.expand_dims(target, 1), values.astype(dtype), axis=1)
    return grad


def l1_loss_forward(x, target, reduction):
    """loss = reduce(|x - target|)."""
    diff = x - target
    return _reduce(np.abs(diff), reduction), diff


def l1_loss_backward(grad_loss, diff, reduction):
    """grad_x = sign(x - target) * grad_loss (/ n for 'mean')."""
    scale = grad_loss / (diff.size if reduction == "mean" else 1)
    return (np.sign(diff) * scale).astype(diff.dtype, copy=False)


def bce_with_logits_forward(x, target, reduction, pos_weight=None):
    """loss = -[w_p t log σ(x) + (1 - t) log(1 - σ(x))], computed stably:
    log σ(x) = -softplus(-x), log(1 - σ(x)) = -softplus(x)."""
    softplus_neg = np.logaddexp(0, -x)  # -log σ(x)
    softplus_pos = np.logaddexp(0, x)   # -log(1 - σ(x))
    w = 1 if pos_weight is None else pos_weight
    per_item = (w * target * softplus_neg + (1 - target) * softplus_pos).astype(x.dtype, copy=False)
    return _reduce(per_item, reduction)


def bce_with_logits_backward(grad_loss, x, target, reduction, pos_weight=None):
    """grad_x = (σ(x)(w_p t + 1 - t) - w_p t) * s; grad_t = (w_p softplus(-x) - softplus(x)) * s,
    s = grad_loss (/ n for 'mean'). Returns (grad_x, grad_target)."""
    e = np.exp(-np.abs(x))
    sig = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    w = 1 if pos_weight is None else pos_weight
    scale = grad_loss / (x.size if reduction == "mean" else 1)
    grad_x = (sig * (w * target + 1 - target) - w * target) * scale
    grad_t = (w * np.logaddexp(0, -x) - np.logaddexp(0, x)) * scale
    return grad_x.astype(x.dtype, copy=False), grad_t.astype(x.dtype, copy=False)
