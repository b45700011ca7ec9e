#!/usr/bin/env bash
# Create or refresh .venv-bench: LeRobot's ACT policy beside this package, for
# bench/bench_act.py only (docs/latency.md). Bench-only: `make test` never installs it, and the
# project's .venv is left alone.
#
# - The venv is made with the Python of .venv (the same interpreter), else PYTHON (python3).
# - requirements-bench.txt is the whole pinned closure, installed with --no-deps: lerobot's own
#   requirements (torch<2.11, ...) are not resolved, so torch stays 2.13.0, the CPU build where
#   one lies on local disk, as for .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-bench}"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then
    PYTHON="$(.venv/bin/python -c 'import sys; print(sys._base_executable)')"
  else
    PYTHON=python3
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[bench-setup] creating $VENV with $("$PYTHON" -V 2>&1) ($PYTHON)"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$VENV/bin/python" -m pip install -q --no-deps -r requirements-bench.txt
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c 'import lerobot, torch; print(f"[bench-setup] lerobot {lerobot.__version__}, torch {torch.__version__}")'
echo "[bench-setup] $VENV ready: $VENV/bin/python bench/bench_act.py"
