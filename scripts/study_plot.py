"""Figure for docs/model-study.md: validation PSNR against GPU wall-clock minutes.

    python scripts/study_plot.py --out docs/images/model_study.png

Reads docs/model-lineage/: the three study runs (3 minutes each, run concurrently on one H100) and the
shipped model's stages 2 and 3, each warm-started from the previous one (--init-from). PSNR is the
reference convention on dev-val-celebahq (100 faces, degraded with seed 0), raw weights, as logged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1] / "docs" / "model-lineage"
BICUBIC = 26.5585  # facesr eval's bicubic baseline on the same 100 pairs


def final_psnr(run: Path) -> float:
    vals = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if '"val"' in x]
    return vals[-1]["psnr"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    study = {
        "MSRResNet-16": ROOT / "study" / "msrresnet16",
        "LQResNet 64x29": ROOT / "study" / "lq_deep",
        "LQResNet 96x12": ROOT / "stage1",
    }
    for (label, run), marker in zip(study.items(), "osD"):
        ax.scatter([3], [final_psnr(run)], marker=marker, s=50, label=f"study, 3 min: {label}", zorder=3)
    xs = [3, 6, 13]
    ys = [final_psnr(ROOT / s) for s in ("stage1", "stage2", "stage3")]
    ax.plot(xs, ys, "-", color="tab:green", label="shipped model: stages 1 -> 2 -> 3 (--init-from)")
    for x, y in zip(xs, ys):
        ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(6, -12))
    ax.axhline(BICUBIC, color="grey", ls=":", label="bicubic x4")
    ax.axhline(27.9487, color="tab:red", ls="--", label="facesr 0.1 (MSRResNet-16, 1.6 CPU-hours)")
    ax.set_xlabel("GPU wall-clock minutes (stage 1: 3 runs sharing one H100)")
    ax.set_ylabel("PSNR on dev-val-celebahq (dB)")
    ax.set_title("Equal-time study and the shipped model's lineage")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
