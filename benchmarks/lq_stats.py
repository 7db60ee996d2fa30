"""How close are our LQ images to the challenge's?  Bicubic-x4 PSNR and Laplacian sharpness of an LQ folder.

Usage::

    facesr degrade ../shared/data/dev-val-hq /tmp/dv_lq --seed 0 --copies 5
    python benchmarks/lq_stats.py /tmp/dv_lq ../shared/data/dev-val-hq [--json stats.json]

For each LQ image (uint8 RGB, 0-255, 128x128) it computes

* the RGB PSNR (dB; float64, no crop, as the challenge scorer) of its OpenCV
  INTER_CUBIC x4 upscaling against the matching HQ image (uint8 RGB, 512x512);
* its mean absolute Laplacian: ``cv2.Laplacian`` (3x3 aperture) on the float32
  LQ (0-255 scale), averaged over pixels and channels (0-255 units).

LQ files are matched to HQ files through ``params.jsonl`` when the folder has
one (as ``facesr degrade`` writes it), otherwise by stem, ``<stem>_<k>``
copies included.  The table puts the numbers measured on the challenge's 400
validation pairs (from ../shared/data/README.md) beside ours.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import cv2
import numpy as np

from facesr.io import list_images, read_rgb

# Challenge validation set (400 pairs), as documented with the development data.
REFERENCE = {
    "bicubic_psnr": {"mean": 27.26, "std": 2.38, "p5": 23.24, "p25": 25.74, "p50": 27.30, "p75": 28.77, "p95": 30.97},
    "laplacian": {"mean": 14.33, "p5": 5.87, "p50": 14.18, "p95": 24.56},
}


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images, float64, all pixels and channels."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def mean_abs_laplacian(lq: np.ndarray) -> float:
    """Mean |Laplacian| of a uint8 image computed on float32 (0-255 units)."""
    return float(np.mean(np.abs(cv2.Laplacian(lq.astype(np.float32), cv2.CV_32F))))


def match_hq(lq_dir: Path, hq_dir: Path) -> list[tuple[Path, Path]]:
    """(lq, hq) path pairs: via params.jsonl, else by stem (``<stem>`` or ``<stem>_<k>``)."""
    hq = {p.stem: p for p in list_images(hq_dir, "HQ folder")}
    params = lq_dir / "params.jsonl"
    pairs, missing = [], []
    if params.is_file():
        for line in params.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                h = hq_dir / rec["hq"]
                (pairs if h.is_file() else missing).append((lq_dir / rec["file"], h))
    else:
        for p in list_images(lq_dir, "LQ folder"):
            stem = p.stem if p.stem in hq else re.sub(r"_\d+$", "", p.stem)
            if stem in hq:
                pairs.append((p, hq[stem]))
            else:
                missing.append((p, None))
    if missing:
        sys.exit(f"lq_stats: no HQ image for {len(missing)} LQ file(s), e.g. {missing[0][0].name}")
    if not pairs:
        sys.exit(f"lq_stats: no LQ images in {lq_dir}")
    return pairs


def summarise(values: list[float], keys=("mean", "std", "p5", "p25", "p50", "p75", "p95")) -> dict:
    v = np.asarray(values, np.float64)
    out = {"mean": float(v.mean()), "std": float(v.std())}
    for q in (5, 25, 50, 75, 95):
        out[f"p{q}"] = float(np.percentile(v, q))
    return {k: out[k] for k in keys}


def measure(lq_dir: Path, hq_dir: Path) -> dict:
    psnrs, laps = [], []
    for lq_p, hq_p in match_hq(lq_dir, hq_dir):
        lq, hq = read_rgb(lq_p), read_rgb(hq_p)
        up = cv2.resize(lq, (lq.shape[1] * 4, lq.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
        if up.shape != hq.shape:
            sys.exit(
                f"lq_stats: {lq_p.name} x4 is {up.shape[1]}x{up.shape[0]}, HQ {hq_p.name} is {hq.shape[1]}x{hq.shape[0]}"
            )
        psnrs.append(psnr_rgb(up, hq))
        laps.append(mean_abs_laplacian(lq))
    return {"n": len(psnrs), "bicubic_psnr": summarise(psnrs), "laplacian": summarise(laps)}


def print_table(stats: dict) -> None:
    print(f"LQ images: {stats['n']}")
    print(f"{'statistic':<26}{'ours':>9}{'challenge':>11}{'diff':>9}")
    for group, label in (("bicubic_psnr", "bicubic x4 PSNR (dB)"), ("laplacian", "mean |Laplacian|")):
        for k, v in stats[group].items():
            ref = REFERENCE[group].get(k)
            ref_s = f"{ref:>11.2f}" if ref is not None else f"{'-':>11}"
            diff_s = f"{v - ref:>+9.2f}" if ref is not None else f"{'':>9}"
            print(f"{label + ' ' + k:<26}{v:>9.2f}{ref_s}{diff_s}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lq_dir")
    ap.add_argument("hq_dir")
    ap.add_argument("--json", help="also write the statistics here")
    a = ap.parse_args(argv)
    stats = measure(Path(a.lq_dir), Path(a.hq_dir))
    print_table(stats)
    if a.json:
        Path(a.json).write_text(json.dumps({"ours": stats, "challenge": REFERENCE}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
