#!/usr/bin/env bash
# The checks of the cuda device that need a real NVIDIA GPU (CI runs tests/cuda under Numba's
# simulator only): the cuda tests on the hardware, the launches per training step, a launch-by-launch
# profile of tfconvnet's step, the step with Numba's launch and fastnn's launcher, with the caching
# allocator off and on, with implicit-GEMM convolution and with im2col, with two GEMM tilings, an epoch
# trained on the cpu and the GPU side by side, a Fashion-MNIST training run, and the benchmark against PyTorch CUDA. Needs the GPU's driver, numba with CUDA support (numba-cuda for recent
# numba) and, for the comparison, a CUDA build of PyTorch. Fashion-MNIST's IDX files must be in
# $FASTNN_DATA (or pass --data-dir through FASHION_DIR=...).
#
#   scripts/cuda_check.sh            # everything
#   SKIP_INSTALL=1 scripts/cuda_check.sh
#
# On a machine that reaches no package registry (numba, scipy, Cython, pytest and PyTorch CUDA
# already there): `pip install --no-deps --no-build-isolation .` first, then SKIP_INSTALL=1.
# If numba.cuda cannot compile there because of the installed NumPy (numba-cuda 0.30 registers an
# overload of np.row_stack, gone in NumPy 2.5), put a NumPy 2.3 wheel first on PYTHONPATH. What ran on
# an H200 (no registry, Python 3.12): `pip install --no-index --no-deps --target /tmp/site numpy-2.3.5-*.whl
# hypothesis-*.whl sortedcontainers-*.whl`, `python3 setup.py build_ext --inplace -j 16` (33 s),
# `export PYTHONPATH=$PWD:/tmp/site`, then this script with SKIP_INSTALL=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SKIP_INSTALL:-}" ]; then
    python3 -m pip install --quiet -e ".[test,cuda]"
fi
python3 -c "from numba import cuda; cuda.detect()"

echo "== tests/cuda on the GPU (simulator off)"
NUMBA_ENABLE_CUDASIM=0 python3 -m pytest tests/cuda -q -p no:cacheprovider

echo "== launches per training step (batch 64)"
NUMBA_ENABLE_CUDASIM=0 python3 -c "
from fastnn.backends.cuda import training_step_launches
for m in ('mlp', 'lenet5', 'tfconvnet', 'bnconvnet'):
    print(f'{m:>10}: {training_step_launches(m, 64)} launches per step')"

echo "== where a tfconvnet step goes, launch by launch (host enqueue vs time to completion)"
NUMBA_ENABLE_CUDASIM=0 python3 bench/cuda_step_profile.py --model tfconvnet --batches 64 256 --host-profile 25

# tfconvnet training steps at batch 64 and 256 with the environment variable $1 set to each of the
# values after it in turn (fastnn's benchmark worker: images per second)
ab() {
    local variable=$1
    shift
    for batch in 64 256; do
        for value in "$@"; do
            env "$variable=$value" NUMBA_ENABLE_CUDASIM=0 python3 -m fastnn.benchmark.worker --engine fastnn \
                --model tfconvnet --batch "$batch" --device cuda --min-time 3
        done
    done
}

echo "== the launcher: tfconvnet steps with Numba's launch, then fastnn's (batch 64 and 256)"
ab FASTNN_CUDA_FAST_LAUNCH 0 1

echo "== the caching allocator: tfconvnet steps with it off, then on (batch 64 and 256)"
ab FASTNN_CUDA_CACHING_ALLOCATOR 0 1

echo "== convolution: implicit GEMM (the default), then im2col + GEMM (batch 64 and 256)"
ab FASTNN_CUDA_IMPLICIT_CONV 1 0

echo "== autotuning: off (the heuristic tiling and grad_x path), then on (batch 64 and 256)"
ab FASTNN_CUDA_AUTOTUNE 0 1

echo "== GEMM tilings: the default alone, with 32x128 tiles, then also 64x128 tiles with 8x8 per thread (the default setting; autotuned)"
ab FASTNN_CUDA_GEMM_TILES 64,64,16,4,4 "64,64,16,4,4;32,128,16,4,4" ""

echo "== one epoch of tfconvnet trained on the cpu and on the GPU side by side (same weights, batches, masks)"
NUMBA_ENABLE_CUDASIM=0 python3 bench/cuda_vs_cpu_training.py --steps 938 ${FASHION_DIR:+--data-dir "$FASHION_DIR"}

echo "== 2 epochs of tfconvnet on Fashion-MNIST, on the GPU"
NUMBA_ENABLE_CUDASIM=0 python3 -m fastnn train --model tfconvnet --dataset fashion-mnist --epochs 2 --batch-size 64 \
    --device cuda --no-progress ${FASHION_DIR:+--data-dir "$FASHION_DIR"}

echo "== fastnn bench --device cuda (against PyTorch CUDA when torch.cuda is available)"
NUMBA_ENABLE_CUDASIM=0 python3 -m fastnn bench --device cuda --models tfconvnet --batches 64 256 --out bench_results_cuda
