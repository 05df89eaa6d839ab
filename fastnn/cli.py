"""The ``fastnn`` command line (also ``python -m fastnn``): ``train``, ``info``, ``bench`` and ``lesson``.

    fastnn train                                   # LeNet-5 on scikit-learn's digits, seconds
    fastnn train --model bnconvnet --dataset fashion-mnist --epochs 10 --save bn.npz
    fastnn info                                    # version, backends, compiled modules, threads, BLAS
    fastnn bench --models lenet5                   # benchmarks (see ``fastnn bench --help``)
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

MODEL_NAMES = ("mlp", "lenet5", "tfconvnet", "bnconvnet", "resnet_small", "attention_cnn")
DATASET_NAMES = ("digits", "fashion-mnist", "mnist")
IMAGE_SIZES = {"digits": 8, "fashion-mnist": 28, "mnist": 28}
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.05}
BENCH_MODULES = ("fastnn.bench_cli", "fastnn.benchmark.run")  # the first one importable runs ``fastnn bench``


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage block) and exits with 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _UserError(Exception):
    """A problem with the arguments or the environment, reported in one message without a traceback."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _fraction(text):
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def build_parser():
    parser = _Parser(prog="fastnn", description="fastnn: train convolutional networks fast on the CPU.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="{train,info,bench,lesson}", parser_class=_Parser)

    train = sub.add_parser("train", help="train a zoo model on a data set",
                           description="Train a zoo model; prints per-epoch loss/accuracy, test accuracy, "
                                       "wall time and images/s.")
    train.add_argument("--model", choices=MODEL_NAMES, default="lenet5")
    train.add_argument("--dataset", choices=DATASET_NAMES, default="digits",
                       help="digits (bundled with scikit-learn; random 80/20 train/test split) or the "
                            "official train/test IDX files of fashion-mnist / mnist")
    train.add_argument("--epochs", type=_positive_int, default=15)
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--lr", type=_non_negative_float, default=None,
                       help=f"learning rate (default: {DEFAULT_LR['adam']} for adam, {DEFAULT_LR['sgd']} for sgd)")
    train.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    train.add_argument("--momentum", type=_non_negative_float, default=0.9, help="SGD momentum (default 0.9)")
    train.add_argument("--weight-decay", type=_non_negative_float, default=0.0, help="L2 penalty (default 0)")
    train.add_argument("--l1", type=_non_negative_float, default=0.0, help="L1 weight penalty rate (default 0)")
    train.add_argument("--l2", type=_non_negative_float, default=0.0,
                       help="L2 weight penalty rate added to the loss, l2/2 sum w^2 (default 0)")
    train.add_argument("--schedule", choices=("cosine", "none"), default="cosine",
                       help="learning-rate schedule over the epochs (default: cosine annealing to 0)")
    train.add_argument("--data-dir", default=None, metavar="DIR",
                       help="folder of the IDX files (default: $FASTNN_DATA, then /usr/share/datasets/<name>)")
    train.add_argument("--val-fraction", type=_fraction, default=0.0,
                       help="fraction of the training set held out for validation (default 0)")
    train.add_argument("--seed", type=_non_negative_int, default=0, help="seed of initialisation, dropout, splits, shuffling")
    train.add_argument("--threads", type=_positive_int, default=None,
                       help="threads for OpenMP, Numba and BLAS (default: physical cores)")
    train.add_argument("--backend", choices=("cpu", "reference"), default="cpu")
    train.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                       help="where the model and batches live (cuda: numba.cuda kernels on an NVIDIA GPU)")
    train.add_argument("--save", default=None, metavar="PATH", help="save the trained state dict (fastnn.save)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")

    sub.add_parser("info", help="version, backends, compiled modules, threads, BLAS",
                   description="Print what this fastnn installation runs on.")
    sub.add_parser("bench", help="benchmarks against the NumPy reference and PyTorch (fastnn bench --help)",
                   add_help=False)
    sub.add_parser("lesson", help="run one of the course's lessons (fastnn lesson --list)", add_help=False)
    return parser


# -- train --------------------------------------------------------------------------------------

