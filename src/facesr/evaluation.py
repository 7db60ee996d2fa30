"""Run a model over LQ/GT pairs and score it in both conventions (see :mod:`facesr.metrics`).

Used by the trainer's validation and by ``facesr eval --checkpoint``.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from . import metrics


def autocast_ctx(device: torch.device, amp: str):
    """``torch.autocast`` for 'bf16'/'fp16', or a no-op for 'none'."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.inference_mode()
def predict_float(model: nn.Module, lq_batch: np.ndarray, device: torch.device, amp: str = "none",
                  channels_last: bool = False) -> np.ndarray:
    """uint8 (N, h, w, 3) -> float32 (N, H, W, 3) on the 0-255 scale, clamped, **not rounded**."""
    x = torch.from_numpy(np.ascontiguousarray(lq_batch)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast_ctx(device, amp):
        y = model(x)
    y = y.float().clamp_(0, 1).mul_(255.0)
    return y.permute(0, 2, 3, 1).cpu().numpy()


def evaluate_pairs(model: nn.Module, pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], device: torch.device,
                   amp: str = "none", batch_size: int = 4, crop_border: int = 0, y_only: bool = False,
                   channels_last: bool = False, on_image: Callable[[str, np.ndarray], None] | None = None,
                   progress=None) -> dict:
    """Score ``model`` on ``(stem, lq uint8, gt uint8)`` pairs.

    Returns ``{"mean": {"psnr", "ssim", "psnr_challenge"}, "per_image": {stem: {...}}}``:
    ``psnr``/``ssim`` in the reference convention (unrounded prediction),
    ``psnr_challenge`` on the uint8-rounded prediction (CodaLab scorer).
    ``on_image(stem, pred_uint8)`` is called for each prediction (e.g. to save it).
    """
    was_training = model.training
    model.eval()
    per = {}
    pairs = list(pairs)
    # Group same-size LQ so batches stack.
    order = sorted(range(len(pairs)), key=lambda i: pairs[i][1].shape)
    i = 0
    try:
        while i < len(order):
            shape = pairs[order[i]][1].shape
            group = [order[i]]
            while (i + len(group) < len(order) and len(group) < batch_size
                   and pairs[order[i + len(group)]][1].shape == shape):
                group.append(order[i + len(group)])
            preds = predict_float(model, np.stack([pairs[j][1] for j in group]), device, amp, channels_last)
            for j, pred in zip(group, preds):
                stem, _, gt = pairs[j]
                if pred.shape != gt.shape:
                    raise ValueError(f"{stem}: prediction {pred.shape[1]}x{pred.shape[0]} does not match GT {gt.shape[1]}x{gt.shape[0]}")
                pred_u8 = np.clip(np.rint(pred), 0, 255).astype(np.uint8)
                per[stem] = {
                    "psnr": metrics.psnr(pred, gt, crop_border, y_only),
                    "ssim": metrics.ssim(pred, gt, crop_border, y_only),
                    "psnr_challenge": metrics.psnr_challenge(pred_u8, gt),
                }
                if on_image is not None:
                    on_image(stem, pred_u8)
                if progress is not None:
                    progress.update(1)
            i += len(group)
    finally:
        model.train(was_training)
    mean = {k: float(np.mean([v[k] for v in per.values()])) for k in ("psnr", "ssim", "psnr_challenge")} if per else {}
    return {"mean": mean, "per_image": dict(sorted(per.items()))}
