"""LQ/GT folder pairs matched by file stem (validation data, ``facesr eval``); uint8 RGB in memory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ImageError
from ..io.files import first, list_images
from ..io.images import read_rgb


def pair_files(
    lq_dir: str | os.PathLike, gt_dir: str | os.PathLike, lq_what: str = "LQ folder", gt_what: str = "GT folder"
) -> list[tuple[Path, Path]]:
    """Match LQ and GT images by file stem; refuse unmatched files with a list of them."""
    lq = {p.stem: p for p in list_images(lq_dir, lq_what)}
    gt = {p.stem: p for p in list_images(gt_dir, gt_what)}
    only_lq, only_gt = sorted(set(lq) - set(gt)), sorted(set(gt) - set(lq))
    if only_lq or only_gt:
        parts = [
            f"{len(only)} in {d} without a partner: {first(only)}"
            for only, d in ((only_lq, lq_dir), (only_gt, gt_dir))
            if only
        ]
        raise ImageError("unmatched pairs: " + "; ".join(parts))
    return [(lq[s], gt[s]) for s in sorted(lq)]


def load_pairs(
    lq_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    scale: int,
    lq_what: str = "LQ folder",
    gt_what: str = "GT folder",
    check: Callable[[str, tuple], None] | None = None,
    max_pixels: int | None = None,
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(stem, lq, gt)]`` uint8 RGB, matched by stem, every GT exactly ``scale`` x its LQ (else ImageError).

    ``scale=1`` pairs predictions with GT.  ``check(stem, gt_shape)``, if given, may refuse a pair of the
    right size (``facesr eval`` refuses images too small for SSIM).  ``max_pixels``: the decoder's cap
    (:func:`facesr.io.images.read_image`; None = its default).
    """
    out, bad = [], []
    for lq_p, gt_p in pair_files(lq_dir, gt_dir, lq_what, gt_what):
        lq, gt = read_rgb(lq_p, max_pixels), read_rgb(gt_p, max_pixels)
        if (lq.shape[0] * scale, lq.shape[1] * scale) != gt.shape[:2]:
            bad.append(f"{lq_p.stem} ({lq.shape[1]}x{lq.shape[0]} vs GT {gt.shape[1]}x{gt.shape[0]})")
        elif check is not None:
            check(lq_p.stem, gt.shape)
        out.append((lq_p.stem, lq, gt))
    if bad:
        what = (
            "prediction(s) differ in size from their GT" if scale == 1 else f"pair(s) whose GT is not x{scale} the LQ"
        )
        raise ImageError(f"{len(bad)} {what} ({lq_dir} -> {gt_dir}): {first(bad)}")
    return out
