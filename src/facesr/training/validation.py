"""Validation during training: score the weights, keep the best.

Scoring goes through the public inference API (:class:`~facesr.inference.Restorer` and
:func:`~facesr.evaluation.evaluate_pairs`), so a validation PSNR is what ``facesr eval`` reports
for the same weights and precision.  ``train.val_weights`` picks the raw weights, the EMA copy or
both (keys ``psnr``, ``psnr_ema``, ...); ``train.best_metric`` (higher is better for every metric)
decides the best, written as ``best.safetensors`` (both weights) and ``best.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn

from ..errors import OutputError, TrainingError, one_line
from ..evaluation import evaluate_pairs
from ..inference import Restorer
from ..io.files import atomic_write_bytes
from ..models import save_weights
from .state import check_free_space, keep_note

#: ``(stem, lq uint8 HxWx3, gt uint8 HxWx3)`` as :func:`facesr.data.datasets.load_val_pairs` loads them
ValPair = tuple[str, np.ndarray, np.ndarray]


def _no_checkpoint() -> Path | None:
    return None


@dataclass
class BestWeights:
    """Where and how the best weights are written: ``work_dir/best.safetensors`` (``model``, with the
    ``ema`` copy when there is one, and the run's ``lineage``) and ``work_dir/best.json``.

    ``last_good``: the run's last good checkpoint, named when the disk is full.
    """

    work_dir: Path
    model: nn.Module
    ema: nn.Module | None
    arch: str
    lineage: list
    last_good: Callable[[], Path | None] = _no_checkpoint

    def save(self, rec: dict, best: dict) -> None:
        """Write the weights as the best of validation record ``rec`` (both files atomically; free space
        checked first; a full disk is one TrainingError line and the earlier best stays whole)."""
        path = self.work_dir / "best.safetensors"
        check_free_space(self.work_dir, self.bytes_needed(), path.name, self.last_good())
        try:
            save_weights(
                path,
                self.model,
                arch=self.arch,
                ema=self.ema,
                metadata={
                    "iter": rec["iter"],
                    "val": {k: v for k, v in rec.items() if k != "kind"},
                    "lineage": self.lineage,
                },
            )
            atomic_write_bytes(self.work_dir / "best.json", json.dumps({**best, "val": rec}, indent=2).encode())
        except (OutputError, OSError, SafetensorError) as exc:
            why = str(exc).split(": ", 1)[-1] if isinstance(exc, OutputError) else one_line(exc, 120)
            raise TrainingError(
                f"cannot write the best weights in {self.work_dir} ({why}); {keep_note(self.last_good())}"
            ) from None

    def bytes_needed(self) -> int:
        """About the size of ``best.safetensors``: float32 weights (and EMA copy), plus 5% and 1 MB."""
        n = sum(t.numel() for t in self.model.state_dict().values())
        if self.ema is not None:
            n *= 2
        return int(4 * n * 1.05) + (1 << 20)


class Validator:
    """Scores ``models`` (``[(key suffix, module)]``: ``""`` raw, ``"_ema"`` EMA) on ``pairs``.

    ``best``: the best so far (``{"metric", "value", "iter"}``, from a resumed checkpoint) or None.
    Without ``pairs`` (no validation data, or a rank other than 0) it is false and never runs.
    """

    def __init__(
        self,
        pairs: Sequence[ValPair],
        models: Sequence[tuple[str, nn.Module]],
        out: BestWeights,
        *,
        device: torch.device,
        precision: str,
        channels_last: bool,
        best_metric: str,
        best: dict | None = None,
    ):
        self.pairs, self.models, self.out = list(pairs), list(models), out
        self.device, self.precision, self.channels_last = device, precision, channels_last
        self.best_metric, self.best = best_metric, best

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __call__(self, it: int, train_s: float) -> dict:
        """Validate after ``it`` iterations (``train_s`` training seconds); a new best is written.

        Returns the ``val`` log record: every model's scores, suffixed by its key, and ``train_s``.
        """
        return self.keep(self.evaluate(it, train_s))

    def evaluate(self, it: int, train_s: float) -> dict:
        """The ``val`` record of ``it`` (scores only: nothing is kept or written, so it may be abandoned)."""
        rec: dict = {"iter": it, "kind": "val"}
        for suffix, module in self.models:
            rec.update({k + suffix: v for k, v in self.score(module).items()})
        rec["train_s"] = train_s
        return rec

    def keep(self, rec: dict) -> dict:
        """Update the best with record ``rec`` and write its weights when it is a new best; returns ``rec``."""
        best = self.update_best(rec)
        if best is not None:
            self.out.save(rec, best)
        return rec

    def score(self, module: nn.Module) -> dict:
        """Mean scores (psnr, ssim, psnr_challenge) of ``module``; its train/eval mode is restored."""
        was_training = module.training
        try:
            restorer = Restorer(module, device=self.device, precision=self.precision, channels_last=self.channels_last)
            return evaluate_pairs(restorer, self.pairs)["mean"]
        finally:
            module.train(was_training)

    def update_best(self, rec: dict) -> dict | None:
        """The new best if ``rec`` beats the best so far on ``best_metric`` (higher is better), else None."""
        value = rec[self.best_metric]  # one of rec's keys: checked when the config was loaded
        if self.best is not None and not value > self.best["value"]:
            return None
        self.best = {"metric": self.best_metric, "value": value, "iter": rec["iter"]}
        return self.best
