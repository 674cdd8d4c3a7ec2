#!/usr/bin/env bash
# Download, into ./.whl, the wheels that benchmarks/gpu_suite.py needs on a GPU machine whose Python (3.12,
# x86-64, with torch, torchvision, lightning, timm, transformers, opencv already installed) lacks them and cannot
# reach a package index. Versions come from constraints.txt; packages that ship only a source archive
# (basicsr-fixed, antlr4-python3-runtime) are built into pure-Python wheels here.
#   bash tools/gpu_wheels.sh          # then, on the GPU machine, from the project root:
#   bash tools/run_gpu_suite.sh       # installs .whl/*.whl into /tmp/site and runs benchmarks/gpu_suite.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
# what the GPU image lacks (its package list: the device notes); each with its own missing dependencies
BINARY="diffusers av lpips jsonargparse docstring_parser typeshed_client omegaconf scenedetect-headless addict future
lmdb yapf platformdirs importlib_metadata"
SOURCE="basicsr-fixed antlr4-python3-runtime"
rm -rf .whl && mkdir -p .whl
pin() {  # NAME -> NAME==VERSION from constraints.txt when pinned there (names compared case- and -_-insensitively)
  local key; key=$(echo "$1" | tr 'A-Z_' 'a-z-')
  local line; line=$(tr 'A-Z_' 'a-z-' < constraints.txt | grep -m1 "^$key==" || true)
  if [ -n "$line" ]; then echo "$1==${line#*==}"; else echo "$1"; fi
}
for name in $BINARY; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$(pin "$name")"
done
for name in $SOURCE; do
  "$PY" -m pip wheel -q --no-deps -w .whl "$(pin "$name")"
done
# the commit the wheels go with (the device machine gets the working tree without .git)
git rev-parse --short HEAD > .whl/COMMIT 2>/dev/null || true
du -sh .whl
