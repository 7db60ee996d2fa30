"""The exact degradation path after the speed work (docs/performance.md, "Exact path vs MMagic"):
outputs pinned against the pre-change implementation, and the rewritten pieces against numpy/OpenCV."""

from __future__ import annotations

import hashlib
import os
import random

import cv2
import numpy as np
import pytest

from facesr.data import degradations as D


def pin_image(seed: int, size: int = 512) -> np.ndarray:
    """A deterministic HQ test image from numpy alone (gradient, flat blocks, texture)."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = (xx[..., None] * r.uniform(0.1, 0.4, 3) + yy[..., None] * r.uniform(0.1, 0.4, 3)).astype(np.float64)
    for _ in range(8):
        y0, x0 = r.integers(0, size - 64, 2)
        h, w = r.integers(16, 200, 2)
        img[y0 : y0 + h, x0 : x0 + w] = r.uniform(0, 255, 3)
    img += r.normal(0, 8, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# sha256[:16] of the LQ from D.degrade(pin_image(seed), DegradationCfg(rng=mode), make_rng(mode, seed)),
# computed with the implementation before the speed work (commit 187a2da) and numpy 2.4.6, per OpenCV version
# (filter2D / resize / libjpeg rounding differ between OpenCV versions).  The mmagic-mode values are also what
# MMagic 1.2.0's own transforms give for random/np.random seeded with seed.  To add a version: check out 187a2da's
# src/ and hash its outputs with that OpenCV (the current code must then give the same).
PINNED_BY_OPENCV = {
    "5.0.0": {
        ("mmagic", 0): "36b31effb17a100a",
        ("mmagic", 1): "e95f8d4b02e098fd",
        ("mmagic", 2): "71c8ae34108e18a4",
        ("mmagic", 3): "352efb8728de4a50",
        ("mmagic", 4): "51896f73799517a0",
        ("mmagic", 5): "57a40c1528045ded",
        ("facesr", 0): "f03e39d8a64222ab",
        ("facesr", 1): "bb24eca24f397ace",
        ("facesr", 2): "98e2e5711ee89dfb",
        ("facesr", 3): "d574539301f626af",
        ("facesr", 4): "c23d0d05abea4794",
        ("facesr", 5): "1b20cf524c4975b3",
    },
    "5.1.0": {
        ("mmagic", 0): "cd1cb61c6d46a777",
        ("mmagic", 1): "20fb38d52aaf0b59",
        ("mmagic", 2): "71c8ae34108e18a4",
        ("mmagic", 3): "e29a754d528ede9f",
        ("mmagic", 4): "51896f73799517a0",
        ("mmagic", 5): "57a40c1528045ded",
        ("facesr", 0): "2a2dd345aeed89ad",
        ("facesr", 1): "bb24eca24f397ace",
        ("facesr", 2): "98e2e5711ee89dfb",
        ("facesr", 3): "d574539301f626af",
        ("facesr", 4): "c23d0d05abea4794",
        ("facesr", 5): "1b20cf524c4975b3",
    },
}
CASES = sorted(PINNED_BY_OPENCV["5.0.0"])


@pytest.mark.parametrize("mode,seed", CASES)
def test_exact_path_output_pinned(mode, seed):
    pinned = PINNED_BY_OPENCV.get(cv2.__version__)
    if pinned is None:
        # In CI (which pins OpenCV in .ci/run) a missing version is a failure, never a silent skip.
        msg = f"no pinned hashes for OpenCV {cv2.__version__} (have {sorted(PINNED_BY_OPENCV)})"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    lq, p = D.degrade(pin_image(seed), D.DegradationCfg(rng=mode), D.make_rng(mode, seed))
    assert lq.dtype == np.uint8 and lq.shape == (128, 128, 3)
    assert hashlib.sha256(lq.tobytes()).hexdigest()[:16] == pinned[(mode, seed)]


def test_to_uint8_equals_clip_rint():
    r = np.random.default_rng(0)
    x = (r.uniform(-40, 300, (97, 61, 3))).astype(np.float32)
    ties = np.arange(-3, 260, 0.5, dtype=np.float32)
    x.flat[: ties.size] = ties
    x.flat[ties.size : ties.size + 6] = [-0.5, -0.49999997, 0.49999997, 254.50002, 255.49998, 1e9]
    ref = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    keep = x.copy()
    assert np.array_equal(D.to_uint8(x), ref)
    assert np.array_equal(x, keep)  # default: input untouched
    assert np.array_equal(D.to_uint8(x[:, ::2]), ref[:, ::2])  # non-contiguous view
    assert np.array_equal(D.to_uint8(x[..., 0]), ref[..., 0])  # 2-D
    assert np.array_equal(D.to_uint8(x.copy(), overwrite=True), ref)
    assert np.array_equal(D.to_uint8(x.astype(np.float64)), ref)


@pytest.mark.parametrize("p", [[1 / 3.0] * 3, [0.5, 0.5], [0.0, 1.0, 0.0], [1.0], [0.2, 0.3, 0.5]])
def test_fast_choice_matches_numpy(p):
    opts = [f"o{i}" for i in range(len(p))]
    random.seed(1)
    np.random.seed(1)
    ref = [str(np.random.choice(opts, p=p)) for _ in range(500)]
    ref_next = np.random.uniform()
    rng = D.MMagicRng(1)
    got = [rng.choice(opts, p) for _ in range(500)]
    assert got == ref and np.random.uniform() == ref_next  # same values, same state afterwards

    g = np.random.Generator(np.random.PCG64(7))
    ref = [opts[int(g.choice(len(opts), p=p))] for _ in range(500)] + [g.uniform()]
    grng = D.GeneratorRng(7)
    assert [grng.choice(opts, p) for _ in range(500)] + [grng.gen.uniform()] == ref


def test_fast_choice_validates_p():
    with pytest.raises(ValueError):
        D.GeneratorRng(0).choice(["a", "b"], [0.5, 0.6])
    with pytest.raises(ValueError):
        D.GeneratorRng(0).choice(["a", "b"], [1.0])


def test_apply_params_leaves_stored_noise_field_alone():
    hq = pin_image(3)
    p = D.sample_params(D.DegradationCfg(rng="mmagic"), hq.shape[:2], D.MMagicRng(3))
    before = p.noise_field.copy()
    a = D.apply_params(hq, p)
    assert np.array_equal(p.noise_field, before)
    assert np.array_equal(D.apply_params(hq, p), a)  # replayable


@pytest.mark.parametrize("gray", [False, True])
@pytest.mark.parametrize("order", ["mmagic", "rgb"])
def test_noise_and_jpeg_steps_match_plain_numpy(gray, order):
    """The fused noise add and the JPEG colour swap against the plain formulas (pre-change code)."""
    hq = pin_image(5)
    cfg = D.DegradationCfg()
    cfg.noise.gaussian_gray_noise_prob = 1.0 if gray else 0.0
    cfg.jpeg.color_order = order
    for s in range(4):
        p = D.sample_params(cfg, hq.shape[:2], D.GeneratorRng([s, 9]))
        img = hq
        k = D.gaussian_kernel(
            p.blur["size"], p.blur["sigma_x"], p.blur["sigma_y"], p.blur["theta"], isotropic=p.blur["kernel"] == "iso"
        )
        img = cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT_101)
        img = D.resize(img, p.down["size"], p.down["interp"])
        noise = D.noise_field(p, img.shape) * p.noise["sigma"]
        img = img + (noise[:, :, :1] if p.noise["gray"] else noise)
        u8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        if order == "rgb":
            u8 = np.ascontiguousarray(u8[..., ::-1])
        ok, buf = cv2.imencode(".jpg", u8, [int(cv2.IMWRITE_JPEG_QUALITY), p.jpeg["quality"]])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if order == "rgb":
            img = np.ascontiguousarray(img[..., ::-1])
        for step in (p.up, p.final):
            img = D.resize(img, step["size"], step["interp"])
        assert np.array_equal(D.apply_params(hq, p), img)


@pytest.mark.parametrize("mode", ["mmagic", "facesr"])
def test_params_to_json_as_before(mode):
    """to_json no longer deep-copies the noise field; the JSON is what asdict() minus it gave."""
    from dataclasses import asdict

    p = D.sample_params(D.DegradationCfg(rng=mode), (512, 512), D.make_rng(mode, 4), seed=[4, 1])
    ref = asdict(p)
    ref.pop("noise_field")
    ref["in_size"] = list(p.in_size)
    got = p.to_json()
    assert list(got) == list(ref) and got == ref
    assert D.DegradationParams.from_json(got).to_json() == got
