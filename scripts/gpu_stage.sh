#!/usr/bin/env bash
# The shipped model's GPU stage: warm-start from WEIGHTS and train MODEL for BUDGET minutes alone on the GPU,
# with the exact (CPU) degradation in 15 DataLoader workers; then the best weights (fp32, raw or EMA,
# whichever validated higher) and the logs go to $OUT.  Run as: bash scripts/gpu_stage.sh WEIGHTS
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"; R=$(mktemp -d /tmp/facesr_runs.XXXXXX)
INIT=$1; BUDGET=${BUDGET:-7.0}; MODEL=${MODEL:-"model.arch=lqresnet model.mid_channels=96 model.num_blocks=12"}
T0=$(date +%s); say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/session.log"; }
say "$(nvidia-smi --query-gpu=name --format=csv,noheader) | $(nproc) CPUs | init $INIT | $MODEL | $BUDGET min"
timeout -s INT $(python3 -c "print(int($BUDGET * 60 * 1.15 + 60))") \
  python3 -m facesr.cli train configs/study/gpu.yaml --work-dir $R/stage2 --init-from "$INIT" \
  --set data.train_hq_dir=.gpudata/train data.val_hq_dir=.gpudata/val data.degrade_on=cpu data.num_workers=15 \
        train.time_budget_min=$BUDGET train.ckpt_interval=2000 $MODEL > $R/stage2.out 2>&1
say "stage2 rc=$?: $(tail -c 300 $R/stage2.out | tr '\r\n' '  ' | tail -c 250)"
python3 - <<PY
import json, pathlib
from facesr.models.weights import read_weights, save_weights
from facesr.models import build_model
R = pathlib.Path("$R/stage2"); OUT = pathlib.Path("$OUT")
p, use_ema, val = R / "best.safetensors", False, {}
if p.exists():
    val = json.loads((R / "best.json").read_text())["val"]
    use_ema = val.get("psnr_ema", -1) > val.get("psnr", 0)
else:  # stopped before its final validation: take the newest checkpoint
    p = sorted((R / "checkpoints").glob("iter_*.pt"), key=lambda q: int(q.stem[5:]))[-1]
lw = read_weights(p, ema=use_ema)
m = build_model(lw.arch, **lw.arch_config); m.load_state_dict(lw.state_dict)
meta = {k: v for k, v in lw.metadata.items() if k not in ("format", "arch", "arch_config")}
meta["weights"] = "ema" if use_ema else "raw"
save_weights(OUT / "stage2.safetensors", m, arch=lw.arch, metadata=meta)
print(p, "ema" if use_ema else "raw", val)
PY
tar czf $OUT/stage2_logs.tar.gz -C $R --exclude='checkpoints' --exclude='*.safetensors' stage2 stage2.out
say done
