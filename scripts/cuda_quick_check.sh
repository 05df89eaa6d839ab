#!/usr/bin/env bash
# The cuda checks that fit a short GPU lease (about 270 s on an H200, compile included): build the cpu
# extensions, the #5 benchmark against PyTorch CUDA, two 15-epoch Fashion-MNIST trainings on the GPU
# (seeds 1 and 2, to compare with the cpu's 0.9246 and 0.9241) beside the cuda tests on the hardware,
# twelve steps trained side by side on the cpu and the GPU, and a launch-by-launch step profile.
# scripts/cuda_check.sh runs the longer list (A/Bs of each setting, the whole tests/cuda).
#
#   FASHION_DIR=/path/to/idx OUT=results bash scripts/cuda_quick_check.sh
#
# WHEELS="dir ...": wheels installed first into /tmp/site and put on PYTHONPATH, with the checkout (for a
# machine without a registry whose NumPy numba.cuda cannot compile with: carry a NumPy 2.3 wheel, and
# hypothesis + sortedcontainers + attrs for the tests). BUDGET=seconds (270) bounds the whole run.
# The results go to $OUT (created): bench.log, tests.log, train.log, vs_cpu.log, profile.log.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd); T0=$(date +%s); BUDGET=${BUDGET:-270}; OUT=${OUT:-cuda_quick_check}; mkdir -p "$OUT"
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
export PYTHONUNBUFFERED=1 NUMBA_ENABLE_CUDASIM=0
if [ -n "${WHEELS:-}" ]; then
    # shellcheck disable=SC2046
    python3 -m pip install -q --no-index --no-deps --target /tmp/site $(for d in $WHEELS; do echo "$d"/*.whl; done) \
        > /tmp/cuda_quick_wheels.log 2>&1
    export PYTHONPATH=$REPO:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
DATA=${FASHION_DIR:+--data-dir $FASHION_DIR}
python3 -c "import cuda.core, numba_cuda; print('cuda.core', cuda.core.__version__, 'numba-cuda', numba_cuda.__version__)"
timeout 90 python3 setup.py -q build_ext --inplace -j "$(nproc)" > /tmp/cuda_quick_build.log 2>&1
echo "build rc=$? left $(left) s"
python3 -c "import fastnn.backends.cuda.launcher as l; print('fast launch:', l.unavailable_reason or 'on')"

echo "== fastnn bench --device cuda (left $(left) s)"
timeout 150 python3 -m fastnn bench --device cuda --models tfconvnet --batches 64 256 --repeats 1 --min-time 1.5 \
    --out "$OUT/bench" > "$OUT/bench.log" 2>&1
echo "bench rc=$?"; grep "img/s\|^| tfconvnet\|rror\|failed" "$OUT/bench.log" | head -20

echo "== two trainings (background) beside the cuda tests (left $(left) s)"
for seed in 1 2; do
    ( timeout $(( $(left) - 20 )) python3 -m fastnn train --model tfconvnet --dataset fashion-mnist --epochs 15 \
          --batch-size 64 --seed $seed --device cuda --no-progress $DATA > "/tmp/cuda_quick_train_$seed.log" 2>&1
      echo "train rc=$?" >> "/tmp/cuda_quick_train_$seed.log" ) &
done
timeout $(( $(left) - 25 )) python3 -m pytest tests/cuda/test_cuda_device.py tests/cuda/test_cuda_gemm.py \
    tests/cuda/test_implicit_conv.py tests/cuda/test_cuda_kernels.py tests/cuda/test_autotune.py \
    tests/cuda/test_caching_allocator.py -v -p no:cacheprovider --tb=short -rfE > "$OUT/tests.log" 2>&1
echo "tests rc=$? ($(grep -c PASSED "$OUT/tests.log") passed; left $(left) s)"
grep -E "FAILED|ERROR|direct launch of|differ from Numba" "$OUT/tests.log" | head -8
wait
for seed in 1 2; do echo "seed $seed:"; grep -i "test accuracy\|epoch 15\|rc=\|rror" "/tmp/cuda_quick_train_$seed.log" | tail -3; done \
    | tee "$OUT/train.log"

echo "== twelve steps side by side, cpu and cuda (left $(left) s)"
[ "$(left)" -gt 45 ] && timeout 40 python3 bench/cuda_vs_cpu_training.py --steps 12 $DATA 2>&1 \
    | grep -v "Warning\|warn(" | tee "$OUT/vs_cpu.log" | cut -c1-400

echo "== launch-by-launch profile (left $(left) s)"
[ "$(left)" -gt 25 ] && timeout $(( $(left) - 3 )) python3 bench/cuda_step_profile.py --model tfconvnet --batches 64 256 \
    2>&1 | grep -v "Warning\|warn(" > "$OUT/profile.log"
grep -v "^  autotuned" "$OUT/profile.log" | head -50
echo "== done (left $(left) s)"
