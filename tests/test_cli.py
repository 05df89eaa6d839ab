"""The ``fastnn`` command line: train (digits, MNIST-format files, saving), info, bench dispatch and
one-line errors with exit status 2 for bad arguments."""
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

import fastnn
from fastnn import cli, models
from fastnn.data.idx import write_idx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "fastnn", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def test_python_m_fastnn_train_one_epoch_and_save(tmp_path):
    path = tmp_path / "lenet5.npz"
    proc = _run("train", "--epochs", "1", "--batch-size", "64", "--no-progress", "--threads", "1",
                "--save", str(path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "lenet5 on digits" in out and "epoch 1/1" in out
    assert re.search(r"test accuracy 0\.\d{4}", out) and "images/s" in out and "wall time" in out
    model = models.lenet5(image_size=8)
    model.load_state_dict(fastnn.load(path))


def test_python_m_fastnn_info():
    proc = _run("info")
    assert proc.returncode == 0, proc.stderr
    assert f"fastnn {fastnn.__version__}" in proc.stdout
    for word in ("backends available", "compiled modules", "float32 GEMM", "float32 convolution", "threads"):
        assert word in proc.stdout


def test_bad_argument_is_one_line_exit_2():
    proc = _run("train", "--epochs", "zero")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--epochs" in lines[0]


@pytest.mark.parametrize("args,word", [
    (["train", "--model", "resnet"], "--model"), (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--val-fraction", "1.5"], "--val-fraction"), (["train", "--lr", "-1"], "--lr"),
    (["train", "--backend", "gpu"], "--backend"), (["train", "--seed", "-3"], "--seed"), (["frobnicate"], "frobnicate"), (["train", "--nope"], "--nope")])
def test_bad_arguments_in_process(capsys, args, word):
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0]


def test_missing_data_dir_names_the_files(tmp_path, capsys):
    code = cli.main(["train", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert os.path.join(str(tmp_path), "train-images-idx3-ubyte.gz") in err and "Traceback" not in err


def test_save_to_missing_folder_fails_before_training(tmp_path, capsys):
    code = cli.main(["train", "--save", str(tmp_path / "no" / "m.npz"), "--no-progress"])
    assert code == 2
    captured = capsys.readouterr()
    assert "does not exist" in captured.err and "epoch" not in captured.out


def _fake_mnist(folder, n_train=96, n_test=32):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        images[np.arange(n), 2 * labels + 3, 5:20] = 255  # a learnable bar per class
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


def test_train_on_mnist_format_files_with_validation_split(tmp_path, capsys):
    _fake_mnist(tmp_path)
    code = cli.main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--model", "mlp", "--epochs", "2",
                     "--optimizer", "adam", "--val-fraction", "0.25", "--batch-size", "16", "--no-progress",
                     "--backend", "reference", "--seed", "3"])
    assert code == 0
    out = capsys.readouterr().out
    assert "mlp on mnist (72 train / 24 val / 32 test images), adam lr 0.001" in out
    assert "val loss" in out and "backend reference" in out and "test accuracy" in out


def test_default_train_reaches_095_on_digits(capsys):
    """The README's promise: bare ``fastnn train`` gets LeNet-5 to >= 0.95 on the digits test split."""
    code = cli.main(["train", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", out).group(1))
    assert accuracy >= 0.95, out


def test_bench_is_dispatched_lazily(monkeypatch):
    calls = []
    fake = types.ModuleType("fastnn.bench_cli")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "fastnn.bench_cli", fake)
    assert cli.main(["bench", "--models", "mlp", "--repeats", "1"]) == 0
    assert calls == [["--models", "mlp", "--repeats", "1"]]


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "train" in capsys.readouterr().out


def test_lesson_subcommand_lists_and_runs_a_lesson(tmp_path, capsys):
    assert cli.main(["lesson", "--list"]) == 0
    listing = capsys.readouterr().out
    for name in ("convolution", "gradient-descent", "playground", "segmentation", "one-hot"):
        assert name in listing
    assert cli.main(["lesson", "one-hot", "--out", str(tmp_path / "oh"), "--small"]) == 0
    assert (tmp_path / "oh" / "summary.txt").read_text().strip()
    assert cli.main(["lesson", "no-such-lesson"]) == 2


def test_train_with_l2_penalty_and_course_model(capsys):
    code = cli.main(["train", "--model", "resnet_small", "--epochs", "1", "--l2", "1e-4", "--no-progress"])
    assert code == 0
    assert "test accuracy" in capsys.readouterr().out
