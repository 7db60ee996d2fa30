"""Pixel losses on predictions and targets in the **0-1 float** range (N, C, H, W).

``psnr`` is MMagic's PSNRLoss: the batch mean of ``10 log10(MSE_i + 1e-8)``
with a per-sample MSE, i.e. minus the per-image PSNR (peak 1).  MMagic's
``toY`` flag is ignored by MMagic itself, so there is none here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred, target)


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``mean(sqrt((pred - target)^2 + eps))`` (MMagic's default eps 1e-12)."""
    return torch.sqrt((pred - target) ** 2 + eps).mean()


def psnr_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_i 10 log10(mean_chw((pred_i - target_i)^2) + 1e-8)``."""
    mse = ((pred - target) ** 2).flatten(1).mean(dim=1)
    return (10.0 / torch.log(torch.tensor(10.0, device=pred.device))) * torch.log(mse + 1e-8).mean()


LOSSES = {"l1": l1_loss, "mse": mse_loss, "charbonnier": charbonnier_loss, "psnr": psnr_loss}


def get_loss(name: str):
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}") from None
