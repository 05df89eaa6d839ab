"""The ``fastnn bench`` driver: alternating fresh-process runs, medians, ratios, JSON and PNG."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from .peak import sgemm_peak_gflops

MODELS = ("mlp", "lenet5", "tfconvnet", "bnconvnet")


def _engines(include_torch, include_reference, device="cpu"):
    engines = ["fastnn"]
    if include_reference and device == "cpu":  # the NumPy reference runs on the CPU only
        engines.append("reference")
    if include_torch:
        try:
            import importlib.util
            if importlib.util.find_spec("torch") is not None and (device == "cpu" or _torch_cuda()):
                engines.append("torch")
        except ImportError:
            pass
    return engines


def _torch_cuda():
    """Whether PyTorch CUDA is usable (asked in a subprocess: importing torch here would load its runtime)."""
    proc = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                          capture_output=True, text=True, timeout=300)
    return proc.stdout.strip().endswith("True")


def _run_worker(engine, model, batch, threads, min_time, latency, device="cpu"):
    cmd = [sys.executable, "-m", "fastnn.benchmark.worker", "--engine", engine, "--model", model,
           "--batch", str(batch), "--threads", str(threads), "--min-time", str(min_time), "--device", device]
    if latency:
        cmd.append("--latency")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    if engine == "torch":   # the baseline runs with its own defaults, not the tuning fastnn applied here
        from ..threads import ENVIRONMENT_DEFAULTS
        for name, value in ENVIRONMENT_DEFAULTS.items():
            if name not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") and env.get(name) == value:
                del env[name]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(results, key):
    values = [r[key] for r in results if key in r]
    return float(np.median(values)) if values else None


def run(models=MODELS, batches=(64, 256), repeats=3, threads=None, min_time=2.0, include_torch=True,
        include_reference=True, reference_batches=(64,), log=print, device="cpu"):
    """Measure every (model, batch, engine); returns the report dict.

    ``device="cuda"``: fastnn's cuda backend against PyTorch CUDA (when torch.cuda is available);
    no reference engine, and the CPU sgemm peak is not measured (percentages are NaN).
    """
    from ..models import get_model
    from ..threads import physical_cores
    from .flops import training_flops_per_image

    threads = threads or physical_cores()
    if device == "cuda":
        from .. import device as _device
        _device.require_cuda("fastnn bench --device cuda")
    engines = _engines(include_torch, include_reference, device)
    log(f"fastnn bench: {threads} thread(s), engines {engines}, {repeats} alternating repetitions, device {device}")
    if device == "cuda":
        peak = float("nan")
    else:
        peak = sgemm_peak_gflops(threads)
        log(f"sgemm peak (SciPy OpenBLAS, {threads} threads): {peak:.1f} GFLOP/s")
    rows = []
    for model in models:
        flops = training_flops_per_image(get_model(model), (1, 28, 28))
        for batch in batches:
            runs = {e: [] for e in engines if e != "reference" or batch in reference_batches}
            for rep in range(repeats):
                for engine in runs:  # A B A B: engines alternate within each repetition
                    latency = batch == batches[0] and engine != "reference"
                    runs[engine].append(_run_worker(engine, model, batch, threads, min_time, latency, device))
            row = {"model": model, "batch": batch, "gflop_per_image": flops / 1e9}
            for engine, results in runs.items():
                ips = _median(results, "images_per_s")
                row[engine] = {
                    "images_per_s": ips, "all_images_per_s": [r["images_per_s"] for r in results],
                    "gflops": ips * flops / 1e9, "percent_of_peak": 100 * ips * flops / 1e9 / peak,
                    "first_step_s": _median(results, "first_step_s"),
                    "latency_ms_batch1": _median(results, "latency_ms_batch1"),
                    "peak_rss_mib": _median(results, "peak_rss_mib"),
                }
                if _median(results, "launches_per_step") is not None:
                    row[engine]["launches_per_step"] = _median(results, "launches_per_step")
            for other in ("torch", "reference"):
                if other in row:
                    row[f"ratio_vs_{other}"] = row["fastnn"]["images_per_s"] / row[other]["images_per_s"]
            rows.append(row)
            log(format_row(row))
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "threads": threads, "python": platform.python_version()},
        "sgemm_peak_gflops": peak, "repeats": repeats, "engines": engines, "results": rows, "device": device,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def format_row(row):
    f = row["fastnn"]
    parts = [f"{row['model']:>10} b{row['batch']:<4} fastnn {f['images_per_s']:9.0f} img/s "
             f"({f['gflops']:5.1f} GFLOP/s, {f['percent_of_peak']:4.1f}% peak)"]
    for other in ("torch", "reference"):
        if other in row:
            parts.append(f"{other} {row[other]['images_per_s']:9.0f} img/s  x{row[f'ratio_vs_{other}']:.2f}")
    return " | ".join(parts)


def markdown_table(report):
    lines = ["| model | batch | fastnn img/s | PyTorch img/s | vs PyTorch | reference img/s | vs reference | "
             "GFLOP/s | % sgemm peak | batch-1 latency ms (fastnn / torch) | first step s | peak RSS MiB (fastnn / torch) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(v, spec):
        return "" if v is None else format(v, spec)
    for row in report["results"]:
        f, t, r = row["fastnn"], row.get("torch", {}), row.get("reference", {})
        lines.append(
            f"| {row['model']} | {row['batch']} | {f['images_per_s']:.0f} | {fmt(t.get('images_per_s'), '.0f')} | "
            f"{fmt(row.get('ratio_vs_torch'), '.2f')} | {fmt(r.get('images_per_s'), '.0f')} | "
            f"{fmt(row.get('ratio_vs_reference'), '.1f')} | {f['gflops']:.1f} | {f['percent_of_peak']:.1f} | "
            f"{fmt(f.get('latency_ms_batch1'), '.3f')} / {fmt(t.get('latency_ms_batch1'), '.3f')} | "
            f"{fmt(f.get('first_step_s'), '.2f')} | {fmt(f.get('peak_rss_mib'), '.0f')} / {fmt(t.get('peak_rss_mib'), '.0f')} |")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    labels = [f"{r['model']}\nb{r['batch']}" for r in rows]
    engines = [e for e in ("fastnn", "torch", "reference") if any(e in r for r in rows)]
    width = 0.8 / len(engines)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4))
    for i, e in enumerate(engines):
        values = [r[e]["images_per_s"] if e in r else 0 for r in rows]
        ax.bar(np.arange(len(rows)) + i * width, values, width, label={"fastnn": "fastnn (cpu)", "torch": "PyTorch",
                                                                       "reference": "fastnn reference (NumPy)"}[e])
    ax.set_xticks(np.arange(len(rows)) + width * (len(engines) - 1) / 2)
    ax.set_xticklabels(labels)
    ax.set_ylabel("training images / s")
    ax.set_yscale("log")
    ax.set_title(f"fastnn bench, {report['machine']['threads']} threads "
                 f"(sgemm peak {report['sgemm_peak_gflops']:.0f} GFLOP/s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastnn bench", description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds timed per measurement")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--out", default="bench_results", help="folder for bench.json and bench.png")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: fastnn's cuda backend against PyTorch CUDA")
    args = parser.parse_args(argv)
    try:
        report = run(args.models, tuple(args.batches), args.repeats, args.threads, args.min_time,
                     not args.no_torch, not args.no_reference, device=args.device)
    except RuntimeError as exc:
        if args.device != "cuda" or "not available" not in str(exc):
            raise
        print(f"fastnn bench: error: {exc}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(markdown_table(report))
    try:
        plot(report, os.path.join(args.out, "bench.png"))
    except ImportError:
        print("matplotlib not installed: no bench.png (pip install fastnn[plots])")
    print(f"wrote {os.path.join(args.out, 'bench.json')}")
    return 0
