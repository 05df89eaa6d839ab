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


class NLLLoss(Module):
    """Negative log-likelihood of integer targets, given log-probabilities."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        return F.nll_loss(input, target, self.reduction)


class L1Loss(Module):
    """Mean absolute error."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class BCEWithLogitsLoss(Module):
    """Sigmoid + binary cross-entropy in one numerically stable op."""

    def __init__(self, reduction="mean", pos_weight=None):
        super().__init__()
        self.reduction, self.pos_weight = reduction, pos_weight

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.reduction, self.pos_weight)


class TripletMarginLoss(Module):
    """max(d(a, p) - d(a, n) + margin, 0) averaged over the batch."""

    def __init__(self, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean"):
        super().__init__()
        self.margin, self.p, self.eps, self.swap, self.reduction = margin, p, eps, swap, reduction

    def forward(self, anchor, positive, negative):
        return F.triplet_margin_loss(anchor, positive, negative, self.margin, self.p, self.eps, self.swap,
                                     self.reduction)
