"""tfconvnet trained side by side on the cpu and on cuda from the same weights, on the same Fashion-MNIST
batches with the same dropout masks (seeded per step), for ``--steps`` steps of SGD (lr 0.05,
momentum 0.9, batch 64, as ``fastnn train``): the relative difference of each parameter's gradient
and value at steps 0, 1, 10 and 100, the mean losses, then both models' test loss and accuracy, and
the cuda-trained weights evaluated on the cpu.

    python bench/cuda_vs_cpu_training.py [--steps 938] [--data-dir DIR]

A kernel that computes something else than the reference shows at step 0 (gradients differ by more
than float32 rounding, ~1e-6); rounding alone makes the two runs drift apart over hundreds of steps
(training is chaotic), after which only the accuracies are comparable. Needs a real NVIDIA GPU.
"""
import argparse
import time

import numpy as np

import fastnn
from fastnn import data, models, nn, optim
from fastnn.train import evaluate

REPORTED_STEPS = (0, 1, 10, 100)


def _model():
    return models.get_model("tfconvnet", in_channels=1, num_classes=10, image_size=28)


def _gradient_step(model, optimizer, loss_fn, x, y, seed, device):
    fastnn.manual_seed(seed)                 # the dropout masks of this step, the same on both
    if device == "cuda":
        x, y = x.to("cuda"), y.to("cuda")
    loss = loss_fn(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    return loss


def _relative(a, b):
    return float(np.abs(a - b).max() / (np.abs(a).max() + 1e-30))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=938, help="steps trained side by side (938: one epoch)")
    parser.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST IDX files")
    args = parser.parse_args()
    fastnn.manual_seed(0)
    train_set, test_set = data.fashion_mnist(args.data_dir, train=True), data.fashion_mnist(args.data_dir, train=False)
    cpu, gpu = _model(), _model()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    optimizers = {m: optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (cpu, gpu)}
    loss_fn = nn.CrossEntropyLoss()
    names = [name for name, _ in cpu.named_parameters()]
    losses, start = [], time.time()
    for step, (x, y) in enumerate(data.DataLoader(train_set, batch_size=64, shuffle=True, seed=0)):
        if step == args.steps:
            break
        loss_cpu = _gradient_step(cpu, optimizers[cpu], loss_fn, x, y, 1000 + step, "cpu")
        loss_gpu = _gradient_step(gpu, optimizers[gpu], loss_fn, x, y, 1000 + step, "cuda")
        if step in REPORTED_STEPS:
            worst = [f"{n}: grad {_relative(p.grad.numpy(), q.grad.to('cpu').numpy()):.1e} "
                     f"w {_relative(p.numpy(), q.to('cpu').numpy()):.1e}"
                     for n, p, q in zip(names, cpu.parameters(), gpu.parameters())]
            print(f"step {step}: loss cpu {loss_cpu.item():.6f} cuda {loss_gpu.item():.6f} | " + "; ".join(worst),
                  flush=True)
        optimizers[cpu].step()
        optimizers[gpu].step()
        losses.append((loss_cpu.item(), loss_gpu.item()))
    on_cpu, on_gpu = np.array(losses).T
    for low, high in ((0, 50), (50, 200), (200, len(losses))):
        if low < high <= len(losses):
            print(f"steps {low}-{high}: mean loss cpu {on_cpu[low:high].mean():.4f} cuda {on_gpu[low:high].mean():.4f}, "
                  f"mean |difference| {np.abs(on_cpu[low:high] - on_gpu[low:high]).mean():.2e}")
    test_loader = data.DataLoader(test_set, batch_size=256)
    print("test (loss, accuracy): cpu", evaluate(cpu, loss_fn, test_loader), "cuda",
          evaluate(gpu, loss_fn, test_loader, device="cuda"))
    back = _model()
    back.load_state_dict({k: (v.to("cpu").numpy() if hasattr(v, "numpy") else v) for k, v in gpu.state_dict().items()})
    print(f"the cuda-trained weights evaluated on the cpu: {evaluate(back, loss_fn, test_loader)} "
          f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
