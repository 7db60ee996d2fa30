#!/usr/bin/env bash
# Recipe knobs at the CPU study's budget (issue 11; docs/model-study.md), on the study's winner.
# Five runs at the same time, one torch thread each, 30 minutes of training time each (validation excluded),
# validated every 10 minutes on the study's 30 dev-val-celebahq pairs. Each changes one thing from B.
# EMA: every run keeps EMA weights with momentum 0.01 (the study used 0.001); EMA does not affect training,
# so each run's EMA-vs-raw gap measures it.
# Usage (repository root, after scripts/cpu_study.sh made /tmp/study/val30_*): bash scripts/cpu_knobs.sh [OUT_DIR]
set -euo pipefail
out=${1:-runs/knobs_cpu}
arch="model.arch=lqresnet model.mid_channels=96 model.num_blocks=12"
common="train.time_budget_min=30 train.val_interval_min=10 train.ema_momentum=0.01"
declare -A runs=(
  [B_base]="$common"                                  # 48x48 patches, batch 8, lr 2e-4, one cosine
  [L_lr5e-4]="$common optim.lr=5e-4"
  [S_batch4]="$common train.batch_size=4"
  [C_constant]="$common sched.type=constant"          # = the reference's restarts at this length
  # Progressive 48 -> 96 -> 128 (time shares about 50/30/20%), by iteration: a run whose speed changes
  # cannot be planned from a time budget, so its length comes from B's measured speed under this load
  # (0.080 it/s at 48x48; a 96x96 iteration costs 4x, 128x128 7.1x).
  [P_progressive]="train.time_budget_min=null train.max_iters=87 sched.periods=[87] data.crop_size=null data.crop_schedule=[[0,48],[72,96],[83,128]] train.val_interval_min=10 train.ema_momentum=0.01"
)
mkdir -p "$out"
for name in "${!runs[@]}"; do
  OMP_NUM_THREADS=1 nohup facesr train configs/study/cpu.yaml --work-dir "$out/$name" \
    --set $arch ${runs[$name]} > "$out/$name.log" 2>&1 &
done
wait
