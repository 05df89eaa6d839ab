#!/usr/bin/env bash
# README command 2: install fastnn in development mode with its test extras (the pinned CPU
# PyTorch oracle, and the cuda extra: numba-cuda and NVIDIA's compiler wheels, with which
# tests/cuda compiles every kernel for a GPU; no GPU needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet -e ".[test,oracle,cuda]"
python3 -m pytest "$@"
