"""Do the batched and the exact degradation engines make the same LQ?  Paired and unpaired measurements.

Usage::

    python -m benchmarks.degradation_agreement [--n 2000] [--faces DIR] [--json out.json]

Each of the ``n`` samples degrades one 512x512 face (synthetic by default, or the images of
``--faces`` in turn) to 128x128 LQ (uint8 RGB 0-255), and we compare:

* **same records, same noise field**: the exact engine's record of the sample, applied by both
  engines, the batched one with the record's own numpy noise field (``noise="record"``): the
  PSNR between the two LQ images (dB, float64 over all pixels and channels) measures the batched
  engine's approximations alone (JPEG model, float resizes, rounding ties);
* **same records, batched noise** (how training uses the engine: another realisation of the
  same noise): PSNR between the LQ, and the bicubic-x4 PSNR(LQ, GT) of each engine: the
  difference of the means (dB) and the two-sample Kolmogorov-Smirnov statistic;
* **independent draws**: each engine's own sampler (the batched one's counter-based
  parameters against the exact one's ``GeneratorRng([seed, 1, i])``) on the same faces: the
  bicubic PSNR means (with the standard error of their difference) and KS, with the KS value
  that 5% of equal distributions would exceed; and per-parameter KS / frequency differences of
  the two samplers over the same sample numbers.

Targets (issue 20): paired |mean difference| <= 0.02 dB and KS <= 0.03 over >= 2,000 samples.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from facesr.data import degradations as D
from facesr.data.batched_degradations import BatchedDegrader
from facesr.data.batched_params import INTERPS, sample_batch

from .common import hardware_line, synthetic_face


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (float64, all pixels and channels); inf when equal."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def bicubic_psnr(lq: np.ndarray, gt: np.ndarray) -> float:
    """PSNR of the OpenCV INTER_CUBIC upscaling of ``lq`` to ``gt``'s size against ``gt`` (uint8 RGB)."""
    up = cv2.resize(lq, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_CUBIC)
    return psnr(up, gt)