def _datasets(args):
    """(train, val or None, test) data sets."""
    from . import data

    try:
        if args.dataset == "digits":
            full = data.digits()
            train, test = data.random_split(full, [0.8, 0.2], seed=args.seed)
        else:
            load = data.fashion_mnist if args.dataset == "fashion-mnist" else data.mnist
            train = load(args.data_dir, train=True)
            test = load(args.data_dir, train=False)
    except FileNotFoundError as exc:
        raise _UserError(str(exc), code=2) from exc
    except (ValueError, ModuleNotFoundError) as exc:
        raise _UserError(str(exc)) from exc
    val = None
    if args.val_fraction > 0:
        n_val = round(len(train) * args.val_fraction)
        if not 0 < n_val < len(train):
            raise _UserError(f"--val-fraction {args.val_fraction} leaves no training or no validation samples "
                             f"out of {len(train)}", code=2)
        train, val = data.random_split(train, [len(train) - n_val, n_val], seed=args.seed + 1)
    return train, val, test


def _optimizer(args, params):
    from . import optim

    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    if lr <= 0:
        raise _UserError(f"--lr must be > 0, got {lr}", code=2)
    if args.optimizer == "sgd":
        return optim.SGD(params, lr=lr, momentum=args.momentum, weight_decay=args.weight_decay), lr
    return optim.Adam(params, lr=lr, weight_decay=args.weight_decay), lr


def cmd_train(args):
    import fastnn

    from . import data, models, nn
    from .train import evaluate, fit

    t_start = time.perf_counter()
    if args.save and not os.path.isdir(os.path.dirname(os.path.abspath(args.save))):
        raise _UserError(f"--save {args.save!r}: folder {os.path.dirname(os.path.abspath(args.save))!r} "
                         "does not exist", code=2)
    if args.threads is not None:
        fastnn.set_num_threads(args.threads)
    try:
        fastnn.use_backend(args.backend)
    except ImportError as exc:
        raise _UserError(str(exc)) from exc
    if args.device == "cuda":
        from . import device as _device
        try:
            _device.require_cuda("--device cuda")
        except RuntimeError as exc:
            raise _UserError(str(exc)) from exc
    fastnn.manual_seed(args.seed)
    train_set, val_set, test_set = _datasets(args)
    model = models.get_model(args.model, in_channels=1, num_classes=10, image_size=IMAGE_SIZES[args.dataset])
    optimizer, lr = _optimizer(args, model.parameters())
    scheduler = None
    if args.schedule == "cosine":
        from .optim.lr_scheduler import CosineAnnealingLR
        scheduler = CosineAnnealingLR(optimizer, T_max=args.epochs)
    loss_fn = nn.CrossEntropyLoss()
    train_loader = data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    eval_batch = max(args.batch_size, 256)
    val_loader = data.DataLoader(val_set, batch_size=eval_batch) if val_set is not None else None
    test_loader = data.DataLoader(test_set, batch_size=eval_batch)

    print(f"fastnn {fastnn.__version__} train: {args.model} on {args.dataset} "
          f"({len(train_set)} train / {len(val_set) if val_set is not None else 0} val / {len(test_set)} test images), "
          f"{args.optimizer} lr {lr:g}"
          + (f" momentum {args.momentum:g}" if args.optimizer == "sgd" else "")
          + (f" weight decay {args.weight_decay:g}" if args.weight_decay else "")
          + (f" ({args.schedule} schedule)" if scheduler is not None else "")
          + f", batch {args.batch_size}, {args.epochs} epochs, "
          + ("device cuda, " if args.device == "cuda" else f"backend {fastnn.get_backend()}, ")
          + f"{fastnn.get_num_threads()} threads, seed {args.seed}", flush=True)

    def log(line):
        print(line, flush=True)

    device = "cuda" if args.device == "cuda" else None   # None: the CPU path exactly as before

    try:
        history = fit(model, loss_fn, optimizer, train_loader, args.epochs, val_loader=val_loader,
                      scheduler=scheduler, progress=not args.no_progress, log=log, l1=args.l1, l2=args.l2,
                      device=device)
    except FloatingPointError as exc:
        raise _UserError(str(exc)) from exc
    test_loss, test_acc = evaluate(model, loss_fn, test_loader, device=device)
    train_time = sum(history["epoch_time"])
    wall = time.perf_counter() - t_start
    images = len(train_set) * args.epochs
    print(f"test loss {test_loss:.4f}  test accuracy {test_acc:.4f}")
    print(f"wall time {wall:.1f} s (training {train_time:.1f} s, {images / train_time:.0f} images/s)")
    if args.save:
        try:
            fastnn.save(model.state_dict(), args.save)
        except OSError as exc:
            raise _UserError(f"--save {args.save!r}: {exc}") from exc
        print(f"saved the state dict to {args.save}")
    return 0


