"""Neural-network modules with PyTorch's names, arguments and state-dict keys."""
from . import init
from .container import ModuleDict, ModuleList, Sequential
from .layers import (ELU, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten,
                     GroupNorm, Identity, InstanceNorm2d, LayerNorm, LeakyReLU, Linear, MaxPool2d, MaxUnpool2d,
                     ReLU, Sigmoid, Softmax, Tanh, Upsample)
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss, TripletMarginLoss
from .module import Module
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "Linear", "Conv2d", "MaxPool2d",
           "AvgPool2d", "MaxUnpool2d", "AdaptiveAvgPool2d", "Upsample", "Flatten", "ReLU", "LeakyReLU", "ELU",
           "Sigmoid", "Tanh", "Softmax", "Dropout", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm",
           "InstanceNorm2d", "Identity", "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "BCEWithLogitsLoss",
           "TripletMarginLoss", "init"]
