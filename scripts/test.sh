#!/usr/bin/env bash
# README command 2: install fastnn in development mode with its test extras
# (including the pinned CPU PyTorch oracle) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet -e ".[test,oracle]"
python3 -m pytest "$@"