def ks_statistic(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    grid = np.concatenate([a, b])
    return float(
        np.max(
            np.abs(np.searchsorted(a, grid, side="right") / len(a) - np.searchsorted(b, grid, side="right") / len(b))
        )
    )


def ks_critical(n: int, m: int, alpha: float = 0.05) -> float:
    """The KS value two samples of equal distributions exceed with probability ``alpha`` (asymptotic)."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) * math.sqrt((n + m) / (n * m))


def _faces(n: int, folder: str | None, size: int) -> list[np.ndarray]:
    if folder is None:
        return [synthetic_face(10_000 + i, size) for i in range(n)]
    from facesr.data.datasets import prepare_hq
    from facesr.io import list_images, read_rgb

    files = list_images(folder, "--faces")
    return [prepare_hq(read_rgb(files[i % len(files)]), size, "area", str(files[i % len(files)])) for i in range(n)]


def _to_u8(lq: torch.Tensor) -> list[np.ndarray]:
    return list(lq.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())


def run_pairs(faces: list[np.ndarray], cfg: D.DegradationCfg, seed: int, batch: int, device: str = "cpu") -> dict:
    """LQ lists of every engine/mode for the faces: exact, batched with record noise, batched with batched
    noise (same records), exact and batched with their own independent draws."""
    n = len(faces)
    records = [D.sample_params(cfg, faces[i].shape[:2], D.GeneratorRng([seed, 1, i])) for i in range(n)]
    deg = BatchedDegrader(cfg, seed, device)
    out = {"exact": [D.apply_params(f, p) for f, p in zip(faces, records)], "record": [], "batched": [], "own": []}
    for s in range(0, n, batch):
        gt = torch.from_numpy(np.stack(faces[s : s + batch])).permute(0, 3, 1, 2).float()
        recs = records[s : s + batch]
        out["record"] += _to_u8(deg.apply(gt, recs, noise="record"))
        out["batched"] += _to_u8(deg.apply(gt, recs, noise="batched"))
        out["own"] += _to_u8(deg.apply(gt, deg.sample_params(np.arange(s, s + len(recs)), faces[0].shape[:2])))
    out["records"] = records
    return out


def paired_stats(exact: list, other: list, faces: list) -> dict:
    """PSNR between the LQ sets and the bicubic-PSNR comparison of two engines on the same records."""
    between = np.array([psnr(a, b) for a, b in zip(exact, other)])
    pe = np.array([bicubic_psnr(lq, gt) for lq, gt in zip(exact, faces)])
    po = np.array([bicubic_psnr(lq, gt) for lq, gt in zip(other, faces)])
    finite = between[np.isfinite(between)]
    return {
        "psnr_between_median": float(np.median(between)),
        "psnr_between_worst": float(between.min()),
        "psnr_between_mean_finite": float(finite.mean()) if len(finite) else math.inf,
        "identical_images": int((~np.isfinite(between)).sum()),
        "bicubic_mean_exact": float(pe.mean()),
        "bicubic_mean_batched": float(po.mean()),
        "bicubic_mean_diff": float(po.mean() - pe.mean()),
        "bicubic_max_abs_diff": float(np.abs(po - pe).max()),
        "ks": ks_statistic(pe, po),
    }


def sampler_stats(cfg: D.DegradationCfg, seed: int, n: int, in_size=(512, 512)) -> dict:
    """Per-parameter agreement of the two samplers over sample numbers 0..n-1 (KS for continuous values,
    largest frequency difference for choices)."""
    recs = [D.sample_params(cfg, in_size, D.GeneratorRng([seed, 1, i])) for i in range(n)]
    pb = sample_batch(cfg, seed, np.arange(n), in_size)
    cont = {
        "blur.sigma_x": ([r.blur["sigma_x"] for r in recs], pb.sigma_x),
        "down.scale": ([r.down["scale"] for r in recs], pb.down_scale),
        "noise.sigma": ([r.noise["sigma"] for r in recs], pb.noise_sigma),
        "jpeg.quality": ([r.jpeg["quality"] for r in recs], pb.jpeg_quality),
    }
    out = {k: ks_statistic(a, b) for k, (a, b) in cont.items()}
    out["ks_5pct_critical"] = ks_critical(n, n)
    iso_e = np.mean([r.blur["kernel"] == "iso" for r in recs])
    out["blur.iso share diff"] = float(abs(iso_e - pb.blur_iso.mean()))
    for step in ("down", "up"):
        fe = np.array([[getattr(r, step)["interp"] == k for k in INTERPS] for r in recs]).mean(0)
        fb = np.array([getattr(pb, f"{step}_interp") == i for i in range(len(INTERPS))]).T.mean(0)
        out[f"{step}.interp freq diff"] = float(np.abs(fe - fb).max())
    return out


def unpaired_stats(exact: list, own: list, faces: list) -> dict:
    """Each engine with its own draws: bicubic PSNR means, their difference's standard error, KS."""
    pe = np.array([bicubic_psnr(lq, gt) for lq, gt in zip(exact, faces)])
    po = np.array([bicubic_psnr(lq, gt) for lq, gt in zip(own, faces)])
    d = po - pe  # same faces, independent degradations
    return {
        "bicubic_mean_exact": float(pe.mean()),
        "bicubic_mean_batched": float(po.mean()),
        "bicubic_mean_diff": float(d.mean()),
        "diff_std_error": float(d.std(ddof=1) / math.sqrt(len(d))),
        "ks": ks_statistic(pe, po),
        "ks_5pct_critical": ks_critical(len(pe), len(po)),
    }


def measure(n: int, seed: int = 0, batch: int = 24, folder: str | None = None, device: str = "cpu") -> dict:
    cfg = D.DegradationCfg()
    t0 = time.perf_counter()
    faces = _faces(n, folder, cfg.up.size)
    lq = run_pairs(faces, cfg, seed, batch, device)
    return {
        "n": n,
        "faces": folder or "synthetic",
        "seed": seed,
        "same_records_record_noise": paired_stats(lq["exact"], lq["record"], faces),
        "same_records_batched_noise": paired_stats(lq["exact"], lq["batched"], faces),
        "independent_draws": unpaired_stats(lq["exact"], lq["own"], faces),
        "samplers": sampler_stats(cfg, seed, max(n, 20_000)),
        "seconds": time.perf_counter() - t0,
    }


def print_report(r: dict) -> None:
    print(f"{r['n']} samples, {r['faces']} faces, seed {r['seed']}, {r['seconds']:.0f} s")
    for key in ("same_records_record_noise", "same_records_batched_noise", "independent_draws", "samplers"):
        print(f"  {key}:")
        for k, v in r[key].items():
            print(f"    {k:28s} {v:.4f}" if isinstance(v, float) else f"    {k:28s} {v}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="samples (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=24, help="batched engine batch size")
    ap.add_argument("--faces", help="folder of HQ faces (default: synthetic faces)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args(argv)
    print(hardware_line())
    r = measure(a.n, a.seed, a.batch, a.faces, a.device)
    print_report(r)
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
