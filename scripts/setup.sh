#!/usr/bin/env bash
# Create .venv and install distill with its test extras. torch is pinned: the CPU wheel
# (an unpinned torch pulls a multi-GB CUDA build). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev]' torch==2.13.0
