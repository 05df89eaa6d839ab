"""Every differentiable op of fastnn: validate arguments, run the backend kernel, record backward.

Import as ``import fastnn.functional as F``. Names and semantics follow ``torch.nn.functional``.
Validation lives here, in Python, before any kernel touches memory: kernels trust their inputs.
One module per family: conv (conv2d, linear), pooling, activation (+ softmax, dropout),
normalization, loss, tensor_ops (arithmetic, reductions, shapes).
"""

from .activation import dropout, log_softmax, relu, sigmoid, softmax, tanh
from .conv import conv2d, linear
from .loss import cross_entropy, mse_loss
from .normalization import batch_norm
from .pooling import avg_pool2d, max_pool2d
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
    "conv2d",
    "linear",
    "max_pool2d",
    "avg_pool2d",
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "dropout",
    "batch_norm",
    "cross_entropy",
    "mse_loss",
    "flatten",
    "reshape",
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "pow",
    "matmul",
    "exp",
    "log",
    "abs",
    "sum",
    "mean",
    "transpose",
    "permute",
    "getitem",
    "cat",
    "stack",
    "cast",
]
