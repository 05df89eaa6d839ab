"""A run that launches every kernel of the cuda backend: the training steps of the zoo (every
optimizer) and the ops that are not on their path. ``test_kernels_compile_for_gpu.py`` records the
argument types of its launches under the simulator; ``check_fast_launch.py`` checks the kernel
parameters of its launches with Numba's real classes (``fastnn.backends.cuda.host_only``)."""
import numpy as np

import fastnn
import fastnn.backends.cuda as cu
import fastnn.functional as F
from fastnn import course_models, models, nn, optim


def train_step(model, x, target, optimizer):
    loss = nn.CrossEntropyLoss()(model(x), target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def exercise_every_op():
    """Training steps of the zoo (every optimizer) and the ops that are not on their path."""
    fastnn.manual_seed(0)
    rng = np.random.default_rng(0)
    image = fastnn.tensor(rng.standard_normal((2, 1, 28, 28)).astype(np.float32), device="cuda")
    labels = fastnn.tensor(np.array([1, 3]), device="cuda")
    optimizers = [lambda p: optim.SGD(p, lr=0.1), lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
                  lambda p: optim.Adam(p, lr=1e-3), lambda p: optim.RMSprop(p, lr=1e-3, momentum=0.9, centered=True)]
    for name in models.MODELS:
        for make_optimizer in optimizers:
            model = models.get_model(name).to("cuda")
            train_step(model, image, labels, make_optimizer(model.parameters()))
    for upsampling in ("nearest", "bilinear", "unpool"):
        unet = course_models.tiny_unet(upsampling=upsampling).to("cuda")
        masks = fastnn.tensor(rng.integers(0, 3, (2, 8, 8)), device="cuda")
        train_step(unet, image[:, :, :8, :8], masks, optim.Adam(unet.parameters()))

    for dtype in (np.float32, np.float64):
        x = fastnn.tensor(rng.standard_normal((2, 4, 6, 6)).astype(dtype), requires_grad=True, device="cuda")
        t = fastnn.tensor(rng.random((2, 4, 6, 6)).astype(dtype), requires_grad=True, device="cuda")
        outs = [F.l1_loss(x, t), F.mse_loss(x, t, reduction="sum"), F.l1_loss(x, t, reduction="none").sum(),
                F.binary_cross_entropy_with_logits(x, t, pos_weight=np.ones((6,), dtype)),
                F.nll_loss(F.log_softmax(x, dim=1), fastnn.tensor(rng.integers(0, 4, (2, 6, 6)), device="cuda")),
                F.softmax(x, dim=1).sum(), F.layer_norm(x, (6, 6)).sum(), F.group_norm(x, 2).sum(),
                F.instance_norm(x).sum(), F.avg_pool2d(x, 2).sum(), F.adaptive_avg_pool2d(x, 1).sum(),
                F.interpolate(x, scale_factor=2, mode="bilinear").sum(), F.dropout(x, 0.5).sum(),
                (x * t + x / (t + 1) - t.exp() + x.relu().sigmoid().tanh()).mean(), (x.reshape(8, 36) @ t.reshape(36, 8)).sum()]
        # both grad_x paths: the windows of grad_y (8 input channels fill the simulator's 8-row tiles), col2im
        x8 = fastnn.tensor(rng.standard_normal((2, 8, 5, 5)).astype(dtype), requires_grad=True, device="cuda")
        weight = fastnn.tensor(rng.standard_normal((4, 8, 3, 3)).astype(dtype), requires_grad=True, device="cuda")
        outs += [F.conv2d(x8, weight, padding=1).sum(), F.conv2d(x8, weight, stride=2).sum()]
        pooled, indices = F.max_pool2d(x, 2, return_indices=True)
        outs.append(F.max_unpool2d(pooled, indices, 2).sum())
        sum(outs).backward()
        norm = nn.InstanceNorm2d(4, affine=True, track_running_stats=True).to("cuda")
        norm(x)

    # backend entry points the public ops reach only in corner cases
    param, grad = cu.to_device(np.ones(5, np.float32)), cu.to_device(np.ones(5, np.float32))
    cu.sgd_step(param, grad, None, 0.1, 0.9, 0.0, 0.0, False)        # a momentum buffer started late
    cu.count_correct(cu.to_device(np.ones((2, 3), np.float32)), cu.to_device(np.array([0, 2])),
                     cu.to_device(np.zeros(1, np.int64)))          # fit()'s accuracy, counted on the device
    for dtype in (np.float32, np.float64):     # the kernel contract's im2col (convolution reads windows in place)
        cu.im2col(cu.to_device(np.ones((1, 2, 4, 4), dtype)), (3, 3), (1, 1), (1, 1), (1, 1))
    cu.max_pool2d_backward(cu.to_device(np.ones((1, 1, 2, 2), np.float32)),   # indices from elsewhere: a scatter
                           cu.to_device(np.array([[[[0, 3], [9, 15]]]])), (1, 1, 4, 4))
    exercise_every_gemm()
    from fastnn.backends.cuda import autotune
    autotune.keep_gpu_busy(1)       # (what the autotuner queues before each timing, on a GPU)


def exercise_every_gemm():
    """The GEMM kernel of every tiling (``linear.TILINGS``; a model's shapes may take only some of
    them), transpose variant and B operand's kind the backend launches, in both dtypes."""
    from fastnn.backends.cuda import conv, linear
    for tiling in linear.TILINGS:
        for dtype in (np.float32, np.float64):
            a, b = cu.to_device(np.ones((1, 3, 3), dtype)), cu.to_device(np.ones((1, 3, 3), dtype))
            c = cu.empty((1, 3, 3), dtype)
            for ta, tb in ((0, 0), (0, 1), (1, 0)):
                linear.gemm(a, ta, 3, b, tb, 3, c, 3, 3, 3, 3, tiling=tiling)
            x = cu.to_device(np.ones((1, 1, 3, 3), dtype))
            windows = conv._windows(x.shape, 0, 1, (1, 1), (1, 1), 1, (3, 3), (1, 1), (0, 0))
            linear.gemm(a, 0, 3, x, 0, 0, c.reshape(1, 1, 9), 9, 1, 9, 1, windows=windows, tiling=tiling)
            row = cu.to_device(np.ones((1, 1, 9), dtype))
            linear.gemm(row, 0, 9, x, 1, 0, c.reshape(1, 1, 9)[:, :, :1], 1, 1, 1, 9, windows=windows, tiling=tiling)
