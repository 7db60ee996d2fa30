#!/usr/bin/env bash
# The GPU stage in one device call (issue 20; docs/gpu-runs.md): CUDA tests, GPU benchmark rows, then a training
# stage warm-started from the shipped weights that fills the rest of BUDGET_MIN minutes; fp32 weights, eval and
# logs into $OUT.  Prepare here first: python3 scripts/gpu_stage.py prep   (fills the ignored gpu_carry/).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src:$PWD PYTHONUNBUFFERED=1
exec python3 scripts/gpu_stage.py run --budget-min "${BUDGET_MIN:-9.2}" --out "${OUT:-/tmp/gpu_out}" "$@"
