#!/usr/bin/env bash
# The equal-wall-clock architecture study on this 2-core CPU (issue 11; docs/model-study.md).
# The three candidates train at the same time, one torch thread each, for the same 45 minutes of training
# time (configs/study/cpu.yaml), so they share the machine under the same conditions.
# Usage (from the repository root, ../shared beside it): bash scripts/cpu_study.sh [OUT_DIR]
set -euo pipefail
out=${1:-runs/study_cpu}
# Validation pairs: the first 30 dev-val-celebahq faces (by natural sort), degraded once with seed 0.
if [ ! -d /tmp/study/val30_lq ]; then
  facesr degrade ../shared/data/dev-val-celebahq /tmp/study/celeb_lq --seed 0
  mkdir -p /tmp/study/val30_lq /tmp/study/val30_gt
  for f in $(ls /tmp/study/celeb_lq | sort -V | head -30); do
    ln -s /tmp/study/celeb_lq/$f /tmp/study/val30_lq/$f
    ln -s "$(realpath ../shared/data/dev-val-celebahq/${f%.*}.jpg)" /tmp/study/val30_gt/${f%.*}.jpg
  done
fi
mkdir -p "$out"
declare -A models=(
  [msrresnet16]="model.arch=msrresnet model.num_blocks=16"
  [lqresnet64x29]="model.arch=lqresnet model.mid_channels=64 model.num_blocks=29"
  [lqresnet96x12]="model.arch=lqresnet model.mid_channels=96 model.num_blocks=12"
)
for name in "${!models[@]}"; do
  OMP_NUM_THREADS=1 nohup facesr train configs/study/cpu.yaml --work-dir "$out/$name" \
    --set ${models[$name]} > "$out/$name.log" 2>&1 &
done
wait
