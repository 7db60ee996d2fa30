"""A faithful re-creation of MMagic 1.x's degradation call sequence, for timing against facesr.

Same numpy/cv2 calls in the same order as ``mmagic/datasets/transforms/random_degradations.py``
(RandomBlur, RandomResize, RandomNoise, RandomJPEGCompression) and ``blur_kernels.py``
(``random_mixed_kernels`` -> ``random_bivariate_gaussian_kernel`` -> ``bivariate_gaussian``)
of MMagic 1.2.0, condensed to the course config (one image, no step sizes); see
/work/shared/docs/reference-semantics.md section 2.  With ``random.seed(s); np.random.seed(s)``
it returns the same LQ as MMagic 1.2.0's own transforms (checked against them from the wheel)
and as ``facesr degrade --rng mmagic``.  When ``mmagic`` is importable,
:func:`mmagic_pipeline` returns its real transforms instead.
"""

from __future__ import annotations

import random

import cv2
import numpy as np

BLUR = dict(
    kernel_size=[41],
    kernel_list=["iso", "aniso"],
    kernel_prob=[0.5, 0.5],
    sigma_x=[0.2, 5],
    sigma_y=[0.2, 5],
    rotate_angle=[-3.1416, 3.1416],
)
DOWN = dict(
    resize_mode_prob=[0, 1, 0],
    resize_scale=[0.0625, 1],
    resize_opt=["bilinear", "area", "bicubic"],
    resize_prob=[1 / 3.0, 1 / 3.0, 1 / 3.0],
)
NOISE = dict(noise_type=["gaussian"], noise_prob=[1], gaussian_sigma=[0, 25], gaussian_gray_noise_prob=0)
JPEG = dict(quality=[50, 95])
UP = dict(resize_opt=["bilinear", "area", "bicubic"], resize_prob=[1 / 3.0, 1 / 3.0, 1 / 3.0], target_size=(512, 512))
FINAL = dict(resize_opt=["area"], resize_prob=[1], target_size=(128, 128))
_INTERP = dict(bilinear=cv2.INTER_LINEAR, bicubic=cv2.INTER_CUBIC, area=cv2.INTER_AREA, lanczos=cv2.INTER_LANCZOS4)


# blur_kernels.py
def _mesh_grid(k):
    r = np.arange(-k // 2 + 1.0, k // 2 + 1.0)
    x, y = np.meshgrid(r, r)
    return np.hstack((x.reshape((k * k, 1)), y.reshape(k * k, 1))).reshape(k, k, 2), x, y


def _bivariate_gaussian(k, sx, sy, theta, iso):
    grid, _, _ = _mesh_grid(k)
    if iso:
        sm = np.array([[sx**2, 0], [0, sx**2]]).astype(np.float32)
    else:
        d = np.array([[sx**2, 0], [0, sy**2]]).astype(np.float32)
        r = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]).astype(np.float32)
        sm = np.matmul(r, np.matmul(d, r.T))
    kern = np.exp(-0.5 * np.sum(np.matmul(grid, np.linalg.inv(sm)) * grid, 2))
    return kern / np.sum(kern)


def _random_mixed_kernels(kernel_list, kernel_prob, k, sxr, syr, rr):
    ktype = np.random.choice(kernel_list, p=kernel_prob)
    sx = np.random.uniform(sxr[0], sxr[1])
    if ktype == "aniso":
        sy, rot = np.random.uniform(syr[0], syr[1]), np.random.uniform(rr[0], rr[1])
    else:
        sy, rot = sx, 0
    kern = _bivariate_gaussian(k, sx, sy, rot, ktype == "iso")
    return kern / np.sum(kern)


# random_degradations.py
def random_blur(img, p=BLUR):
    if np.random.uniform() > p.get("prob", 1):
        return img
    ktype = np.random.choice(p["kernel_list"], p=p["kernel_prob"])
    ksize = random.choice(p["kernel_size"])
    sx = np.random.uniform(*p["sigma_x"])
    sy = np.random.uniform(*p["sigma_y"])
    rot = np.random.uniform(*p["rotate_angle"])
    beta_g = np.random.uniform(0.5, 4)
    beta_p = np.random.uniform(1, 2)
    omega = np.random.uniform(np.pi / 3.0, np.pi) if ksize < 13 else np.random.uniform(np.pi / 5.0, np.pi)
    kernel = _random_mixed_kernels([ktype], [1], ksize, [sx, sx], [sy, sy], [rot, rot])
    for lo_hi, v in (
        ((0.2, 5), sx),
        ((0.2, 5), sy),
        ((-3.1416, 3.1416), rot),
        ((0.5, 4), beta_g),
        ((1, 2), beta_p),
        ((np.pi / 5.0, np.pi), omega),
    ):  # step updates (+ U[-0, 0]) and clips
        np.clip(v + np.random.uniform(-0, 0), *lo_hi)
    return cv2.filter2D(img, -1, kernel)


