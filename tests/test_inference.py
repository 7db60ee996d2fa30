"""Restorer: input kinds, batching, tiling, auto-tiling, agreement with the evaluation path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import strong_msrresnet
from facesr.inference import Restorer, tile_boxes
from facesr.models import CheckpointError, MSRResNet, save_weights


def _img(h, w, c=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w) if c == 1 else (h, w, c)
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    return strong_msrresnet()


def _max_diff(a, b):
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_tile_boxes_partition_the_image():
    cover = np.zeros((70, 90), np.int32)
    for (y0, y1, x0, x1), (cy0, cy1, cx0, cx1) in tile_boxes(70, 90, 32, 8):
        cover[y0:y1, x0:x1] += 1
        assert y1 - y0 <= 32 and x1 - x0 <= 32
        assert cy0 == max(0, y0 - 8) and cy1 == min(70, y1 + 8)
        assert cx0 == max(0, x0 - 8) and cx1 == min(90, x1 + 8)
    assert (cover == 1).all()


def test_tiled_matches_untiled_within_one_level(model):
    img = _img(70, 90, seed=1)
    full = Restorer(model, tile=0).restore(img)
    assert full.shape == (280, 360, 3) and full.dtype == np.uint8
    tiled = Restorer(model, tile=32, tile_overlap=16, batch_size=3).restore(img)
    assert _max_diff(full, tiled) <= 1
    # The test is sensitive: without context the seams are far off.
    seams = Restorer(model, tile=32, tile_overlap=0).restore(img)
    assert _max_diff(full, seams) > 10


def test_auto_tiling_of_big_images(model, monkeypatch):
    img = _img(48, 40, seed=2)
    full = Restorer(model).restore(img)
    monkeypatch.setattr(Restorer, "AUTO_TILE_PIXELS", 24 * 24)
    monkeypatch.setattr(Restorer, "AUTO_TILE", 16)
    monkeypatch.setattr(Restorer, "MAX_BATCH_PIXELS", 24 * 24 * 2)
    r = Restorer(model, tile_overlap=12)
    assert r._tile_size(48, 40) == 16 and r._tile_size(20, 20) == 0
    calls = []
    orig = r.run_batch
    r.run_batch = lambda b, *gray: (calls.append(b.shape), orig(b, *gray))[1]
    out = r.restore(img)
    assert _max_diff(full, out) <= 1
    # every pass is one tile with its context (40x40 LQ pixels > MAX_BATCH_PIXELS / 2, so one per pass)
    assert len(calls) == 9 and all(n == 1 and h <= 16 + 2 * 12 and w <= 16 + 2 * 12 for n, h, w, _ in calls)


def test_restore_matches_evaluation_rounding(model):
    img = _img(20, 24, seed=3)
    pred = Restorer(model, device="cpu", channels_last=False).predict_float(img[None])
    assert pred.dtype == np.float32 and pred.min() >= 0 and pred.max() <= 255
    ref = np.clip(np.rint(pred[0]), 0, 255).astype(np.uint8)
    for cl in (False, True):
        r = Restorer(model, device="cpu", channels_last=cl)
        assert _max_diff(r.restore(img), ref) <= 1
        # run_batch is rint(predict_float) by construction (same forward pass, rounded half to even)
        np.testing.assert_array_equal(r.run_batch(img[None]), np.rint(r.predict_float(img[None])).astype(np.uint8))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp32-winograd"])
def test_restore_is_the_rounded_float_prediction_in_every_precision(precision):
    """The promise of the module docstring, for each precision ``auto`` can pick on some CPU."""
    from facesr.inference.winograd import nnpack_available
    from facesr.models import build_model

    if precision == "fp32-winograd" and not nnpack_available():
        pytest.skip("this PyTorch build or CPU has no NNPACK")
    torch.manual_seed(0)
    wide = build_model("lqresnet", mid_channels=64, num_blocks=1).eval()  # 64 channels: Winograd converts it
    r = Restorer(wide, device="cpu", precision=precision)
    assert r.precision == precision
    img = _img(14, 11, seed=8)
    pred = r.predict_float(img[None])
    np.testing.assert_array_equal(r.restore(img), np.rint(pred[0]).astype(np.uint8))
    np.testing.assert_array_equal(r.run_batch(np.stack([img])), np.rint(pred).astype(np.uint8))


def test_numpy_kinds(model):
    r = Restorer(model, device="cpu")
    rgb, gray = _img(12, 10, seed=4), _img(12, 10, c=1, seed=5)
    out = r.restore(rgb)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (48, 40, 3)
    g = r.restore(gray)
    assert g.shape == (48, 40, 3)
    np.testing.assert_array_equal(g, r.restore(np.repeat(gray[..., None], 3, 2)))
    rgba = np.dstack([rgb, np.full((12, 10), 77, np.uint8)])
    o4 = r.restore(rgba)
    assert o4.shape == (48, 40, 4)
    np.testing.assert_array_equal(o4[..., :3], out)
    assert (o4[..., 3] == 77).all()
    with pytest.raises(ValueError, match="uint8"):
        r.restore(rgb.astype(np.float32))


def test_pil_kinds(model):
    r = Restorer(model, device="cpu")
    rgb = _img(12, 10, seed=6)
    out = r.restore(Image.fromarray(rgb))
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (40, 48)
    np.testing.assert_array_equal(np.asarray(out), r.restore(rgb))
    lum = r.restore(Image.fromarray(rgb[..., 0], "L"))
    assert lum.mode == "RGB" and lum.size == (40, 48)
    rgba = r.restore(Image.fromarray(np.dstack([rgb, np.full((12, 10), 200, np.uint8)]), "RGBA"))
    assert rgba.mode == "RGBA" and rgba.size == (40, 48) and (np.asarray(rgba)[..., 3] == 200).all()


def test_restore_batch_equals_single(model):
    r = Restorer(model, device="cpu", batch_size=2)
    imgs = [_img(16, 16, seed=s) for s in range(3)] + [_img(10, 14, seed=9)]
    batch = r.restore_batch(imgs)
    assert [b.shape for b in batch] == [(64, 64, 3)] * 3 + [(40, 56, 3)]
    for im, b in zip(imgs, batch):
        assert _max_diff(r.restore(im), b) <= 1


def test_bf16_runs_close(model):
    img = _img(16, 16, seed=7)
    fp32 = Restorer(model, device="cpu").restore(img)
    bf16 = Restorer(model, device="cpu", precision="bf16").restore(img)
    assert bf16.shape == fp32.shape and np.abs(bf16.astype(int) - fp32).mean() < 8


def test_from_checkpoint(tmp_path):
    m = MSRResNet(mid_channels=8, num_blocks=1)
    save_weights(tmp_path / "m.safetensors", m)
    r = Restorer.from_checkpoint(tmp_path / "m.safetensors", device="cpu", tile=8)
    assert r.scale == 4 and r.tile == 8 and r.backend == "torch"
    assert r.restore(_img(9, 11)).shape == (36, 44, 3)


def test_missing_shipped_model_is_a_clear_error(monkeypatch):
    import facesr.assets as assets

    monkeypatch.setattr(assets, "SHIPPED_RELPATH", ("weights", "does_not_exist.safetensors"))
    with pytest.raises(CheckpointError, match="no shipped model.*checkpoint"):
        Restorer.from_checkpoint(None)


def test_bad_options():
    m = MSRResNet(mid_channels=8, num_blocks=1)
    with pytest.raises(ValueError, match="tile size"):
        Restorer(m, tile=-1)
    with pytest.raises(ValueError, match="batch size"):
        Restorer(m, batch_size=0)
    with pytest.raises(ValueError, match="device"):
        Restorer(m, device="nonsense")
