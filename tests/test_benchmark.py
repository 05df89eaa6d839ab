"""fastnn bench: FLOP accounting, the worker's JSON, the report's table and chart."""
import json
import subprocess
import sys

import pytest

from fastnn import nn
from fastnn.benchmark import run as bench_run
from fastnn.benchmark.flops import training_flops_per_image


def test_training_flops_count_conv_and_linear_gemms_three_times():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 10))
    conv = 2 * 4 * 5 * 5 * 1 * 3 * 3
    linear = 2 * 100 * 10
    assert training_flops_per_image(model, (1, 5, 5)) == 3 * (conv + linear)
    # the hooks are removed again
    assert "forward" not in model[0].__dict__


def test_worker_prints_one_json_measurement_for_fastnn():
    proc = subprocess.run([sys.executable, "-m", "fastnn.benchmark.worker", "--engine", "fastnn", "--model", "mlp",
                           "--batch", "8", "--threads", "1", "--min-time", "0.05", "--latency"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["engine"] == "fastnn" and result["batch"] == 8
    assert result["images_per_s"] > 0 and result["latency_ms_batch1"] > 0 and result["peak_rss_mib"] > 0


def _fake_report():
    row = {"model": "mlp", "batch": 64, "gflop_per_image": 1e-3,
           "fastnn": {"images_per_s": 2000.0, "gflops": 2.0, "percent_of_peak": 1.0, "first_step_s": 0.5,
                      "latency_ms_batch1": 0.1, "peak_rss_mib": 100.0},
           "torch": {"images_per_s": 1000.0, "gflops": 1.0, "percent_of_peak": 0.5, "first_step_s": 0.2,
                     "latency_ms_batch1": 0.2, "peak_rss_mib": 300.0},
           "ratio_vs_torch": 2.0}
    return {"machine": {"threads": 2}, "sgemm_peak_gflops": 200.0, "results": [row]}


def test_markdown_table_reports_ratio_and_latencies():
    table = bench_run.markdown_table(_fake_report())
    assert "| mlp | 64 | 2000 | 1000 | 2.00 |" in table
    assert "0.100 / 0.200" in table


def test_bar_chart_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    bench_run.plot(_fake_report(), str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_pytorch_baseline_runs_without_fastnns_environment_tuning(monkeypatch):
    from fastnn import threads
    monkeypatch.setitem(threads.ENVIRONMENT_DEFAULTS, "GOMP_SPINCOUNT", "1000000")
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000000")
    seen = {}

    class Done:
        returncode, stderr, stdout = 0, "", '{"images_per_s": 1.0}\n'

    def fake_run(cmd, env, **kwargs):
        seen[cmd[cmd.index("--engine") + 1]] = env
        return Done()

    monkeypatch.setattr(bench_run.subprocess, "run", fake_run)
    for engine in ("torch", "fastnn"):
        bench_run._run_worker(engine, "mlp", 64, 2, 0.1, False)
    assert "GOMP_SPINCOUNT" not in seen["torch"] and seen["fastnn"]["GOMP_SPINCOUNT"] == "1000000"
    assert seen["torch"]["OMP_NUM_THREADS"] == "2"