def random_resize(img, p):
    if np.random.uniform() > p.get("prob", 1):
        return img
    h, w = img.shape[:2]
    opt = _INTERP[np.random.choice(p["resize_opt"], p=p["resize_prob"]).lower()]
    target = p.get("target_size")
    if target is None:
        mode = np.random.choice(["up", "down", "keep"], p=p["resize_mode_prob"])
        lo, hi = p["resize_scale"]
        s = np.random.uniform(1, hi) if mode == "up" else np.random.uniform(lo, 1) if mode == "down" else 1
        target = (int(h * s), int(w * s))
    return cv2.resize(img, target[::-1], interpolation=opt)


def random_noise(img, p=NOISE):
    if np.random.uniform() > p.get("prob", 1):
        return img
    np.random.choice(p["noise_type"], p=p["noise_prob"])
    sigma = np.random.uniform(*p["gaussian_sigma"])
    gray = np.random.uniform() < p["gaussian_gray_noise_prob"]
    noise = np.float32(np.random.randn(*(img.shape))) * sigma
    if gray:
        noise = noise[:, :, :1]
    out = img + noise
    np.clip(sigma + np.random.uniform(-0, 0), *p["gaussian_sigma"])
    return out


def random_jpeg(img, p=JPEG):
    if np.random.uniform() > p.get("prob", 1):
        return img
    q = round(np.random.uniform(p["quality"][0], p["quality"][1]))
    _, enc = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), q])  # float32 in: OpenCV converts (and warns)
    out = cv2.imdecode(enc, 1)
    round(np.clip(q + np.random.uniform(-0, 0), *p["quality"]))
    return out


def recreated_degrade(hq: np.ndarray) -> np.ndarray:
    img = hq.copy()  # CopyValues gt -> img (deep copy)
    img = random_blur(img)
    img = random_resize(img, DOWN)
    img = random_noise(img)
    img = random_jpeg(img)
    img = random_resize(img, UP)
    return random_resize(img, FINAL)


def mmagic_pipeline():
    """MMagic's real transforms as a callable ``hq -> lq`` (ImportError when mmagic is missing)."""
    from mmagic.datasets.transforms.random_degradations import (
        RandomBlur,
        RandomJPEGCompression,
        RandomNoise,
        RandomResize,
    )

    pipe = [
        RandomBlur(BLUR, ["img"]),
        RandomResize(DOWN, ["img"]),
        RandomNoise(NOISE, ["img"]),
        RandomJPEGCompression(JPEG, ["img"]),
        RandomResize(UP, ["img"]),
        RandomResize(FINAL, ["img"]),
    ]

    def run(hq):
        r = {"img": hq.copy()}
        for t in pipe:
            r = t(r)
        return r["img"]

    return run


# --------------------------------------------------------------------------- the model's eager forward


def mmagic_msrresnet(num_blocks: int = 16, mid_channels: int = 64):
    """MSRResNet with MMagic 1.2.0's eager ``ResidualBlockNoBN.forward`` (``identity + out * res_scale``,
    out of place; mmagic/models/archs/sr_backbone.py), for timing MMagic's own forward.

    facesr's block skips the multiply by ``res_scale == 1.0`` and adds in place, which changes no
    bit (tests/test_models.py); this keeps the baseline what MMagic actually runs.
    """
    import types

    from facesr.models import build_model
    from facesr.models.msrresnet import ResidualBlockNoBN

    def mmagic_forward(self, x):
        identity = x
        out = self.conv2(self.relu(self.conv1(x)))
        return identity + out * self.res_scale

    model = build_model("msrresnet", num_blocks=num_blocks, mid_channels=mid_channels)
    for m in model.modules():
        if isinstance(m, ResidualBlockNoBN):
            m.forward = types.MethodType(mmagic_forward, m)
    return model
