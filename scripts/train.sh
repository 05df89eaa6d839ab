#!/usr/bin/env bash
# README command 1: install fastnn (compiled wheel) and train a CNN on the bundled digits data set.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet .
cd /tmp  # run the installed package, not the source tree
fastnn info
fastnn train "$@"
