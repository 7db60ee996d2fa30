"""Shared fixtures: synthetic faces (no real data needed), a hand-written MSRResNet forward,
and access to the optional ../shared development data (tests skip when it is absent)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

# One thread each: the tests are small, and on a busy machine (e.g. a training run beside them)
# multi-threaded torch/OpenCV kernels spend far longer waiting for cores than computing.
torch.set_num_threads(1)
cv2.setNumThreads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"


def make_face(seed: int, size: int = 512) -> np.ndarray:
    """A colourful synthetic "face": gradient background, skin ellipse, eyes, mouth, hair, texture.

    Returns uint8 RGB HxWx3, 0-255.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    img = (c0[None, None] * (1 - xx[..., None]) + c1[None, None] * yy[..., None]).astype(np.float32)
    img = np.clip(img, 0, 255)
    s = size / 512
    cx, cy = int(size / 2 + rng.integers(-20, 21) * s), int(size / 2 + rng.integers(-20, 21) * s)
    skin = tuple(float(v) for v in rng.uniform([170, 120, 90], [240, 190, 160]))
    cv2.ellipse(img, (cx, cy), (int(150 * s), int(200 * s)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    hair = tuple(float(v) for v in rng.uniform(10, 90, 3))
    cv2.ellipse(img, (cx, cy - int(120 * s)), (int(160 * s), int(100 * s)), 0, 180, 360, hair, -1, cv2.LINE_AA)
    for dx in (-60, 60):
        e = (cx + int(dx * s), cy - int(30 * s))
        cv2.ellipse(img, e, (int(28 * s), int(14 * s)), 0, 0, 360, (250, 250, 250), -1, cv2.LINE_AA)
        iris = tuple(float(v) for v in rng.uniform(20, 160, 3))
        cv2.circle(img, e, int(10 * s), iris, -1, cv2.LINE_AA)
        cv2.circle(img, e, int(4 * s), (5, 5, 5), -1, cv2.LINE_AA)
    cv2.ellipse(
        img,
        (cx, cy + int(90 * s)),
        (int(55 * s), int(18 * s)),
        0,
        0,
        180,
        (180, 40, 50),
        int(max(1, 6 * s)),
        cv2.LINE_AA,
    )
    cv2.line(
        img,
        (cx, cy - int(10 * s)),
        (cx - int(12 * s), cy + int(40 * s)),
        (140, 90, 70),
        max(1, int(3 * s)),
        cv2.LINE_AA,
    )
    img += rng.normal(0, 4, img.shape).astype(np.float32)  # skin/hair texture
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def strong_msrresnet(mid: int = 16, blocks: int = 2, seed: int = 0):
    """A random MSRResNet whose convolutions matter (full-scale init, random biases), so seams and backend
    differences would show.  Float 0-1 NCHW in, x4 out; eval mode."""
    from facesr.models import MSRResNet

    torch.manual_seed(seed)
    m = MSRResNet(mid_channels=mid, num_blocks=blocks)
    for mod in m.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight)
            torch.nn.init.normal_(mod.bias, std=0.05)
    return m.eval()


def write_rgb_png(path: Path, img: np.ndarray) -> Path:
    """Write uint8 RGB (or any OpenCV-writable array in RGB order) as PNG."""
    arr = img[..., ::-1] if img.ndim == 3 and img.shape[2] == 3 else img
    assert cv2.imwrite(str(path), np.ascontiguousarray(arr))
    return path


def reference_forward(
    sd: dict, x: torch.Tensor, num_blocks: int, scale: int = 4, variant: str = "mmagic"
) -> torch.Tensor:
    """MSRResNet written out op by op from a facesr-named state dict (input/output float 0-1 scale)."""

    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    feat = F.leaky_relu(conv("conv_first", x), 0.1)
    for i in range(num_blocks):
        feat = feat + conv(f"trunk_net.{i}.conv2", F.relu(conv(f"trunk_net.{i}.conv1", feat)))
    ups = ["upsample1", "upsample2"] if scale == 4 else ["upsample1"]
    for name in ups:
        feat = F.pixel_shuffle(conv(f"{name}.upsample_conv", feat), 2 if scale == 4 else scale)
        if variant == "basicsr":
            feat = F.leaky_relu(feat, 0.1)
    out = conv("conv_last", F.leaky_relu(conv("conv_hr", feat), 0.1))
    return out + F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def randomise_(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Give every parameter (biases included) random values, so different weights give different outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def _center(lq, gt, n):
    """The central n x n LQ crop and its x4 GT (None = whole images)."""
    if n is None:
        return lq, gt
    y, x = (lq.shape[0] - n) // 2, (lq.shape[1] - n) // 2
    return np.ascontiguousarray(lq[y : y + n, x : x + n]), np.ascontiguousarray(
        gt[4 * y : 4 * (y + n), 4 * x : 4 * (x + n)]
    )


def degraded_pairs(hq_images, crop=None) -> list:
    """(LQ, HQ) uint8 pairs from ``(name, 512x512 HQ)`` items: the default degradation, seed 0,
    optionally the central ``crop`` x ``crop`` LQ pixels."""
    from facesr.data.datasets import degrade_offline
    from facesr.data.degradations import DegradationCfg

    return [_center(degrade_offline(hq, DegradationCfg(), 0, name)[0], hq, crop) for name, hq in hq_images]


def synthetic_pairs(n: int = 2, crop=None) -> list:
    """:func:`degraded_pairs` of ``n`` synthetic faces."""
    return degraded_pairs([(f"synth{seed}", make_face(seed)) for seed in range(n)], crop)


def dev_val_pairs(shared: Path, n: int = 4, crop=None) -> list:
    """:func:`degraded_pairs` of the first ``n`` dev-val-hq faces; skips the test without them."""
    from facesr.io.images import read_rgb

    hq_dir = shared / "data" / "dev-val-hq"
    if not hq_dir.is_dir():
        pytest.skip(f"{hq_dir} not present")
    return degraded_pairs([(f.stem, read_rgb(f)) for f in sorted(hq_dir.glob("*.png"))[:n]], crop)


def precision_psnr(pairs, precision: str) -> tuple[float, float]:
    """(mean PSNR in fp32, mean PSNR in ``precision``) of the shipped model on (LQ, GT) pairs
    (reference convention: unrounded output)."""
    import facesr
    from facesr.evaluation.metrics import psnr

    scores = []
    for p in ("fp32", precision):
        r = facesr.load(device="cpu", precision=p)
        scores.append(float(np.mean([psnr(r.predict_float(lq[None])[0], gt) for lq, gt in pairs])))
    return scores[0], scores[1]


@pytest.fixture
def face():
    return make_face


@pytest.fixture
def ref_forward():
    return reference_forward


@pytest.fixture
def randomise():
    return randomise_


@pytest.fixture
def face_dir(tmp_path):
    """A folder of 3 synthetic 512x512 RGB PNG faces, named face_a/face_b/face_c."""
    d = tmp_path / "hq"
    d.mkdir()
    for i, name in enumerate(("face_a", "face_b", "face_c")):
        write_rgb_png(d / f"{name}.png", make_face(i))
    return d


@pytest.fixture
def shared_dir():
    """../shared relative to the repo root; skips the test when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present (development data is not part of the repository)")
    return SHARED


@pytest.fixture()
def ckpt(tmp_path) -> str:
    """Path of a tiny MSRResNet (8 channels, 1 block) saved as facesr safetensors, for fast CLI tests."""
    from facesr.models import MSRResNet, save_weights

    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    save_weights(path, MSRResNet(mid_channels=8, num_blocks=1))
    return str(path)


def bomb_png(w: int, h: int) -> bytes:
    """A valid PNG header claiming ``w`` x ``h`` 8-bit RGB pixels, with one tiny IDAT (never decoded)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def fuzz_settings():
    """Hypothesis settings of the fuzz tests: ``FACESR_FUZZ_EXAMPLES`` examples per property (default 40),
    derandomized (the same examples every run), no deadline."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=int(os.environ.get("FACESR_FUZZ_EXAMPLES", "40")),
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def signal_when_ready(script: Path, env: dict, at_ready=None) -> tuple[int, float, str]:
    """Run ``python script``; when it prints ``ready`` (then ``at_ready()`` and 0.3 s), send SIGTERM.

    Returns ``(exit status, seconds from the signal to the exit, stderr)``.
    """
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        if at_ready is not None:
            at_ready()
        time.sleep(0.3)
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, time.perf_counter() - t0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
