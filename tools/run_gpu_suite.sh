#!/usr/bin/env bash
# Run benchmarks/gpu_suite.py on a GPU machine that has torch but no package index (the device machine): install the
# wheels of ./.whl (made here by `bash tools/gpu_wheels.sh`, which also records the commit in .whl/COMMIT) into
# /tmp/site, then run the suite. Results: $OUT (when set: the device tool's folder) or benchmarks/results.
#   bash tools/run_gpu_suite.sh [gpu_suite.py options...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -z "${VSRZOO_COMMIT:-}" ] && [ -f .whl/COMMIT ] && export VSRZOO_COMMIT="$(cat .whl/COMMIT)"
export PYTHONUNBUFFERED=1
OUTDIR=${OUT:-benchmarks/results}
mkdir -p "$OUTDIR"
nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu --format=csv 2>/dev/null || true
set -o pipefail
"$PY" benchmarks/gpu_suite.py --device cuda --out "$OUTDIR" "$@" 2>&1 | tee "$OUTDIR/gpu_suite.log"