# -- info ---------------------------------------------------------------------------------------

def cmd_info(args):
    import platform

    import numpy as np

    import fastnn

    print(f"fastnn {fastnn.__version__}  (Python {platform.python_version()}, NumPy {np.__version__}, "
          f"{platform.system()} {platform.machine()})")
    print(f"backends available: {', '.join(fastnn.available_backends()) or 'none'}  "
          f"(current: {fastnn.get_backend()})")
    try:
        from .backends import cpu
        compiled = cpu.compiled_modules()
    except ImportError as exc:
        print(f"compiled modules: none (the cpu backend does not import: {exc})")
    else:
        names = list(compiled) if isinstance(compiled, dict) else list(compiled or [])
        print(f"compiled modules: {', '.join(names) if names else 'none loaded'}")
        if isinstance(compiled, dict):
            for name, path in compiled.items():
                print(f"  {name}: {path}")
        from .backends.cpu import own_sgemm
        print("float32 GEMM: " + ("fastnn's AVX-512 sgemm for products of at least 32x64x64, OpenBLAS below"
                                  if own_sgemm.enabled() else "OpenBLAS (this CPU has no AVX-512)"
                                  if not own_sgemm.available() else "OpenBLAS (fastnn's sgemm switched off)"))
        from .backends.cpu import conv as cpu_conv
        kinds = ([f"direct (stride 1, <= {cpu_conv.DIRECT_MAX_OUT_CHANNELS} output channels, 5x5-sized kernels)"]
                 if cpu_conv._direct["enabled"] else [])
        kinds += ([f"Winograd F(2x2, 5x5) (5x5, >= {cpu_conv.WINOGRAD_MIN_CHANNELS} channels)"]
                  if cpu_conv._winograd["enabled"] and own_sgemm.enabled() else [])
        print("float32 convolution: " + ", ".join(kinds + ["im2col + GEMM otherwise"]))
    numba = sys.modules.get("numba")
    if numba is not None:
        print(f"numba {numba.__version__}")
    print(f"threads: {fastnn.get_num_threads()}")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        print("BLAS: threadpoolctl not installed")
        return 0
    pools = threadpool_info()
    if not pools:
        print("thread pools: none detected")
    for pool in pools:
        extra = f", {pool['architecture']}" if pool.get("architecture") else ""
        print(f"{pool.get('user_api', '?')}: {pool.get('internal_api', '?')} {pool.get('version') or ''} "
              f"({pool.get('num_threads')} threads{extra}) {pool.get('filepath', '')}")
    return 0


# -- bench --------------------------------------------------------------------------------------

def cmd_bench(argv):
    """Hand the remaining arguments to the benchmark driver, imported only now (it is heavier)."""
    for name in BENCH_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # this driver is not installed; try the next
            raise
        result = module.main(argv)
        return 0 if result is None else int(result)
    raise _UserError("the benchmark driver is not available in this installation")


def main(argv=None):
    """Entry point of the ``fastnn`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lesson":
        from .examples import main as lesson_main  # imported only now: it pulls in matplotlib
        return lesson_main(argv[1:])
    if argv and argv[0] == "bench":
        try:
            return cmd_bench(argv[1:])
        except _UserError as exc:
            print(f"fastnn bench: error: {exc}", file=sys.stderr)
            return exc.code
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import fastnn
        print(f"fastnn {fastnn.__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "train":
            return cmd_train(args)
        return cmd_info(args)
    except _UserError as exc:
        print(f"fastnn {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"fastnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
