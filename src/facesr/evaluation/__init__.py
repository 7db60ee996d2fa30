"""Scoring: PSNR/SSIM in the MMagic and challenge conventions (:mod:`.metrics`) and evaluation runs (:mod:`.evaluate`)."""

from . import metrics
from .evaluate import (
    KEYS,
    bicubic_baseline,
    check_ssim_size,
    eval_folders,
    evaluate_pairs,
    load_pairs,
    pair_files,
    score,
    summarize,
)

__all__ = [
    "metrics",
    "KEYS",
    "bicubic_baseline",
    "check_ssim_size",
    "eval_folders",
    "evaluate_pairs",
    "load_pairs",
    "pair_files",
    "score",
    "summarize",
]
