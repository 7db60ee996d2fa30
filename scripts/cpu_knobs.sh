#!/usr/bin/env bash
# Recipe knobs at the CPU study's budget (issue 11; docs/model-study.md), on the study's winner.
# Five runs at the same time, one torch thread each, each changing one thing from B. They get the same
# compute, not a time budget: each processes the same number of LQ pixels (B: 120 iterations x 8 x 48x48),
# so their speed planning cannot be skewed by other jobs on the machine; running side by side they also take
# about the same wall-clock time (logged as train_s). Validation every 10 minutes of training time on the
# study's 30 dev-val-celebahq pairs, and at the end.
# EMA: every run keeps EMA weights with momentum 0.01 (the study used 0.001); EMA does not affect training,
# so each run's EMA-vs-raw gap measures it.
# Usage (repository root, after scripts/cpu_study.sh made /tmp/study/val30_*): bash scripts/cpu_knobs.sh [OUT_DIR]
set -euo pipefail
out=${1:-runs/knobs_cpu}
arch="model.arch=lqresnet model.mid_channels=96 model.num_blocks=12"
common="train.time_budget_min=null train.val_interval_min=10 train.ema_momentum=0.01"
declare -A runs=(
  [B_base]="$common train.max_iters=120 sched.periods=[120]"      # 48x48 patches, batch 8, lr 2e-4, one cosine
  [L_lr5e-4]="$common train.max_iters=120 sched.periods=[120] optim.lr=5e-4"
  [S_batch4]="$common train.max_iters=240 sched.periods=[240] train.batch_size=4"   # twice the steps
  [C_constant]="$common train.max_iters=120 sched.type=constant"  # = the reference's restarts at this length
  # Progressive 48 -> 96 -> 128 in about 50/30/20% of the pixels (a 96x96 step costs 4x, 128x128 7.1x).
  [P_progressive]="$common train.max_iters=72 sched.periods=[72] data.crop_size=null data.crop_schedule=[[0,48],[60,96],[69,128]]"
)
mkdir -p "$out"
for name in "${!runs[@]}"; do
  OMP_NUM_THREADS=1 nohup facesr train configs/study/cpu.yaml --work-dir "$out/$name" \
    --set $arch ${runs[$name]} > "$out/$name.log" 2>&1 &
done
wait
