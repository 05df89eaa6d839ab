"""fastnn.course_models: shapes, the residual re-injection, the channel-attention softmax, the U-Net's
skip connections and upsampling modes, identical outputs and gradients to the same networks written
in PyTorch (same attribute names, PyTorch's weights loaded), and that they learn."""
import numpy as np
import pytest
from helpers import assert_close

import fastnn
import fastnn.functional as F
from fastnn import nn, optim
from fastnn.course_models import (
    AttentionCNN,
    ChannelAttention,
    ResidualBlock,
    attention_cnn,
    resnet_small,
    tiny_unet,
)


def _images(n, c, size, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, size, size)).astype(np.float32)


# -- shapes and structure -------------------------------------------------------------------------

@pytest.mark.parametrize("size", [8, 28])
def test_resnet_small_shapes_and_shortcuts(size):
    model = resnet_small(in_channels=1, num_classes=7)
    assert model(_images(3, 1, size)).shape == (3, 7)
    blocks = list(model.blocks.children())
    assert isinstance(blocks[0].shortcut, nn.Identity)               # 16 -> 16, stride 1
    for block in blocks[1:]:                                          # 16 -> 32 -> 64, stride 2
        conv = block.shortcut[0]
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (2, 2)
    assert resnet_small(in_channels=3, widths=(8, 8))(_images(2, 3, 8)).shape == (2, 10)


def test_residual_block_reinjects_its_input():
    """With the residual branch switched off (conv2 = 0, BN beta = 0), the block is y = relu(x)."""
    block = ResidualBlock(4, 4)
    block.conv2.weight.data[...] = 0
    x = _images(2, 4, 5)
    assert_close(block(x).numpy(), np.maximum(x, 0))
    block.eval()
    assert_close(block(x).numpy(), np.maximum(x, 0))
    strided = ResidualBlock(4, 6, stride=2)
    assert strided(x).shape == (2, 6, 3, 3)


def test_channel_attention_softmax_reweights_channels():
    att = ChannelAttention(6, reduction=2)
    x = np.abs(_images(3, 6, 4)) + 0.1
    y = att(x).numpy()
    w = att.last_weights
    assert w.shape == (3, 6)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    # the same computation by hand: gap -> fc1 -> relu -> fc2 -> softmax over channels -> x * C * w
    gap = x.mean(axis=(2, 3))
    hidden = np.maximum(gap @ att.fc1.weight.numpy().T + att.fc1.bias.numpy(), 0)
    scores = hidden @ att.fc2.weight.numpy().T + att.fc2.bias.numpy()
    e = np.exp(scores - scores.max(1, keepdims=True))
    expected_w = e / e.sum(1, keepdims=True)
    assert_close(w, expected_w)
    assert_close(y, x * 6 * expected_w[:, :, None, None])


def test_channel_attention_switches_off_the_least_important_channel():
    att = ChannelAttention(4)
    att.fc2.weight.data[...] = 0
    att.fc2.bias.data[...] = np.array([-30.0, 0.0, 0.0, 0.0], np.float32)
    x = np.ones((2, 4, 3, 3), np.float32)
    y = att(x).numpy()
    assert np.all(att.last_weights[:, 0] < 1e-12)
    np.testing.assert_allclose(att.last_weights[:, 1:], 1 / 3, rtol=1e-5)
    assert np.abs(y[:, 0]).max() < 1e-10                              # channel 0 is off
    np.testing.assert_allclose(y[:, 1:], 4 / 3, rtol=1e-5)            # the others share its weight
    with pytest.raises(ValueError, match="3 channels but the block was built for 4"):
        att(np.ones((1, 3, 2, 2), np.float32))


