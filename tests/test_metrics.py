"""PSNR/SSIM (MMagic reference convention) and the challenge PSNR."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facesr.evaluation import metrics


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    gt = rng.integers(10, 240, (40, 36, 3)).astype(np.uint8)
    return gt


def test_identical_images(pair):
    assert metrics.psnr(pair, pair) == math.inf
    assert metrics.psnr_challenge(pair, pair) == math.inf
    assert metrics.ssim(pair, pair) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("d", [1, 3, 10])
def test_constant_offset(pair, d):
    pred = (pair.astype(np.int32) + d).astype(np.uint8)  # no wrap: gt <= 239
    expected = 20 * math.log10(255 / d)
    assert metrics.psnr(pred, pair) == pytest.approx(expected, abs=1e-5)
    assert metrics.psnr_challenge(pred, pair) == pytest.approx(expected, abs=1e-10)
    # Float predictions on the 0-255 scale work the same.
    assert metrics.psnr(pair.astype(np.float32) - d, pair) == pytest.approx(expected, abs=1e-5)


def test_crop_border(pair):
    pred = pair.copy()
    pred[:4] = 0
    pred[:, -4:] = 255
    assert math.isfinite(metrics.psnr(pred, pair))
    assert metrics.psnr(pred, pair, crop_border=4) == math.inf
    assert metrics.ssim(pred, pair, crop_border=4) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim(pred, pair) < 1


def test_y_channel(pair):
    d = 8
    pred = pair.copy()
    pred[..., 2] = pred[..., 2] + d  # blue only; Y weight of blue is 24.966 / 255
    dy = 24.966 * d / 255
    assert metrics.psnr(pred, pair, y_only=True) == pytest.approx(20 * math.log10(255 / dy), abs=1e-3)
    # RGB PSNR of the same pair: MSE = d^2 / 3.
    assert metrics.psnr(pred, pair) == pytest.approx(20 * math.log10(255 / math.sqrt(d * d / 3)), abs=1e-4)
    y = metrics.rgb_to_y(np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8))
    np.testing.assert_allclose(y, [[235.0, 16.0]], atol=1e-9)


def test_prediction_is_clamped_not_rounded(pair):
    pred = pair.astype(np.float32) + 0.4
    pred[0, 0] = [300, -20, 128]
    clamped = np.clip(pred, 0, 255)
    assert metrics.psnr(pred, pair) == metrics.psnr(clamped, pair)
    assert metrics.ssim(pred, pair) == metrics.ssim(clamped, pair)
    # Rounding would make most pixels exact; the reference keeps the 0.4 offsets.
    rounded = np.clip(np.rint(pred), 0, 255).astype(np.uint8)
    assert metrics.psnr(pred, pair) < metrics.psnr_challenge(rounded, pair)


def test_challenge_psnr_needs_uint8(pair):
    with pytest.raises(ValueError, match="uint8"):
        metrics.psnr_challenge(pair.astype(np.float32), pair)


def test_challenge_psnr_is_float64_rgb_mean():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (17, 19, 3)).astype(np.uint8)
    b = rng.integers(0, 256, (17, 19, 3)).astype(np.uint8)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert metrics.psnr_challenge(a, b) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-12)


def test_shape_mismatch_raises(pair):
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(pair[:-1], pair)
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(pair[:10, :10], pair[:10, :10])


def _ssim_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written out with explicit sums over the 11x11 window (valid region only)."""
    sigma = 1.5
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * sigma * sigma))
    g /= g.sum()
    w = np.outer(g, g)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    h, wd = a.shape[0] - 10, a.shape[1] - 10
    vals = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        mx = np.zeros((h, wd))
        my = np.zeros((h, wd))
        xx = np.zeros((h, wd))
        yy = np.zeros((h, wd))
        xy = np.zeros((h, wd))
        for i in range(11):
            for j in range(11):
                px, py = x[i : i + h, j : j + wd], y[i : i + h, j : j + wd]
                mx += w[i, j] * px
                my += w[i, j] * py
                xx += w[i, j] * px * px
                yy += w[i, j] * py * py
                xy += w[i, j] * px * py
        vx, vy, cxy = xx - mx * mx, yy - my * my, xy - mx * my
        m = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        vals.append(m.mean())
    return float(np.mean(vals))


def test_ssim_matches_independent_computation():
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 256, (24, 30, 3)).astype(np.uint8)
    pred = np.clip(gt.astype(np.float64) + rng.normal(0, 25, gt.shape), 0, 255).astype(np.float32)
    ours = metrics.ssim(pred, gt)
    assert 0 < ours < 1
    assert ours == pytest.approx(_ssim_by_hand(pred, gt), abs=1e-9)
    # Y-channel SSIM: same formula on the BT.601 luma plane.
    y_ours = metrics.ssim(pred, gt, y_only=True)
    y_ref = _ssim_by_hand(
        metrics.rgb_to_y(pred.astype(np.float32))[..., None], metrics.rgb_to_y(gt.astype(np.float32))[..., None]
    )
    assert y_ours == pytest.approx(y_ref, abs=1e-9)
