#!/usr/bin/env bash
# Create or refresh the project's virtual environment (used by `make demo` and `make test`).
#
# - With a sourced ROS 2 install (ROS_DISTRO set), the venv sees the system site packages and
#   uses that install's rclpy and message packages; otherwise the ROS 2 wheels of
#   ROS_PYPI_DISTRO (kilted, the default, or jazzy: requirements-ros-<distro>.txt) from PyPI are
#   installed into the venv.
# - MuJoCo renders headless through EGL: the Debian EGL/Mesa libraries are installed when
#   missing (as root), else a hint is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo '[setup] installing EGL/Mesa libraries for headless MuJoCo rendering'
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libegl-mesa0 libgl1 >/dev/null
  else
    echo '[setup] warning: libEGL.so.1 not found; install libegl1 libegl-mesa0 libgl1' >&2
  fi
fi

want_system=false
reqs=(-r requirements.txt -r requirements-dev.txt)
if [ -n "${ROS_DISTRO:-}" ]; then
  want_system=true
  echo "[setup] using the sourced ROS 2 ${ROS_DISTRO} install (rclpy and messages)"
else
  distro="${ROS_PYPI_DISTRO:-kilted}"
  if [ ! -f "requirements-ros-${distro}.txt" ]; then
    echo "[setup] ROS_PYPI_DISTRO=${distro}: no requirements-ros-${distro}.txt (kilted or jazzy)" >&2
    exit 2
  fi
  echo "[setup] ROS 2 ${distro} Python wheels from PyPI into $VENV"
  reqs+=(-r "requirements-ros-${distro}.txt")
fi

if [ -f "$VENV/pyvenv.cfg" ]; then
  has_system=$(grep -qi '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" && echo true || echo false)
  if [ "$has_system" != "$want_system" ]; then
    echo "[setup] recreating $VENV (system site packages: $want_system)"
    rm -rf "$VENV"
  fi
fi
if [ ! -x "$VENV/bin/python" ]; then
  if [ "$want_system" = true ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi

"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$VENV/bin/python" -m pip install -q "${reqs[@]}"
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
touch "$VENV/.installed"
echo "[setup] $VENV ready"