def test_attention_cnn_exposes_weights():
    model = attention_cnn(in_channels=1, num_classes=5, channels=(8, 12))
    assert isinstance(model, AttentionCNN)
    assert model(_images(4, 1, 8)).shape == (4, 5)
    w1, w2 = model.attention_weights
    assert w1.shape == (4, 8) and w2.shape == (4, 12)
    np.testing.assert_allclose(w2.sum(1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("upsampling", ["nearest", "bilinear", "unpool"])
@pytest.mark.parametrize("size", [(32, 32), (16, 24)])
def test_tiny_unet_output_is_per_pixel_logits(upsampling, size):
    model = tiny_unet(in_channels=2, num_classes=4, base=4, upsampling=upsampling)
    x = np.random.default_rng(0).random((2, 2) + size, dtype=np.float32)
    out = model(x)
    assert out.shape == (2, 4) + size
    out.sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing}"


def test_tiny_unet_skip_connections_concatenate_encoder_maps():
    model = tiny_unet(base=4)
    assert model.dec1.conv1.in_channels == 2 * 4 and model.dec2.conv1.in_channels == 2 * 8
    with pytest.raises(ValueError, match="multiples of 4"):
        model(np.zeros((1, 1, 30, 32), np.float32))
    with pytest.raises(ValueError, match="upsampling must be one of"):
        tiny_unet(upsampling="transpose")


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        resnet_small(num_classes=0)
    with pytest.raises(ValueError, match="temperature"):
        ChannelAttention(4, temperature=0)
    with pytest.raises(ValueError, match="base"):
        tiny_unet(base=1.5)


# -- against PyTorch ----------------------------------------------------------------------------

def _torch_models():
    torch = pytest.importorskip("torch")
    tnn, tF = torch.nn, torch.nn.functional

    class TResidualBlock(tnn.Module):
        def __init__(self, cin, cout, stride=1):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.shortcut = (tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))
                             if stride != 1 or cin != cout else tnn.Identity())

        def forward(self, x):
            out = tF.relu(self.bn1(self.conv1(x)))
            return tF.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class TResNetSmall(tnn.Module):
        def __init__(self, cin=1, classes=10, widths=(16, 32, 64)):
            super().__init__()
            self.stem = tnn.Sequential(tnn.Conv2d(cin, widths[0], 3, padding=1, bias=False),
                                       tnn.BatchNorm2d(widths[0]), tnn.ReLU())
            blocks, c = [], widths[0]
            for i, w in enumerate(widths):
                blocks.append(TResidualBlock(c, w, 1 if i == 0 else 2))
                c = w
            self.blocks = tnn.Sequential(*blocks)
            self.pool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(c, classes)

        def forward(self, x):
            return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))

    class TChannelAttention(tnn.Module):
        def __init__(self, c, reduction=4):
            super().__init__()
            self.fc1 = tnn.Linear(c, max(1, c // reduction))
            self.fc2 = tnn.Linear(max(1, c // reduction), c)

        def forward(self, x):
            n, c = x.shape[:2]
            w = torch.softmax(self.fc2(tF.relu(self.fc1(x.mean((2, 3))))), dim=1)
            return x * (w * c).reshape(n, c, 1, 1)

    class TAttentionCNN(tnn.Module):
        def __init__(self, cin=1, classes=10, channels=(16, 32)):
            super().__init__()
            c1, c2 = channels
            self.conv1, self.bn1 = tnn.Conv2d(cin, c1, 3, padding=1), tnn.BatchNorm2d(c1)
            self.att1 = TChannelAttention(c1)
            self.pool = tnn.MaxPool2d(2)
            self.conv2, self.bn2 = tnn.Conv2d(c1, c2, 3, padding=1), tnn.BatchNorm2d(c2)
            self.att2 = TChannelAttention(c2)
            self.gap = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(c2, classes)

        def forward(self, x):
            x = self.pool(self.att1(tF.relu(self.bn1(self.conv1(x)))))
            x = self.att2(tF.relu(self.bn2(self.conv2(x))))
            return self.fc(self.gap(x).flatten(1))

    class TDoubleConv(tnn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv1, self.bn1 = tnn.Conv2d(cin, cout, 3, padding=1, bias=False), tnn.BatchNorm2d(cout)
            self.conv2, self.bn2 = tnn.Conv2d(cout, cout, 3, padding=1, bias=False), tnn.BatchNorm2d(cout)

        def forward(self, x):
            return tF.relu(self.bn2(self.conv2(tF.relu(self.bn1(self.conv1(x))))))

    class TTinyUNet(tnn.Module):
        def __init__(self, cin=1, classes=3, base=8, upsampling="nearest"):
            super().__init__()
            b1, b2, b3 = base, 2 * base, 4 * base
            self.upsampling = upsampling
            self.enc1 = TDoubleConv(cin, b1)
            self.pool = tnn.MaxPool2d(2, return_indices=True)
            self.enc2 = TDoubleConv(b1, b2)
            self.bottleneck = TDoubleConv(b2, b3)
            self.reduce2, self.dec2 = tnn.Conv2d(b3, b2, 1), TDoubleConv(2 * b2, b2)
            self.reduce1, self.dec1 = tnn.Conv2d(b2, b1, 1), TDoubleConv(2 * b1, b1)
            self.head = tnn.Conv2d(b1, classes, 1)
            if upsampling == "unpool":
                self.unpool = tnn.MaxUnpool2d(2)
            else:
                self.up = tnn.Upsample(scale_factor=2, mode=upsampling)

        def _up(self, x, reduce, idx, size):
            if self.upsampling == "unpool":
                return self.unpool(reduce(x), idx, output_size=size)
            return reduce(self.up(x))

        def forward(self, x):
            s1 = self.enc1(x)
            p1, i1 = self.pool(s1)
            s2 = self.enc2(p1)
            p2, i2 = self.pool(s2)
            z = self.bottleneck(p2)
            d2 = self.dec2(torch.cat([self._up(z, self.reduce2, i2, s2.shape), s2], 1))
            d1 = self.dec1(torch.cat([self._up(d2, self.reduce1, i1, s1.shape), s1], 1))
            return self.head(d1)

    return torch, {"resnet_small": TResNetSmall, "attention_cnn": TAttentionCNN, "tiny_unet": TTinyUNet}


CASES = [("resnet_small", {}, (3, 1, 12, 12)),
         ("attention_cnn", {}, (3, 1, 8, 8)),
         ("tiny_unet", {"upsampling": "nearest"}, (2, 1, 16, 16)),
         ("tiny_unet", {"upsampling": "bilinear"}, (2, 1, 16, 16)),
         ("tiny_unet", {"upsampling": "unpool"}, (2, 1, 16, 16))]
FASTNN = {"resnet_small": resnet_small, "attention_cnn": attention_cnn, "tiny_unet": tiny_unet}


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=[c[0] + "-" + str(c[1].get("upsampling", "")) for c in CASES])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_matches_pytorch(name, kwargs, shape, training):
    torch, torch_models = _torch_models()
    torch.manual_seed(0)
    reference = torch_models[name](**kwargs)
    # perturb the BN statistics and affine parameters so that eval mode is not the identity
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    ours = FASTNN[name](**kwargs)
    torch_state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    assert list(ours.state_dict()) == list(torch_state)
    ours.load_state_dict(torch_state)
    reference.train(training)
    ours.train(training)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    xf = fastnn.tensor(x, requires_grad=True)
    expected, actual = reference(xt), ours(xf)
    assert_close(actual.numpy(), expected.detach().numpy(), rtol=1e-4, atol=1e-4, err_msg=f"{name} forward")
    g = np.random.default_rng(2).standard_normal(tuple(expected.shape)).astype(np.float32)
    expected.backward(torch.tensor(g))
    actual.backward(fastnn.tensor(g))
    assert_close(xf.grad.numpy(), xt.grad.numpy(), rtol=1e-3, atol=1e-4, err_msg=f"{name} input gradient")
    torch_params = dict(reference.named_parameters())
    for pname, p in ours.named_parameters():
        assert_close(p.grad.numpy(), torch_params[pname].grad.numpy(), rtol=1e-3, atol=1e-4,
                     err_msg=f"{name} gradient of {pname}")
    if training:  # running statistics updated the same way
        torch_state = reference.state_dict()
        for key, value in ours.state_dict().items():
            if "running" in key:
                assert_close(value, torch_state[key].numpy(), rtol=1e-4, atol=1e-5, err_msg=key)


# -- they learn ---------------------------------------------------------------------------------

def _digits(n_train=600, n_test=300):
    x, y = fastnn.data.digits().arrays
    order = np.random.default_rng(0).permutation(len(y))
    return x[order[:n_train]], y[order[:n_train]], x[order[-n_test:]], y[order[-n_test:]]


def _train(model, x, y, epochs, lr=3e-3, batch=32):
    opt = optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(y))
        for s in range(0, len(y), batch):
            idx = order[s:s + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


@pytest.mark.parametrize("factory", [resnet_small, attention_cnn], ids=["resnet_small", "attention_cnn"])
def test_classifiers_learn_the_digits(factory):
    fastnn.manual_seed(0)
    x, y, xt, yt = _digits()
    model = factory(in_channels=1, num_classes=10)
    _train(model, x, y, epochs=8)
    with fastnn.no_grad():
        acc = float(np.mean(model(xt).numpy().argmax(1) == yt))
    assert acc >= 0.85, f"{factory.__name__}: test accuracy {acc:.3f} after 8 epochs on 600 digits"
