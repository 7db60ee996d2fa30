"""``facesr demo``: the whole job end to end on a face that ships with facesr.

The bundled public-domain face (512x512, uint8 RGB) is degraded with the course
pipeline at fixed seeds (``facesr degrade`` semantics), restored with the
shipped model, scored against the original (reference PSNR/SSIM, RGB, no
crop) next to bicubic x4, and drawn as a side-by-side picture.
"""
from __future__ import annotations

import sys
import time

import cv2
import numpy as np

from . import metrics
from .assets import sample_face_path
from .data.datasets import degrade_offline, prepare_hq
from .data.degradations import DegradationCfg
from .imageio import read_rgb


def run_demo(a) -> int:
    from .compare import compare_grid
    from .inference import Restorer

    t0 = time.perf_counter()
    path = a.image or sample_face_path()
    hq = prepare_hq(read_rgb(path), 512, "area", str(path))
    restorer = Restorer.from_checkpoint(a.checkpoint, device=a.device)
    rows, table = [], []
    for k in range(a.rows):
        seed = a.seed + k
        lq, params = degrade_offline(hq, DegradationCfg(), seed, "demo")
        bic = cv2.resize(lq, (hq.shape[1], hq.shape[0]), interpolation=cv2.INTER_CUBIC)
        sr = restorer.restore(lq)
        rows.append({"name": f"seed {seed}", "lq": lq, "bicubic": bic, "sr": sr, "gt": hq})
        table.append((seed, params, metrics.psnr(bic, hq), metrics.ssim(bic, hq), metrics.psnr(sr, hq), metrics.ssim(sr, hq)))
    compare_grid(rows, a.out, title="facesr demo: course degradation (left) restored x4")
    print(f"{'seed':>4}  {'degradation':<44} {'bicubic PSNR/SSIM':>18}  {'facesr PSNR/SSIM':>17}")
    for seed, p, bp, bs, sp, ss in table:
        desc = (f"blur {p.blur['kernel']} s={p.blur['sigma_x']:.1f}, x{p.down['scale']:.2f} {p.down['interp']}, "
                f"noise {p.noise['sigma']:.0f}, q{p.jpeg['quality']}") if p.blur and p.down and p.noise and p.jpeg else "-"
        print(f"{seed:>4}  {desc:<44} {bp:8.2f} / {bs:.4f}  {sp:8.2f} / {ss:.4f}")
    mb, ms = np.mean([t[2] for t in table]), np.mean([t[4] for t in table])
    mbs, mss = np.mean([t[3] for t in table]), np.mean([t[5] for t in table])
    print(f"mean  {'':<44} {mb:8.2f} / {mbs:.4f}  {ms:8.2f} / {mss:.4f}   (facesr {ms - mb:+.2f} dB)")
    print(f"wrote {a.out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
