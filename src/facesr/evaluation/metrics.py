"""PSNR and SSIM with MMagic 1.x semantics, and the challenge scorer's PSNR.

All functions take images on the **0-255 scale**, HxWxC (or HxW) numpy arrays,
uint8 or float (float predictions may be unrounded, as MMagic validates them).

Two conventions, both available:

* **reference** (MMagic 1.x ``PSNR``/``SSIM`` metrics): prediction clamped to
  [0, 255] but *not rounded*; PSNR in float32 after an optional border crop,
  optionally on BT.601 Y; SSIM in float64 with an 11x11 Gaussian window
  (sigma 1.5), valid region, mean over channels.
* **challenge** (the CodaLab ``evaluate.py``): both images are uint8 PNGs, cast
  to float64, PSNR over all pixels and RGB channels, no crop, no Y, and the
  score is the mean of per-image PSNRs.  Rounding the prediction to uint8 adds
  about 1/12 to the MSE, so it reads a few thousandths of a dB lower.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def _prep(img: np.ndarray, crop_border: int, y_only: bool, dtype) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    img = img.astype(dtype)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
    if y_only:
        img = rgb_to_y(img)[..., None]
    return img


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB image on the 0-255 scale (``16 + (65.481 R + 128.553 G + 24.966 B) / 255``)."""
    img = img.astype(np.float64) / 255.0
    y = img[..., 0] * 65.481 + img[..., 1] * 128.553 + img[..., 2] * 24.966 + 16.0
    return y


def psnr(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0, y_only: bool = False) -> float:
    """Reference (MMagic) PSNR in dB: float32, 0-255, ``20 log10(255 / sqrt(MSE))``; +inf if equal."""
    _check(pred, gt)
    a = _prep(np.clip(pred, 0, 255), crop_border, y_only, np.float32)
    b = _prep(gt, crop_border, y_only, np.float32)
    mse = float(np.mean((a - b) ** 2, dtype=np.float32))
    return math.inf if mse == 0 else 20.0 * math.log10(255.0 / math.sqrt(mse))


def psnr_challenge(pred_u8: np.ndarray, gt_u8: np.ndarray) -> float:
    """The challenge scorer's PSNR: uint8 images, float64, RGB, no crop; +inf if equal."""
    _check(pred_u8, gt_u8)
    if pred_u8.dtype != np.uint8 or gt_u8.dtype != np.uint8:
        raise ValueError("psnr_challenge takes uint8 images (round predictions first)")
    a = pred_u8.astype(np.float64) / 255.0 * 255.0
    b = gt_u8.astype(np.float64) / 255.0 * 255.0
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 20.0 * math.log10(255.0 / math.sqrt(mse))


_WINDOW = None


def _window() -> np.ndarray:
    global _WINDOW
    if _WINDOW is None:
        k = cv2.getGaussianKernel(11, 1.5)
        _WINDOW = np.outer(k, k.transpose())
    return _WINDOW


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    w = _window()
    mu1 = cv2.filter2D(a, -1, w)[5:-5, 5:-5]
    mu2 = cv2.filter2D(b, -1, w)[5:-5, 5:-5]
    mu1_sq, mu2_sq, mu12 = mu1**2, mu2**2, mu1 * mu2
    s1 = cv2.filter2D(a**2, -1, w)[5:-5, 5:-5] - mu1_sq
    s2 = cv2.filter2D(b**2, -1, w)[5:-5, 5:-5] - mu2_sq
    s12 = cv2.filter2D(a * b, -1, w)[5:-5, 5:-5] - mu12
    m = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return float(m.mean())


def ssim(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0, y_only: bool = False) -> float:
    """Reference SSIM (float64, 11x11 Gaussian sigma 1.5, valid region, channel mean), 0-255 inputs."""
    _check(pred, gt)
    a = _prep(np.clip(pred, 0, 255), crop_border, y_only, np.float32).astype(np.float64)
    b = _prep(gt, crop_border, y_only, np.float32).astype(np.float64)
    if min(a.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 after cropping, got {a.shape[:2]}")
    return float(np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(f"image shapes differ: {np.shape(a)} vs {np.shape(b)}")
