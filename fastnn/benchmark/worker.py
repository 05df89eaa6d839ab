"""One benchmark measurement in a fresh process; prints one JSON line.

    python -m fastnn.benchmark.worker --engine {fastnn,reference,torch} --model M --batch B [--device cuda]

With ``--device cuda`` the model and the batch live on the GPU (fastnn's cuda backend; PyTorch CUDA).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

INPUT_SHAPE = (1, 28, 28)


def _torch_model(name):
    import torch.nn as tnn

    def tfconv(bn):
        def block(cin, cout):
            layers = [tnn.Conv2d(cin, cout, 5, padding=2)]
            if bn:
                layers.append(tnn.BatchNorm2d(cout))
            return layers + [tnn.ReLU(), tnn.MaxPool2d(2)]
        return tnn.Sequential(*block(1, 32), *block(32, 64), tnn.Flatten(), tnn.Linear(64 * 7 * 7, 1024),
                              tnn.ReLU(), tnn.Dropout(0.4), tnn.Linear(1024, 10))

    if name == "mlp":
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 256), tnn.ReLU(), tnn.Linear(256, 128), tnn.ReLU(),
                              tnn.Linear(128, 100), tnn.ReLU(), tnn.Linear(100, 10))
    if name == "lenet5":
        return tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5),
                              tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(),
                              tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    if name in ("tfconvnet", "bnconvnet"):
        return tfconv(name == "bnconvnet")
    raise ValueError(f"unknown model {name!r}")


def _engine(engine, model_name, threads, device="cpu"):
    """Returns (train_step(x, y) -> loss float, infer(x), to_input(np array))."""
    if engine == "torch":
        # importing fastnn.benchmark ran fastnn's init_environment; PyTorch (its own libgomp reads
        # the environment when torch loads) must run with its own defaults
        from fastnn.threads import ENVIRONMENT_DEFAULTS
        for name in ENVIRONMENT_DEFAULTS:
            if name not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ.pop(name, None)
        import torch
        torch.set_num_threads(threads)
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch: torch.cuda is not available (a CPU-only PyTorch build or no GPU)")
        model = _torch_model(model_name).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(x, y):
            model.train()
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        def infer(x):
            model.eval()
            with torch.no_grad():
                return model(x)
        return step, infer, (lambda a: torch.from_numpy(a).to(device)), (lambda loss: float(loss.item()))

    import fastnn
    from fastnn import models, nn, optim
    fastnn.set_num_threads(threads)
    if engine == "reference":
        fastnn.use_backend("reference")
    model = models.get_model(model_name).to(device)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        model.train()
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    def infer(x):
        model.eval()
        with fastnn.no_grad():
            return model(x)
    if device == "cuda":
        return step, infer, (lambda a: fastnn.tensor(a, device="cuda")), (lambda loss: loss.item())
    return step, infer, (lambda a: fastnn.tensor(a) if a.dtype != np.int64 else a), (lambda loss: loss.item())


def measure(engine, model_name, batch, threads, min_time, latency, device="cpu"):
    t_start = time.perf_counter()
    step, infer, to_input, item = _engine(engine, model_name, threads, device)
    rng = np.random.default_rng(0)
    x_np = rng.random((batch,) + INPUT_SHAPE, dtype=np.float32)
    y_np = rng.integers(0, 10, batch).astype(np.int64)
    x, y = to_input(x_np), to_input(y_np)
    t0 = time.perf_counter()
    item(step(x, y))
    first_step = time.perf_counter() - t0
    setup = t0 - t_start
    for _ in range(2):  # warm-up
        item(step(x, y))
    times = []
    t_end = time.perf_counter() + min_time
    while time.perf_counter() < t_end or len(times) < 5:
        t0 = time.perf_counter()
        item(step(x, y))
        times.append(time.perf_counter() - t0)
    result = {
        "engine": engine, "model": model_name, "batch": batch, "threads": threads,
        "images_per_s": batch / float(np.median(times)), "step_ms_median": 1e3 * float(np.median(times)),
        "steps": len(times), "first_step_s": first_step, "setup_s": setup, "device": device,
    }
    if device == "cuda" and engine == "fastnn":
        from fastnn.backends.cuda import memory_stats, training_step_launches
        # the caching allocator over the whole run: new blocks against requests served from the cache
        stats = memory_stats()
        result["cuda_blocks_allocated"], result["cuda_blocks_reused"] = stats["allocated"], stats["reused"]
        result["launches_per_step"] = training_step_launches(model_name, batch)
        from fastnn.backends.cuda import autotune
        # choices timed in the first step (GEMM tilings, grad_x paths): its time is in first_step_s
        result["autotune"], result["autotuned_choices"] = autotune.ENABLED, len(autotune.chosen())
    if latency:
        x1 = to_input(x_np[:1])
        for _ in range(5):
            infer(x1)
        lat = []
        t_end = time.perf_counter() + min_time / 2
        while time.perf_counter() < t_end or len(lat) < 20:
            t0 = time.perf_counter()
            infer(x1)
            lat.append(time.perf_counter() - t0)
        result["latency_ms_batch1"] = 1e3 * float(np.median(lat))
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnn.benchmark.worker")
    parser.add_argument("--engine", choices=["fastnn", "reference", "torch"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args(argv)
    threads = args.threads or int(os.environ.get("FASTNN_BENCH_THREADS", "0")) or None
    if threads is None:
        from fastnn.threads import physical_cores
        threads = physical_cores()
    print(json.dumps(measure(args.engine, args.model, args.batch, threads, args.min_time, args.latency,
                             args.device)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
