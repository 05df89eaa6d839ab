"""Neural-network modules with PyTorch's names, arguments and state-dict keys."""
from .container import Sequential
from .layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity, Linear,
                     MaxPool2d, ReLU, Sigmoid, Softmax, Tanh)
from .loss import CrossEntropyLoss, MSELoss
from .module import Module
from .parameter import Parameter
from . import init

__all__ = ["Module", "Parameter", "Sequential", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten",
           "ReLU", "Sigmoid", "Tanh", "Softmax", "Dropout", "BatchNorm1d", "BatchNorm2d", "Identity",
           "CrossEntropyLoss", "MSELoss", "init"]
