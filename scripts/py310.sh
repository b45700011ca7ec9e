#!/usr/bin/env bash
# The Python 3.10 check of `make test` (ROS 2 Humble's Python): where a Python 3.10 exists,
# build .venv-py310 with every requirement except torch (PyPI has torch for 3.10 only as a
# multi-GB CUDA build) and run scripts/check_py310.py: everything compiles, every module
# imports (those needing torch or ROS 2 are named), the non-ROS tests that need no torch pass.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV_PY310:-.venv-py310}"

find_python310() {
  local c
  for c in "${PYTHON310:-}" python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python3.10 \
           /usr/bin/python3.10 /usr/local/bin/python3.10; do
    if [ -n "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if ! PY310="$(find_python310)"; then
  echo '[py310] no Python 3.10 on this machine: the 3.10 check is skipped'
  exit 0
fi
if [ ! -f "$VENV/.installed" ] || [ requirements.txt -nt "$VENV/.installed" ] \
   || [ requirements-dev.txt -nt "$VENV/.installed" ]; then
  echo "[py310] building $VENV with $PY310 (every requirement but torch)"
  rm -rf "$VENV"
  "$PY310" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  grep -v '^torch==' requirements.txt > "$VENV/requirements-no-torch.txt"
  # Binary wheels only: an sdist build can make pip backtrack for a long time on 3.10.
  "$VENV/bin/python" -m pip install -q --only-binary=:all: \
    -r "$VENV/requirements-no-torch.txt" \
    "$(grep '^pytest==' requirements-dev.txt)" \
    "$(grep '^hypothesis==.*< "3.11"' requirements-dev.txt | cut -d';' -f1)"
  touch "$VENV/.installed"
fi
PYTHONPATH="$PWD" MUJOCO_GL="${MUJOCO_GL:-egl}" "$VENV/bin/python" scripts/check_py310.py
