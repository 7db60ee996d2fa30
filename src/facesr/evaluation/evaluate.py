"""Score predictions against ground truth, in both conventions (see :mod:`facesr.evaluation.metrics`).

* :func:`evaluate_pairs` runs a :class:`facesr.inference.Restorer` over ``(stem, lq, gt)``
  pairs (the trainer's validation, ``facesr eval --checkpoint``);
* :func:`eval_folders` scores saved uint8 predictions against a GT folder (``facesr eval PRED GT``);
* :func:`pair_files` / :func:`load_pairs` match LQ and GT folders by file stem.

Every function returns ``{"mean": {"psnr", "ssim", "psnr_challenge"}, "per_image": {stem: {...}}}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..batching import same_size_batches
from ..data.pairs import load_pairs as _load_pairs
from ..data.pairs import pair_files as pair_files
from ..errors import ImageError
from . import metrics

KEYS = ("psnr", "ssim", "psnr_challenge")


def score(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0, y_only: bool = False) -> dict:
    """All three numbers for one prediction (0-255; float unrounded or uint8) against uint8 GT.

    ``psnr``/``ssim`` use the prediction as given (reference convention); ``psnr_challenge``
    uses it rounded to uint8 (CodaLab scorer, full-image RGB, no crop).
    """
    pred_u8 = pred if pred.dtype == np.uint8 else np.clip(np.rint(pred), 0, 255).astype(np.uint8)
    return {
        "psnr": metrics.psnr(pred, gt, crop_border, y_only),
        "ssim": metrics.ssim(pred, gt, crop_border, y_only),
        "psnr_challenge": metrics.psnr_challenge(pred_u8, gt),
    }


def summarize(per: dict) -> dict:
    """``{"mean": ..., "per_image": ...}`` of per-image scores (per-image sorted by stem)."""
    mean = {k: float(np.mean([v[k] for v in per.values()])) for k in KEYS} if per else {}
    return {"mean": mean, "per_image": dict(sorted(per.items()))}


def check_ssim_size(stem: str, shape, crop_border: int) -> None:
    """ImageError when an image of ``shape`` is too small for SSIM after cropping ``crop_border`` pixels."""
    h, w = shape[0] - 2 * crop_border, shape[1] - 2 * crop_border
    if min(h, w) < 11:
        raise ImageError(
            f"{stem}: image is {shape[1]}x{shape[0]}, too small for SSIM after a border crop of "
            f"{crop_border} (needs 11x11)"
        )


# ----------------------------------------------------------------------------- pairing folders


def load_pairs(*args: Any, crop_border: int | None = None, **kwargs: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """:func:`facesr.data.pairs.load_pairs` (the same arguments, by position or name); with ``crop_border``
    set, images too small for SSIM after that crop are refused too."""
    check = None if crop_border is None else (lambda stem, shape: check_ssim_size(stem, shape, crop_border))
    return _load_pairs(*args, **{**kwargs, "check": check})


# ----------------------------------------------------------------------------- scoring


def eval_folders(
    pred_dir: str, gt_dir: str, crop_border: int = 0, y_only: bool = False, progress=None, max_pixels: int | None = None
) -> dict:
    """Score uint8 predictions in ``pred_dir`` against ``gt_dir`` (matched by stem).

    Unmatched files and size mismatches raise :class:`ImageError` listing them.
    ``progress``, if given, is updated (``.update(1)``) per image.
    """
    loaded = load_pairs(
        pred_dir, gt_dir, 1, "prediction folder", "GT folder", crop_border=crop_border, max_pixels=max_pixels
    )
    per = {}
    for stem, pred, gt in loaded:
        per[stem] = score(pred, gt, crop_border, y_only)
        if progress is not None:
            progress.update(1)
    return summarize(per)


def bicubic_baseline(
    pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], scale: int, crop_border: int = 0, y_only: bool = False
) -> dict:
    """Scores of the plain bicubic x``scale`` upscale of each LQ (uint8, cv2.INTER_CUBIC)."""
    from ..io.images import upscale_classical

    return summarize({stem: score(upscale_classical(lq, scale), gt, crop_border, y_only) for stem, lq, gt in pairs})


def evaluate_pairs(
    restorer,
    pairs: Iterable[tuple[str, np.ndarray, np.ndarray]],
    batch_size: int = 4,
    crop_border: int = 0,
    y_only: bool = False,
    on_image: Callable[[str, np.ndarray], None] | None = None,
    progress=None,
) -> dict:
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
    for group in same_size_batches(
        pairs, lambda p: p[1].shape[:2], batch_size, restorer.MAX_BATCH_PIXELS, regroup=True
    ):
        preds = restorer.predict_float(np.stack([lq for _, lq, _ in group]))
        for (stem, _, gt), pred in zip(group, preds):
            if pred.shape != gt.shape:
                raise ImageError(
                    f"{stem}: prediction {pred.shape[1]}x{pred.shape[0]} does not match GT {gt.shape[1]}x{gt.shape[0]}"
                )
            per[stem] = score(pred, gt, crop_border, y_only)
            if on_image is not None:
                on_image(stem, np.clip(np.rint(pred), 0, 255).astype(np.uint8))
            if progress is not None:
                progress.update(1)
    return summarize(per)
