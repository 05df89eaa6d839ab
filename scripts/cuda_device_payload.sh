#!/usr/bin/env bash
# What scripts/cuda_quick_check.sh needs on the lent GPU machine, which reaches no registry, made here
# (with a registry) before the lease: a NumPy 2.3 wheel (numba.cuda cannot compile under that image's
# NumPy 2.5), the test suite's pure-Python dependencies, and Fashion-MNIST's IDX files. All git-excluded,
# about 50 MB (the device tool carries at most 64 MiB). Then, with the device tool:
#   carry [".whl", ".devrun"], timeout_s 305, command:
#   WHEELS=".whl .devrun/wheels" FASHION_DIR=.devrun/fashion OUT=$OUT/quick bash scripts/cuda_quick_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for ignored in /.whl/ /.devrun/; do
    grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >> .git/info/exclude
done
wheel=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp)
python3 -m pip download -q "${wheel[@]}" --platform manylinux_2_28_x86_64 -d .whl numpy==2.3.5
python3 -m pip download -q "${wheel[@]}" -d .devrun/wheels hypothesis sortedcontainers attrs
mkdir -p .devrun/fashion
cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .devrun/fashion/
du -sh .whl .devrun
git status --short --ignored .whl .devrun | head -3
