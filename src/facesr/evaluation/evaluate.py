"""Score predictions against ground truth, in both conventions (see :mod:`facesr.evaluation.metrics`).

* :func:`evaluate_pairs` runs a :class:`facesr.inference.Restorer` over ``(stem, lq, gt)``
  pairs (the trainer's validation, ``facesr eval --checkpoint``);
* :func:`eval_folders` scores saved uint8 predictions against a GT folder (``facesr eval PRED GT``);
* :func:`pair_files` / :func:`load_pairs` match LQ and GT folders by file stem.

Every function returns ``{"mean": {"psnr", "ssim", "psnr_challenge"}, "per_image": {stem: {...}}}``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..batching import same_size_batches
from ..errors import ImageError
from ..io.files import first, list_images
from . import metrics

KEYS = ("psnr", "ssim", "psnr_challenge")


def score(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0, y_only: bool = False) -> dict:
    """All three numbers for one prediction (0-255; float unrounded or uint8) against uint8 GT.

    ``psnr``/``ssim`` use the prediction as given (reference convention); ``psnr_challenge``
    uses it rounded to uint8 (CodaLab scorer, full-image RGB, no crop).
    """
    pred_u8 = pred if pred.dtype == np.uint8 else np.clip(np.rint(pred), 0, 255).astype(np.uint8)
    return {"psnr": metrics.psnr(pred, gt, crop_border, y_only),
            "ssim": metrics.ssim(pred, gt, crop_border, y_only),
            "psnr_challenge": metrics.psnr_challenge(pred_u8, gt)}


def summarize(per: dict) -> dict:
    """``{"mean": ..., "per_image": ...}`` of per-image scores (per-image sorted by stem)."""
    mean = {k: float(np.mean([v[k] for v in per.values()])) for k in KEYS} if per else {}
    return {"mean": mean, "per_image": dict(sorted(per.items()))}


def check_ssim_size(stem: str, shape, crop_border: int) -> None:
    """ImageError when an image of ``shape`` is too small for SSIM after cropping ``crop_border`` pixels."""
    h, w = shape[0] - 2 * crop_border, shape[1] - 2 * crop_border
    if min(h, w) < 11:
        raise ImageError(f"{stem}: image is {shape[1]}x{shape[0]}, too small for SSIM after a border crop of "
                         f"{crop_border} (needs 11x11)")


# ----------------------------------------------------------------------------- pairing folders

def pair_files(lq_dir: str | os.PathLike, gt_dir: str | os.PathLike, lq_what: str = "LQ folder",
               gt_what: str = "GT folder") -> list[tuple[Path, Path]]:
    """Match LQ and GT images by file stem; refuse unmatched files with a list of them."""
    lq = {p.stem: p for p in list_images(lq_dir, lq_what)}
    gt = {p.stem: p for p in list_images(gt_dir, gt_what)}
    only_lq, only_gt = sorted(set(lq) - set(gt)), sorted(set(gt) - set(lq))
    if only_lq or only_gt:
        parts = [f"{len(only)} in {d} without a partner: {first(only)}"
                 for only, d in ((only_lq, lq_dir), (only_gt, gt_dir)) if only]
        raise ImageError("unmatched pairs: " + "; ".join(parts))
    return [(lq[s], gt[s]) for s in sorted(lq)]


def load_pairs(lq_dir: str | os.PathLike, gt_dir: str | os.PathLike, scale: int, lq_what: str = "LQ folder",
               gt_what: str = "GT folder", crop_border: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(stem, lq, gt)]`` uint8 RGB, matched by stem, every GT exactly ``scale`` x its LQ (else ImageError).

    ``scale=1`` pairs predictions with GT.  With ``crop_border`` set, images too small for SSIM
    after that crop are refused too.
    """
    from ..io.images import read_rgb
    out, bad = [], []
    for lq_p, gt_p in pair_files(lq_dir, gt_dir, lq_what, gt_what):
        lq, gt = read_rgb(lq_p), read_rgb(gt_p)
        if (lq.shape[0] * scale, lq.shape[1] * scale) != gt.shape[:2]:
            bad.append(f"{lq_p.stem} ({lq.shape[1]}x{lq.shape[0]} vs GT {gt.shape[1]}x{gt.shape[0]})")
        elif crop_border is not None:
            check_ssim_size(lq_p.stem, gt.shape, crop_border)
        out.append((lq_p.stem, lq, gt))
    if bad:
        what = "prediction(s) differ in size from their GT" if scale == 1 else f"pair(s) whose GT is not x{scale} the LQ"
        raise ImageError(f"{len(bad)} {what}: {first(bad)}")
    return out


# ----------------------------------------------------------------------------- scoring

def eval_folders(pred_dir: str, gt_dir: str, crop_border: int = 0, y_only: bool = False, progress=None) -> dict:
    """Score uint8 predictions in ``pred_dir`` against ``gt_dir`` (matched by stem).

    Unmatched files and size mismatches raise :class:`ImageError` listing them.
    ``progress``, if given, is updated (``.update(1)``) per image.
    """
    loaded = load_pairs(pred_dir, gt_dir, 1, "prediction folder", "GT folder", crop_border)
    per = {}
    for stem, pred, gt in loaded:
        per[stem] = score(pred, gt, crop_border, y_only)
        if progress is not None:
            progress.update(1)
    return summarize(per)


def bicubic_baseline(pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], scale: int, crop_border: int = 0,
                     y_only: bool = False) -> dict:
    """Scores of the plain bicubic x``scale`` upscale of each LQ (uint8, cv2.INTER_CUBIC)."""
    from ..io.images import upscale_classical
    return summarize({stem: score(upscale_classical(lq, scale), gt, crop_border, y_only) for stem, lq, gt in pairs})


def evaluate_pairs(restorer, pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], batch_size: int = 4,
                   crop_border: int = 0, y_only: bool = False,
                   on_image: Callable[[str, np.ndarray], None] | None = None, progress=None) -> dict:
    """Score a :class:`facesr.inference.Restorer` on ``(stem, lq uint8, gt uint8)`` pairs.

    ``psnr``/``ssim`` in the reference convention (the unrounded prediction,
    :meth:`~facesr.inference.Restorer.predict_float`), ``psnr_challenge`` on the
    uint8-rounded prediction (CodaLab scorer).  Same-size LQ images share forward passes
    (at most ``batch_size``, within the restorer's ``MAX_BATCH_PIXELS``; no tiling).
    ``on_image(stem, pred_uint8)`` is called for each prediction (e.g. to save it);
    ``progress.update(1)`` per image.
    """
    per = {}
    pairs = list(pairs)
    for group in same_size_batches(pairs, lambda p: p[1].shape[:2], batch_size, restorer.MAX_BATCH_PIXELS,
                                   regroup=True):
        preds = restorer.predict_float(np.stack([lq for _, lq, _ in group]))
        for (stem, _, gt), pred in zip(group, preds):
            if pred.shape != gt.shape:
                raise ImageError(f"{stem}: prediction {pred.shape[1]}x{pred.shape[0]} does not match GT "
                                 f"{gt.shape[1]}x{gt.shape[0]}")
            per[stem] = score(pred, gt, crop_border, y_only)
            if on_image is not None:
                on_image(stem, np.clip(np.rint(pred), 0, 255).astype(np.uint8))
            if progress is not None:
                progress.update(1)
    return summarize(per)
