"""Every differentiable op of fastnn: validate arguments, run the backend kernel, record backward.

Import as ``import fastnn.functional as F``. Names and semantics follow ``torch.nn.functional``.
Validation lives here, in Python, before any kernel touches memory: kernels trust their inputs.
One module per family: conv (conv2d, linear), pooling, activation (+ softmax, dropout),
normalization, loss, tensor_ops (arithmetic, reductions, shapes).
"""

from .activation import dropout, elu, leaky_relu, log_softmax, relu, sigmoid, softmax, tanh
from .conv import conv2d, linear
from .loss import (binary_cross_entropy_with_logits, cross_entropy, l1_loss, mse_loss, nll_loss, one_hot,
                   pairwise_distance, triplet_margin_loss)
from .normalization import batch_norm, group_norm, instance_norm, layer_norm
from .pooling import adaptive_avg_pool2d, avg_pool2d, interpolate, max_pool2d, max_unpool2d
from .tensor_ops import (
    abs,
    add,
    cast,
    cat,
    div,
    exp,
    flatten,
    getitem,
    log,
    matmul,
    mean,
    mul,
    neg,
    permute,
    pow,
    reshape,
    stack,
    sub,
    sum,
    transpose,
)

__all__ = [
    "conv2d", "linear", "max_pool2d", "avg_pool2d", "max_unpool2d", "adaptive_avg_pool2d", "interpolate",
    "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax", "log_softmax", "dropout",
    "batch_norm", "layer_norm", "group_norm", "instance_norm",
    "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "binary_cross_entropy_with_logits", "triplet_margin_loss",
    "pairwise_distance", "one_hot",
    "flatten", "reshape", "add", "sub", "mul", "div", "neg", "pow", "matmul", "exp", "log", "abs", "sum", "mean",
    "transpose", "permute", "getitem", "cat", "stack", "cast",
]
