"""Launch accounting of whole training steps (used by the tests and ``fastnn bench --device cuda``)."""
from __future__ import annotations

import numpy as np

from ._core import count_launches


def training_step(model_name: str, batch: int = 64, image_size: int = 28):
    """A function running one SGD (momentum 0.9) training step of a zoo model on the cuda device:
    forward, cross-entropy, backward and the update, as ``fastnn bench`` runs it, on a fixed batch
    of standard-normal images (the launches do not depend on the values). Also used by the tools
    in ``bench/`` that time a step."""
    import fastnn
    from fastnn import models, nn, optim

    model = models.get_model(model_name, in_channels=1, num_classes=10, image_size=image_size).to("cuda")
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    images = np.random.default_rng(0).standard_normal((batch, 1, image_size, image_size)).astype(np.float32)
    x = fastnn.tensor(images, device="cuda")
    y = fastnn.tensor(np.zeros(batch, np.int64), device="cuda")

    def step():
        model.train()
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def training_step_launches(model_name: str, batch: int = 64, image_size: int = 28, dry_run: bool = True) -> int:
    """Kernel launches of one training step (``training_step``) of a zoo model on the cuda device.

    With ``dry_run`` the kernels are counted but not run (the count does not depend on the values),
    so large batches can be counted under the simulator.
    """
    step = training_step(model_name, batch, image_size)
    with count_launches(dry_run=True):
        step()   # the first step also allocates the momentum buffers
    with count_launches(dry_run=dry_run) as launches:
        step()
    return launches()
