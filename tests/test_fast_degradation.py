"""The exact degradation path is untouched by the opt-in fast blur (``degradation.blur.exact: false``),
and the fast blur deviates only by the documented amount."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facesr.data import degradations as D
from facesr.data.kernels import gaussian_kernel

N_RANDOM = 32


def _plain_reference(hq: np.ndarray, p: D.DegradationParams) -> np.ndarray:
    """The pipeline written out with a plain ``cv2.filter2D`` blur (what ``apply_params`` must equal)."""
    img = hq
    if p.blur is not None:
        k = gaussian_kernel(
            p.blur["size"], p.blur["sigma_x"], p.blur["sigma_y"], p.blur["theta"], isotropic=p.blur["kernel"] == "iso"
        )
        img = cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT_101)
    if p.down is not None:
        img = D.resize(img, p.down["size"], p.down["interp"])
    if p.noise is not None:
        img = img + D.noise_field(p, img.shape) * p.noise["sigma"]
    if p.jpeg is not None:
        img = D.jpeg_roundtrip(img, p.jpeg["quality"], p.jpeg["color_order"])
    for step in (p.up, p.final):
        if step is not None:
            img = D.resize(D.to_uint8(img), step["size"], step["interp"])
    return D.to_uint8(img)


def _bicubic_psnr(lq: np.ndarray, gt: np.ndarray) -> float:
    up = cv2.resize(lq, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    return float(10 * np.log10(255.0**2 / np.mean((up - gt.astype(np.float64)) ** 2)))


def _mean_abs_laplacian(img: np.ndarray) -> float:
    return float(np.abs(cv2.Laplacian(img.astype(np.float64), cv2.CV_64F)).mean())


@pytest.fixture(scope="module")
def faces():
    from conftest import make_face

    return [make_face(2000 + i) for i in range(8)]


def test_default_is_exact_and_records_unchanged():
    cfg = D.DegradationCfg()
    assert cfg.blur.exact is True
    p = D.sample_params(cfg, (512, 512), D.GeneratorRng([0, 1, 5]))
    assert set(p.blur) == {"kernel", "size", "sigma_x", "sigma_y", "theta"}  # no new key in exact records


def test_default_pipeline_equals_plain_filter2d_path(faces):
    cfg = D.DegradationCfg()
    for i in range(N_RANDOM):
        hq = faces[i % len(faces)]
        lq, p = D.degrade(hq, cfg, D.GeneratorRng([123, 1, i]))
        np.testing.assert_array_equal(lq, _plain_reference(hq, p), err_msg=f"sample {i}: {p.to_json()}")


def test_mmagic_rng_pipeline_equals_plain_filter2d_path(faces):
    cfg = D.DegradationCfg(rng="mmagic")
    for i in range(6):
        lq, p = D.degrade(faces[i], cfg, D.MMagicRng(i))
        np.testing.assert_array_equal(lq, _plain_reference(faces[i], p))


def test_fast_blur_deviation_is_bounded(faces):
    rng = np.random.default_rng(0)
    changed = total = 0
    for i in range(N_RANDOM):
        img = faces[i % len(faces)]
        s = float(rng.uniform(0.2, 5.0))
        k = gaussian_kernel(41, s, isotropic=True)
        exact = D.apply_blur(img, k)
        np.testing.assert_array_equal(exact, cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT_101))
        fast = D.apply_blur(img, k, exact=False)
        d = np.abs(fast.astype(np.int16) - exact)
        assert d.max() <= 1, f"sigma {s}"
        changed += int(np.count_nonzero(d))
        total += d.size
    assert changed / total < 1e-4  # measured ~2e-5: only float .5 ties flip


def test_fast_blur_leaves_non_separable_kernels_exact(faces):
    rng = np.random.default_rng(1)
    for i in range(6):
        k = gaussian_kernel(41, *rng.uniform(0.2, 5.0, 2), rng.uniform(0.3, 1.2), isotropic=False)
        np.testing.assert_array_equal(D.apply_blur(faces[i], k, exact=False), D.apply_blur(faces[i], k))


def test_fast_mode_output_statistics_unchanged(faces):
    exact_cfg, fast_cfg = D.DegradationCfg(), D.DegradationCfg()
    fast_cfg.blur.exact = False
    pe, pf, le, lf = [], [], [], []
    n_iso = 0
    for i in range(N_RANDOM):
        hq = faces[i % len(faces)]
        lq_e, p_e = D.degrade(hq, exact_cfg, D.GeneratorRng([9, 1, i]))
        lq_f, p_f = D.degrade(hq, fast_cfg, D.GeneratorRng([9, 1, i]))
        assert p_f.blur.pop("exact") is False
        assert p_f.to_json() == p_e.to_json()  # the flag changes no random draw
        if p_e.blur["kernel"] == "aniso":
            np.testing.assert_array_equal(lq_f, lq_e)
        else:
            n_iso += 1
            assert np.abs(lq_f.astype(np.int16) - lq_e).max() <= 3
        pe.append(_bicubic_psnr(lq_e, hq))
        pf.append(_bicubic_psnr(lq_f, hq))
        le.append(_mean_abs_laplacian(lq_e))
        lf.append(_mean_abs_laplacian(lq_f))
    assert n_iso >= 8
    assert abs(np.mean(pf) - np.mean(pe)) < 0.01  # dB
    assert abs(np.mean(lf) / np.mean(le) - 1) < 0.005


def test_fast_flag_replays_from_json(faces):
    cfg = D.DegradationCfg()
    cfg.blur.exact = False
    cfg.blur.kernel_prob = [1.0, 0.0]  # iso only, so the fast path is taken
    lq, p = D.degrade(faces[0], cfg, D.GeneratorRng([1, 2, 3]))
    q = D.DegradationParams.from_json(p.to_json())
    assert q.blur["exact"] is False
    np.testing.assert_array_equal(D.apply_params(faces[0], q), lq)
