"""Loss modules: thin wrappers over the functional losses."""
from .. import functional as F
from .module import Module


class CrossEntropyLoss(Module):
    """Softmax cross-entropy with integer class targets. See ``functional.cross_entropy``."""

    def __init__(self, reduction="mean", label_smoothing=0.0):
        super().__init__()
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.reduction, self.label_smoothing)


class MSELoss(Module):
    """Mean squared error."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)
