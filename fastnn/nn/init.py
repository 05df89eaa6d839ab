"""Weight initialisation, with PyTorch's default rules (``torch.nn.init``)."""
import math

import numpy as np

from ..random import generator


def _fan_in(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive


def uniform_(tensor, low, high):
    tensor.data[...] = generator().uniform(low, high, size=tensor.shape)
    return tensor


def kaiming_uniform_(tensor, a=0.0):
    """U(-b, b), b = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a²)) (leaky_relu gain)."""
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / _fan_in(tensor.shape))
    return uniform_(tensor, -bound, bound)


def default_weight_and_bias_(weight, bias):
    """PyTorch's Linear/Conv default: kaiming_uniform(a=sqrt(5)) weights, U(±1/sqrt(fan_in)) bias."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = _fan_in(weight.shape)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)


def zeros_(tensor):
    tensor.data[...] = 0
    return tensor


def ones_(tensor):
    tensor.data[...] = 1
    return tensor
