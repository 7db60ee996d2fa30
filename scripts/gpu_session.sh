#!/usr/bin/env bash
# One prepared GPU session (issues 11 and 14), run as: bash scripts/gpu_session.sh  (OUT=results folder).
#  1. three architectures trained concurrently for the same wall-clock budget (STUDY_MIN) on the GPU:
#     MSRResNet-16 (reference), LQResNet C64xB29 ("deep"), LQResNet C96xB12 ("wide");
#  2. meanwhile: the test suite on this machine, and a 1-process torchrun (NCCL) training smoke test;
#  3. the winner (best dev-val-celebahq PSNR) continues alone for STAGE_MIN minutes (--init-from, lr 1e-4);
#  4. inference throughput per precision, then results (fp32 weights, logs) into $OUT.
# Training faces come from .gpudata/ (an ignored copy of ../shared/data; never committed).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
R=$(mktemp -d /tmp/facesr_runs.XXXXXX)  # fresh per session: never reuses an earlier run
STUDY_MIN=${STUDY_MIN:-3.0}; STAGE_MIN=${STAGE_MIN:-3.0}
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/session.log"; }
DATA="data.train_hq_dir=.gpudata/train data.val_hq_dir=.gpudata/val"
say "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader) | $(nproc) CPUs"
say "$(python3 -c 'import torch,cv2,numpy;print("torch",torch.__version__,"cv2",cv2.__version__,"numpy",numpy.__version__)')"

declare -A ARCH=( [msrresnet16]="model.arch=msrresnet model.num_blocks=16"
                  [lq_deep]="model.arch=lqresnet model.mid_channels=64 model.num_blocks=29"
                  [lq_wide]="model.arch=lqresnet model.mid_channels=96 model.num_blocks=12" )
train_one() {  # name, budget, extra overrides...
  local name=$1 budget=$2; shift 2
  python3 -m facesr.cli train configs/study/gpu.yaml --work-dir $R/$name \
    --set $DATA train.time_budget_min=$budget "$@" > $R/$name.out 2>&1
  local rc=$?
  if [ $rc -ne 0 ] && [ ! -f $R/$name/best.json ]; then  # GPU degradation failed? retry with CPU workers
    say "$name failed (rc $rc): $(tail -c 300 $R/$name.out | tr '\n' ' ')"
    rm -rf $R/$name; python3 -m facesr.cli train configs/study/gpu.yaml --work-dir $R/$name \
      --set $DATA train.time_budget_min=$(python3 -c "print(max(0.5, $budget - 0.5))") data.degrade_engine=exact \
            data.num_workers=5 "$@" > $R/$name.retry.out 2>&1
    rc=$?
  fi
  local log=$R/$name.out; [ -f $R/$name.retry.out ] && log=$R/$name.retry.out
  say "$name done rc=$rc: $(tail -c 200 $log | tr '\r\n' '  ' | tail -c 200)"
}
say "study: 3 runs x ${STUDY_MIN} min, concurrently"
for n in msrresnet16 lq_deep lq_wide; do train_one $n $STUDY_MIN ${ARCH[$n]} & done

# Concurrent light checks (CPU mostly): the test suite, and a 1-process torchrun (NCCL) smoke test.
( timeout 150 nice -n 5 python3 -m pytest -q -x -p no:cacheprovider tests > $OUT/pytest.log 2>&1;
  echo "pytest rc=$?" >> $OUT/pytest.log ) &
( timeout 120 torchrun --standalone --nproc_per_node=1 -m facesr.cli train configs/study/gpu.yaml \
    --work-dir $R/nccl --set $DATA train.max_iters=30 train.time_budget_min=null train.val_interval=30 \
    train.ckpt_interval=30 data.num_workers=1 > $R/nccl.out 2>&1; echo "torchrun nccl rc=$?" >> $R/nccl.out ) &
wait
say "$(tail -n 2 $OUT/pytest.log | tr '\n' ' ')"; say "$(tail -n 2 $R/nccl.out | tr '\r\n' '  ')"

WIN=$(python3 - <<PY
import json, pathlib
best = {}
for n in ("msrresnet16", "lq_deep", "lq_wide"):
    vals = [json.loads(l) for l in pathlib.Path("$R/%s/log.jsonl" % n).read_text().splitlines()] if pathlib.Path("$R/%s/log.jsonl" % n).exists() else []
    v = [r for r in vals if r.get("kind") == "val"]
    if v:  # the stage continues from best.safetensors, whose raw weights are ranked by psnr (best_metric)
        best[n] = max(r.get("psnr", 0) for r in v)
print(max(best, key=best.get) if best else "none")
PY
)
say "winner: $WIN"
if [ "$WIN" != none ]; then
  python3 -m facesr.cli train configs/study/gpu.yaml --work-dir $R/stage_gpu --init-from $R/$WIN/best.safetensors \
    --set $DATA train.time_budget_min=$STAGE_MIN optim.lr=1.0e-4 ${ARCH[$WIN]} > $R/stage_gpu.out 2>&1
  say "stage_gpu rc=$?: $(tail -c 300 $R/stage_gpu.out | tr '\r\n' '  ' | tail -c 250)"
fi

timeout 60 python3 scripts/gpu_bench.py $R > $OUT/bench.txt 2>&1; say "bench rc=$?"
python3 - <<PY
import json, pathlib
from facesr.models.weights import read_weights, save_weights
from facesr.models import build_model
R = pathlib.Path("$R"); OUT = pathlib.Path("$OUT")
for n in ("msrresnet16", "lq_deep", "lq_wide", "stage_gpu"):
    p = R / n / "best.safetensors"
    if not p.exists():
        continue
    val = json.loads((R / n / "best.json").read_text())["val"]
    use_ema = val.get("psnr_ema", -1) > val.get("psnr", 0)
    lw = read_weights(p, ema=use_ema)
    m = build_model(lw.arch, **lw.arch_config); m.load_state_dict(lw.state_dict)
    meta = {k: v for k, v in lw.metadata.items() if k not in ("format", "arch", "arch_config")}
    meta["weights"] = "ema" if use_ema else "raw"
    save_weights(OUT / f"{n}.safetensors", m, arch=lw.arch, metadata=meta)
    print(n, "ema" if use_ema else "raw", val)
PY
tar czf $OUT/logs.tar.gz -C $R --exclude='checkpoints' --exclude='*.safetensors' . 2>/dev/null
say "done"
