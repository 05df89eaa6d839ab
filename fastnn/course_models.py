"""The course's deeper architectures: residual connections, channel attention and a U-Net.

* ``ResidualBlock`` / ``resnet_small``: blocks that re-inject their input, y = relu(F(x) + x).
* ``ChannelAttention`` / ``attention_cnn``: a softmax over per-channel scores that re-weights the
  channels, switching the least important ones (nearly) off.
* ``tiny_unet``: an encoder-decoder for semantic segmentation (per-pixel classification) whose
  decoder concatenates the encoder's feature maps (skip connections).

Every model is ordinary ``forward`` code over ``fastnn.nn`` layers, so its ``state_dict`` keys
are those of the same ``torch.nn.Module`` written with the same attribute names.

Example:
    >>> model = resnet_small(in_channels=1, num_classes=10)
    >>> model(np.zeros((2, 1, 8, 8), np.float32)).shape
    (2, 10)
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from . import nn
from .functional import cat


def _check_positive(name, arg, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
    return int(value)


# -- residual networks ---------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """The basic block of ResNet: two 3x3 convolutions with BatchNorm, plus the input re-injected.

    ``y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``. The shortcut is the identity when
    the shapes match; otherwise a 1x1 convolution (with ``stride``) and a BatchNorm project ``x``
    to ``out_channels`` and the new spatial size. Because the block only has to learn the residual
    ``F(x) = y - x``, a block that is not needed can learn ``F = 0``, and gradients reach the early
    layers through the shortcut unchanged.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        stride: stride of the first convolution (2 halves H and W).
    Shape:
        input (N, in_channels, H, W) -> output (N, out_channels, ceil(H / stride), ceil(W / stride)).
    Example:
        >>> block = ResidualBlock(16, 32, stride=2)
        >>> block(np.zeros((4, 16, 8, 8), np.float32)).shape
        (4, 32, 4, 4)
    """

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        _check_positive("ResidualBlock", "in_channels", in_channels)
        _check_positive("ResidualBlock", "out_channels", out_channels)
        _check_positive("ResidualBlock", "stride", stride)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetSmall(nn.Module):
    """A small residual network for little images (see ``resnet_small``)."""

    def __init__(self, in_channels=1, num_classes=10, widths=(16, 32, 64)):
        super().__init__()
        _check_positive("resnet_small", "in_channels", in_channels)
        _check_positive("resnet_small", "num_classes", num_classes)
        widths = tuple(_check_positive("resnet_small", "widths", w) for w in widths)
        if not widths:
            raise ValueError("resnet_small: widths must name at least one stage")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, channels = [], widths[0]
        for i, width in enumerate(widths):
            blocks.append(ResidualBlock(channels, width, stride=1 if i == 0 else 2))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(self.pool(x).flatten(1))


def resnet_small(in_channels=1, num_classes=10, widths=(16, 32, 64)):
    """A small ResNet: a 3x3 conv stem, one ``ResidualBlock`` per entry of ``widths`` (the first
    keeps the resolution with an identity shortcut, the next ones halve it with a 1x1-conv
    shortcut), global average pooling and a linear classifier.

    Args:
        in_channels: image channels (1 for grey images).
        num_classes: number of classes.
        widths: output channels of the successive residual blocks.
    Shape:
        input (N, in_channels, H, W), any H, W >= 1 -> output (N, num_classes).
    Example:
        >>> model = resnet_small()
        >>> model(np.zeros((2, 1, 28, 28), np.float32)).shape
        (2, 10)
    """
    return ResNetSmall(in_channels, num_classes, widths)


# -- channel attention ---------------------------------------------------------------------------

class ChannelAttention(nn.Module):
    """Re-weights the channels of a feature map by a softmax over learned per-channel scores.

    For each sample: ``s = W2 relu(W1 gap(x) + b1) + b2`` (gap: global average pooling, one number
    per channel), ``a = softmax(s / temperature)`` over the C channels, ``y = x * (C * a)``. The
    weights ``a`` sum to 1, so channels compete: the ones the network finds important get more
    than their share ``1 / C``, the least important ones are switched (nearly) off. Multiplying by
    ``C`` keeps the average channel gain at 1, so the block starts close to the identity.

    The weights of the last forward pass are kept for plotting: ``last_weights`` (read-only) gives
    a NumPy copy of them, (N, C). On the cuda device they stay on the GPU until read (copying them to the
    host in every forward pass would make the host wait for the device there).

    Args:
        channels: number of channels C.
        reduction: hidden width of the scoring MLP is ``max(1, C // reduction)``.
        temperature: softmax temperature; smaller values give sharper (more on/off) weights.
    Shape:
        input (N, C, H, W) -> output (N, C, H, W).
    Example:
        >>> att = ChannelAttention(8)
        >>> y = att(np.random.rand(2, 8, 5, 5).astype(np.float32))
        >>> att.last_weights.shape, att.last_weights.sum(1)
        ((2, 8), array([1., 1.], dtype=float32))
    """

    def __init__(self, channels, reduction=4, temperature=1.0):
        super().__init__()
        self.channels = _check_positive("ChannelAttention", "channels", channels)
        reduction = _check_positive("ChannelAttention", "reduction", reduction)
        if not temperature > 0:
            raise ValueError(f"ChannelAttention: temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self._last_weights = None

    @property
    def last_weights(self):
        """The softmax weights of the last forward pass, a NumPy array (N, C) (None before one)."""
        return None if self._last_weights is None else np.array(self._last_weights.numpy(), copy=True)

    def forward(self, x):
        n, c = x.shape[0], x.shape[1]
        if c != self.channels:
            raise ValueError(f"ChannelAttention: input has {c} channels but the block was built for "
                             f"{self.channels} (input shape {tuple(x.shape)})")
        squeezed = F.adaptive_avg_pool2d(x, 1).reshape(n, c)
        scores = self.fc2(F.relu(self.fc1(squeezed)))
        weights = F.softmax(scores / self.temperature, dim=1)
        self._last_weights = weights.detach()
        return x * (weights * float(c)).reshape(n, c, 1, 1)

    def extra_repr(self):
        return f"{self.channels}, temperature={self.temperature}"


class AttentionCNN(nn.Module):
    """A two-stage CNN with a ``ChannelAttention`` after each convolution (see ``attention_cnn``)."""

    def __init__(self, in_channels=1, num_classes=10, channels=(16, 32), reduction=4, temperature=1.0):
        super().__init__()
        _check_positive("attention_cnn", "in_channels", in_channels)
        _check_positive("attention_cnn", "num_classes", num_classes)
        c1, c2 = (_check_positive("attention_cnn", "channels", c) for c in channels)
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.att1 = ChannelAttention(c1, reduction, temperature)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c2)
        self.att2 = ChannelAttention(c2, reduction, temperature)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c2, num_classes)

    def forward(self, x):
        x = self.pool(self.att1(F.relu(self.bn1(self.conv1(x)))))
        x = self.att2(F.relu(self.bn2(self.conv2(x))))
        return self.fc(self.gap(x).flatten(1))

    @property
    def attention_weights(self):
        """The channel weights of the last forward pass: ``[(N, c1), (N, c2)]`` NumPy arrays."""
        return [self.att1.last_weights, self.att2.last_weights]


def attention_cnn(in_channels=1, num_classes=10, channels=(16, 32), reduction=4, temperature=1.0):
    """A small CNN with channel attention: conv 3x3 -> BatchNorm -> ReLU -> ``ChannelAttention``
    -> max pool 2 -> conv 3x3 -> BatchNorm -> ReLU -> ``ChannelAttention`` -> global average
    pooling -> linear.

    ``model.attention_weights`` holds the two blocks' softmax weights of the last forward pass.

    Args:
        in_channels: image channels. num_classes: number of classes.
        channels: output channels of the two convolutions.
        reduction, temperature: passed to both ``ChannelAttention`` blocks.
    Shape:
        input (N, in_channels, H, W), H, W >= 2 -> output (N, num_classes).
    Example:
        >>> model = attention_cnn()
        >>> logits = model(np.zeros((3, 1, 8, 8), np.float32))
        >>> [w.shape for w in model.attention_weights]
        [(3, 16), (3, 32)]
    """
    return AttentionCNN(in_channels, num_classes, channels, reduction, temperature)


# -- U-Net ---------------------------------------------------------------------------------------

class DoubleConv(nn.Module):
    """(conv 3x3 -> BatchNorm -> ReLU) twice; keeps H and W. Shape: (N, C_in, H, W) -> (N, C_out, H, W)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


UPSAMPLING_MODES = ("nearest", "bilinear", "unpool")


class TinyUNet(nn.Module):
    """A two-level U-Net (see ``tiny_unet``)."""

    def __init__(self, in_channels=1, num_classes=3, base=8, upsampling="nearest"):
        super().__init__()
        _check_positive("tiny_unet", "in_channels", in_channels)
        self.num_classes = _check_positive("tiny_unet", "num_classes", num_classes)
        base = _check_positive("tiny_unet", "base", base)
        if upsampling not in UPSAMPLING_MODES:
            raise ValueError(f"tiny_unet: upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")
        self.upsampling = upsampling
        b1, b2, b3 = base, 2 * base, 4 * base
        self.enc1 = DoubleConv(in_channels, b1)                  # H
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.enc2 = DoubleConv(b1, b2)                           # H / 2
        self.bottleneck = DoubleConv(b2, b3)                     # H / 4
        # each decoder stage: upsample x2, reduce channels (1x1 conv), concatenate the skip, DoubleConv
        self.reduce2 = nn.Conv2d(b3, b2, 1)
        self.dec2 = DoubleConv(2 * b2, b2)                       # H / 2
        self.reduce1 = nn.Conv2d(b2, b1, 1)
        self.dec1 = DoubleConv(2 * b1, b1)                       # H
        self.head = nn.Conv2d(b1, num_classes, 1)
        if upsampling == "unpool":
            self.unpool = nn.MaxUnpool2d(2)
        else:
            self.up = nn.Upsample(scale_factor=2, mode=upsampling)

    def _up(self, x, reduce, indices, size):
        if self.upsampling == "unpool":
            # reduce first so the channels match the pooled map the indices came from (SegNet)
            return self.unpool(reduce(x), indices, output_size=size)
        return reduce(self.up(x))

    def forward(self, x):
        h, w = x.shape[2], x.shape[3]
        if h % 4 or w % 4:
            raise ValueError(f"tiny_unet: input height and width must be multiples of 4 (two 2x2 poolings), "
                             f"got input shape {tuple(x.shape)}")
        s1 = self.enc1(x)
        p1, i1 = self.pool(s1)
        s2 = self.enc2(p1)
        p2, i2 = self.pool(s2)
        z = self.bottleneck(p2)
        d2 = self.dec2(cat([self._up(z, self.reduce2, i2, s2.shape), s2], dim=1))
        d1 = self.dec1(cat([self._up(d2, self.reduce1, i1, s1.shape), s1], dim=1))
        return self.head(d1)


def tiny_unet(in_channels=1, num_classes=3, base=8, upsampling="nearest"):
    """A small U-Net for semantic segmentation: per-pixel class logits.

    Encoder: ``DoubleConv`` (base channels) -> max pool 2 -> ``DoubleConv`` (2 base) -> max pool 2
    -> bottleneck ``DoubleConv`` (4 base). Decoder, twice: upsample x2, 1x1 conv halving the
    channels, ``fastnn.cat`` with the encoder map of the same resolution (the skip connection that
    brings back the fine detail lost by pooling), ``DoubleConv``. A final 1x1 convolution gives
    ``num_classes`` logits per pixel; train it with ``nn.CrossEntropyLoss`` against an (N, H, W)
    map of class indices.

    Args:
        in_channels: image channels. num_classes: classes per pixel (background included).
        base: channels of the first level (the levels have base, 2 base, 4 base).
        upsampling: ``"nearest"`` or ``"bilinear"`` (``nn.Upsample``), or ``"unpool"``
            (``nn.MaxUnpool2d`` with the encoder's pooling indices, as in SegNet).
    Shape:
        input (N, in_channels, H, W) with H, W multiples of 4 -> output (N, num_classes, H, W).
    Example:
        >>> unet = tiny_unet(num_classes=3)
        >>> unet(np.zeros((2, 1, 32, 32), np.float32)).shape
        (2, 3, 32, 32)
    """
    return TinyUNet(in_channels, num_classes, base, upsampling)


__all__ = [
    "AttentionCNN",
    "ChannelAttention",
    "DoubleConv",
    "ResNetSmall",
    "ResidualBlock",
    "TinyUNet",
    "attention_cnn",
    "resnet_small",
    "tiny_unet",
]
