"""The demo picture: the bundled sample face degraded at fixed seeds, restored, scored and drawn.

The bundled public-domain face (512x512, uint8 RGB) is degraded with the course
pipeline at fixed seeds (``facesr degrade`` semantics), restored with a
:class:`~facesr.inference.Restorer`, scored against the original (reference
PSNR/SSIM, RGB, no crop) next to bicubic x4, and drawn as a side-by-side sheet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..data.datasets import degrade_offline, prepare_hq
from ..data.degradations import DegradationCfg, DegradationParams
from ..evaluation import metrics
from ..io.images import read_rgb, upscale_classical
from .compare import compare_grid

TITLE = "facesr demo: course degradation (left) restored x4"


@dataclass
class DemoRow:
    """One degradation seed: its sampled parameters and the PSNR/SSIM of bicubic and of the model."""

    seed: int
    params: DegradationParams
    bicubic_psnr: float
    bicubic_ssim: float
    sr_psnr: float
    sr_ssim: float

    def describe(self) -> str:
        p = self.params
        if not (p.blur and p.down and p.noise and p.jpeg):
            return "-"
        return (
            f"blur {p.blur['kernel']} s={p.blur['sigma_x']:.1f}, x{p.down['scale']:.2f} {p.down['interp']}, "
            f"noise {p.noise['sigma']:.0f}, q{p.jpeg['quality']}"
        )


def make_demo(
    restorer,
    image_path: str | os.PathLike,
    seeds: list[int],
    out_path: str | os.PathLike | None = None,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, list[DemoRow]]:
    """Degrade the HQ face at ``image_path`` with each seed, restore it; return (sheet, rows).

    The sheet (uint8 RGB) is also written to ``out_path`` when given (PNG, JPEG or WebP by its ending).
    ``max_pixels``: the decoder's cap on the HQ image (None = its default).
    """
    hq = prepare_hq(read_rgb(image_path, max_pixels), 512, "area", str(image_path))
    panels, rows = [], []
    for seed in seeds:
        lq, params = degrade_offline(hq, DegradationCfg(), seed, "demo")
        bic = upscale_classical(lq, hq.shape[0] // lq.shape[0])
        sr = restorer.restore(lq)
        panels.append({"name": f"seed {seed}", "lq": lq, "bicubic": bic, "sr": sr, "gt": hq})
        rows.append(
            DemoRow(
                seed, params, metrics.psnr(bic, hq), metrics.ssim(bic, hq), metrics.psnr(sr, hq), metrics.ssim(sr, hq)
            )
        )
    sheet = compare_grid(panels, out_path, title=TITLE)
    return sheet, rows
