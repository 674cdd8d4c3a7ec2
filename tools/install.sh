#!/usr/bin/env bash
# Install vsrzoo and its pinned dependencies into ./.venv (created if missing). Used by both README commands and CI.
#   bash tools/install.sh            # runtime + test extras
# basicsr-fixed (the importable `basicsr` that works with current torchvision) is installed with --no-deps: its
# metadata pulls the GUI opencv-python, which clashes with opencv-python-headless; its real dependencies are
# listed in setup.cfg instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
.venv/bin/python -m pip install -q --no-deps -c constraints.txt basicsr-fixed
.venv/bin/python -c "import torch, torchvision, lightning, basicsr, av; print('vsrzoo env: torch', torch.__version__, '| torchvision', torchvision.__version__, '| lightning', lightning.__version__, '| basicsr', basicsr.__version__, '| av', av.__version__)"
