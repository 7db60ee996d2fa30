"""Blur kernels and the degradation pipeline: value ranges per step, RNG behaviour, replay."""

from __future__ import annotations

import json
import random

import cv2
import numpy as np
import pytest

from facesr.data import degradations as D
from facesr.data.datasets import degrade_offline
from facesr.data.kernels import gaussian_kernel, mesh_grid, sigma_matrix

# ----------------------------------------------------------------------------- kernels


@pytest.mark.parametrize(
    "args",
    [(41, 0.2, 0.2, 0.0, True), (41, 5.0, 5.0, 0.0, True), (41, 3.1, 0.7, 1.1, False), (21, 2.0, 4.5, -2.5, False)],
)
def test_kernel_sums_to_one(args):
    k = gaussian_kernel(*args)
    assert k.dtype == np.float64 and k.shape == (args[0], args[0])
    assert abs(k.sum() - 1.0) < 1e-12
    assert (k >= 0).all() and k[k.shape[0] // 2, k.shape[1] // 2] == k.max()


def test_iso_kernel_is_symmetric_and_ignores_sigma_y_theta():
    k = gaussian_kernel(41, 2.3, isotropic=True)
    np.testing.assert_allclose(k, k.T, rtol=0, atol=1e-16)
    np.testing.assert_allclose(k, k[::-1], rtol=0, atol=1e-16)
    np.testing.assert_allclose(k, k[:, ::-1], rtol=0, atol=1e-16)
    np.testing.assert_array_equal(k, gaussian_kernel(41, 2.3, 4.0, 1.0, isotropic=True))
    assert k.argmax() == 41 * 20 + 20  # peak at the centre


def test_tiny_sigma_is_nearly_identity():
    k = gaussian_kernel(41, 0.2, 0.2, 0.0, isotropic=True)
    assert k[20, 20] > 0.9999


@pytest.mark.parametrize("sx,sy,theta", [(2.0, 1.0, 0.6), (3.5, 1.2, -2.0), (1.5, 4.0, 2.9)])
def test_aniso_second_moments_match_rotated_covariance(sx, sy, theta):
    k = gaussian_kernel(41, sx, sy, theta, isotropic=False)
    grid = mesh_grid(41)
    x, y = grid[..., 0], grid[..., 1]  # x = column offset, y = row offset
    assert abs((k * x).sum()) < 1e-10 and abs((k * y).sum()) < 1e-10
    m = np.array([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    expected = rot @ np.diag([sx**2, sy**2]) @ rot.T
    np.testing.assert_allclose(m, expected, rtol=1e-4, atol=1e-4)
    # The covariance matrix itself is float32, as MMagic builds it.
    assert sigma_matrix(sx, sy, theta, False).dtype == np.float32


def test_kernel_orientation_is_columns_x_rows_y():
    # A kernel stretched along x (theta=0, sx > sy) is wider across columns than across rows.
    k = gaussian_kernel(41, 4.0, 1.0, 0.0, isotropic=False)
    assert k[20, 25] > k[25, 20] * 100


def test_even_kernel_refused():
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernel(40, 1.0)


# ----------------------------------------------------------------------------- pipeline steps


@pytest.fixture
def fixed_params():
    return D.DegradationParams(
        in_size=(512, 512),
        blur={"kernel": "aniso", "size": 41, "sigma_x": 2.0, "sigma_y": 0.6, "theta": 0.4},
        down={"interp": "bicubic", "mode": "down", "scale": 0.3, "size": [153, 153]},
        noise={"sigma": 20.0, "gray": False, "noise_seed": 123},
        jpeg={"quality": 70, "color_order": "mmagic"},
        up={"interp": "bilinear", "size": [512, 512]},
        final={"interp": "area", "size": [128, 128]},
    )


def _spy(monkeypatch):
    """Record (step, input, output) of every pipeline step inside apply_params."""
    calls = []
    for name in ("apply_blur", "resize", "jpeg_roundtrip"):
        orig = getattr(D, name)

        def wrapper(img, *a, _orig=orig, _name=name, **kw):
            out = _orig(img, *a, **kw)
            calls.append((_name, img, out))
            return out

        monkeypatch.setattr(D, name, wrapper)
    return calls


def test_step_dtypes_and_ranges(monkeypatch, fixed_params, face):
    hq = face(0)
    hq[:40, :40] = 0  # saturated regions so the noise must leave [0, 255]
    hq[-40:, -40:] = 255
    calls = _spy(monkeypatch)
    lq = D.apply_params(hq, fixed_params)
    names = [c[0] for c in calls]
    assert names == ["apply_blur", "resize", "jpeg_roundtrip", "resize", "resize"]
    (_, b_in, b_out), (_, d_in, d_out), (_, j_in, j_out), (_, u_in, u_out), (_, f_in, f_out) = calls
    assert b_in.dtype == b_out.dtype == np.uint8 and b_out.shape == (512, 512, 3)
    assert d_out.dtype == np.uint8 and d_out.shape == (153, 153, 3)
    # Noise: float32, 0-255 scale, neither clipped nor rounded.
    assert j_in.dtype == np.float32 and j_in.shape == (153, 153, 3)
    assert j_in.min() < 0 and j_in.max() > 255
    assert not np.array_equal(j_in, np.rint(j_in))
    assert j_out.dtype == np.uint8 and j_out.shape == (153, 153, 3)
    assert u_out.dtype == np.uint8 and u_out.shape == (512, 512, 3)
    assert f_out.dtype == np.uint8 and f_out.shape == (128, 128, 3)
    assert lq.dtype == np.uint8 and lq.shape == (128, 128, 3)
    np.testing.assert_array_equal(lq, f_out)


def test_blur_step_is_opencv_reflect101_uint8(face):
    img = face(1, 64)
    k = gaussian_kernel(41, 3.0, 1.0, 0.5, isotropic=False)
    out = D.apply_blur(img, k)
    ref = np.clip(np.rint(cv2.filter2D(img.astype(np.float64), -1, k, borderType=cv2.BORDER_REFLECT_101)), 0, 255)
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # uint8 rounding of the same correlation


@pytest.mark.parametrize("seed", range(6))
def test_down_size_is_truncated(seed):
    cfg = D.DegradationCfg()
    p = D.sample_params(cfg, (512, 512), D.GeneratorRng(seed))
    s = p.down["scale"]
    assert 0.0625 <= s < 1
    assert p.down["size"] == [int(512 * s), int(512 * s)]
    assert p.down["interp"] in ("bilinear", "area", "bicubic")
    assert 50 <= p.jpeg["quality"] <= 95 and isinstance(p.jpeg["quality"], int)
    assert 0 <= p.noise["sigma"] <= 25
    assert p.final == {"interp": "area", "size": [128, 128]}


def test_to_uint8_rounds_half_to_even_and_saturates():
    x = np.array([0.5, 1.5, 2.5, -3.0, 300.2, 254.6], np.float32)
    np.testing.assert_array_equal(D.to_uint8(x), [0, 2, 2, 0, 255, 255])


def test_jpeg_of_float_equals_jpeg_of_rounded(face):
    img = face(2, 64).astype(np.float32) + np.random.default_rng(0).normal(0, 30, (64, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(D.jpeg_roundtrip(img, 60), D.jpeg_roundtrip(D.to_uint8(img), 60))


def test_jpeg_colour_quirk():
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    img = cv2.resize(blocks, (96, 96), interpolation=cv2.INTER_NEAREST)  # saturated colour blocks
    mm = D.jpeg_roundtrip(img, 60, "mmagic")
    rgb = D.jpeg_roundtrip(img, 60, "rgb")
    assert mm.dtype == rgb.dtype == np.uint8
    assert not np.array_equal(mm, rgb)
    # The quirk: MMagic's output is the colour-correct JPEG of the channel-reversed image, reversed back.
    np.testing.assert_array_equal(mm, D.jpeg_roundtrip(img[..., ::-1], 60, "rgb")[..., ::-1])
    # The colour-correct JPEG is closer to the input on this colourful image.
    err = lambda a: np.mean((a.astype(float) - img) ** 2)
    assert err(rgb) < err(mm)


def test_noise_statistics_on_flat_grey(monkeypatch):
    hq = np.full((256, 256, 3), 128, np.uint8)
    p = D.DegradationParams(
        in_size=(256, 256),
        noise={"sigma": 12.5, "gray": False, "noise_seed": 7},
        jpeg={"quality": 90, "color_order": "mmagic"},
    )
    calls = _spy(monkeypatch)
    D.apply_params(hq, p)
    noisy = calls[0][1]  # the JPEG step's input: grey + noise, before any rounding
    assert noisy.dtype == np.float32
    n = noisy.astype(np.float64) - 128
    assert abs(n.mean()) < 0.1  # standard error 12.5 / sqrt(196608) ~ 0.03
    assert n.std() == pytest.approx(12.5, rel=0.01)
    # Independent per channel.
    c = np.corrcoef(n[..., 0].ravel(), n[..., 1].ravel())[0, 1]
    assert abs(c) < 0.02


def test_gray_noise_is_shared_across_channels(monkeypatch):
    hq = np.full((32, 32, 3), 100, np.uint8)
    p = D.DegradationParams(
        in_size=(32, 32),
        noise={"sigma": 10.0, "gray": True, "noise_seed": 1},
        jpeg={"quality": 90, "color_order": "mmagic"},
    )
    calls = _spy(monkeypatch)
    D.apply_params(hq, p)
    noisy = calls[0][1]
    np.testing.assert_array_equal(noisy[..., 0], noisy[..., 1])
    np.testing.assert_array_equal(noisy[..., 0], noisy[..., 2])


# ----------------------------------------------------------------------------- sampling vs applying, RNG


def test_params_json_roundtrip_replays_identically(face):
    hq = face(3)
    cfg = D.DegradationCfg()
    for seed in range(3):
        lq, p = D.degrade(hq, cfg, D.GeneratorRng(seed), seed)
        text = json.dumps(p.to_json())
        p2 = D.DegradationParams.from_json(json.loads(text))
        np.testing.assert_array_equal(D.apply_params(hq, p2), lq)
        assert p2.to_json() == p.to_json()


def test_determinism_and_copy_independence(face):
    hq = face(4)
    cfg = D.DegradationCfg()
    a, pa = degrade_offline(hq, cfg, 5, "x", 0, 2)
    b, pb = degrade_offline(hq, cfg, 5, "x", 0, 2)
    c, _ = degrade_offline(hq, cfg, 5, "x", 1, 2)
    d, _ = degrade_offline(hq, cfg, 5, "y", 0, 2)
    np.testing.assert_array_equal(a, b)
    assert pa.to_json() == pb.to_json()
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_generator_mode_leaves_global_rng_alone(face):
    hq = face(5, 128)
    cfg = D.DegradationCfg()
    cfg.up.size = 128
    cfg.final.size = 32
    np.random.seed(123)
    random.seed(123)
    np_state, py_state = np.random.get_state(), random.getstate()
    D.degrade(hq, cfg, D.GeneratorRng(9))
    after = np.random.get_state()
    assert all(np.array_equal(x, y) for x, y in zip(np_state, after))
    assert random.getstate() == py_state


def test_mmagic_mode_is_seeded_global_and_deterministic(face):
    hq = face(6)
    cfg = D.DegradationCfg(rng="mmagic")
    a, pa = degrade_offline(hq, cfg, 3, "a")
    np.random.seed(999)  # whatever the global state was before, the image reseeds it
    b, _ = degrade_offline(hq, cfg, 3, "b")  # the stem does not enter mmagic seeding
    np.testing.assert_array_equal(a, b)
    assert pa.rng == "mmagic" and pa.seed == 3
    # In mmagic mode the noise field is kept in the record (not serialised).
    assert pa.noise_field is not None and "noise_field" not in pa.to_json()


def test_mmagic_draw_order_blur_kernel_size_from_python_random():
    # The kernel size comes from Python's random.choice, the rest from numpy's global RandomState.
    cfg = D.DegradationCfg()
    cfg.blur.kernel_size = [21, 41]
    sizes = {D.sample_params(cfg, (512, 512), D.MMagicRng(s)).blur["size"] for s in range(12)}
    assert sizes == {21, 41}
    random.seed(0)
    expected = random.choice([21, 41])
    assert D.sample_params(cfg, (512, 512), D.MMagicRng(0)).blur["size"] == expected


def test_apply_refuses_wrong_input(fixed_params):
    with pytest.raises(ValueError, match="uint8"):
        D.apply_params(np.zeros((512, 512, 3), np.float32), fixed_params)
    with pytest.raises(ValueError, match="size"):
        D.apply_params(np.zeros((256, 256, 3), np.uint8), fixed_params)
