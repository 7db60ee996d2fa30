"""Turn a training run into the shipped default model (how src/facesr/weights/ was made).

    python scripts/ship_model.py work_dirs/cpu_ship

Takes RUN/best.safetensors, keeps the better of its raw and EMA weights by the
validation PSNR logged at that iteration, stores them in fp32 (so that
``facesr train --init-from`` continues from exactly these weights; ``--fp16``
halves the file after checking that outputs stay within one 8-bit level on the
run's validation pairs), and copies the run's config.yaml and log.jsonl next to
the weights.  The lineage recorded by ``--init-from`` stays in the metadata.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from facesr.config import load_config
from facesr.data.datasets import load_val_pairs
from facesr.inference import Restorer
from facesr.models import build_model, read_weights, save_weights
from facesr.models.weights import load_into

DEST = Path(__file__).resolve().parents[1] / "src" / "facesr" / "weights"


def main(run: str, fp16: bool = False) -> None:
    run_dir = Path(run)
    best = json.loads((run_dir / "best.json").read_text())
    val = best["val"]
    use_ema = val.get("psnr_ema", -1) > val["psnr"]
    lw = read_weights(run_dir / "best.safetensors", ema=use_ema)
    model = build_model(lw.arch, **lw.arch_config)
    load_into(model, lw.state_dict)
    DEST.mkdir(parents=True, exist_ok=True)
    out = DEST / "facesr_default.safetensors"
    meta = {
        "source_run": run_dir.name,
        "iter": best["iter"],
        "weights": "ema" if use_ema else "raw",
        "val_psnr": val["psnr_ema" if use_ema else "psnr"],
        "val_ssim": val["ssim_ema" if use_ema else "ssim"],
        "storage": "float16" if fp16 else "float32",
    }
    if "lineage" in lw.metadata:
        meta["lineage"] = lw.metadata["lineage"]
    save_weights(out, model, arch=lw.arch, metadata=meta, dtype=torch.float16 if fp16 else None)
    if not fp16:
        shutil.copy(run_dir / "config.yaml", DEST / "facesr_default_config.yaml")
        shutil.copy(run_dir / "log.jsonl", DEST / "facesr_default_log.jsonl")
        print(json.dumps({**meta, "bytes": out.stat().st_size}))
        return

    cfg = load_config(run_dir / "config.yaml")
    pairs = load_val_pairs(cfg.data, cfg.degradation, cfg.model.upscale_factor)
    r32 = Restorer(model, device="cpu")
    r16 = Restorer.from_checkpoint(out, device="cpu")
    worst = max(int(np.abs(r32.restore(lq).astype(int) - r16.restore(lq).astype(int)).max()) for _, lq, _ in pairs)
    if worst > 1:
        raise SystemExit(f"fp16 storage changes outputs by {worst} levels; keep fp32")
    shutil.copy(run_dir / "config.yaml", DEST / "facesr_default_config.yaml")
    shutil.copy(run_dir / "log.jsonl", DEST / "facesr_default_log.jsonl")
    print(json.dumps({**meta, "fp16_vs_fp32_max_level_diff": worst, "bytes": out.stat().st_size}))


if __name__ == "__main__":
    main(sys.argv[1], fp16="--fp16" in sys.argv[2:])
