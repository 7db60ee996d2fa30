"""The batched torch degradation (data.degrade_on: gpu), checked on CPU tensors against the exact OpenCV path."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from facesr.data import degradations as D
from facesr.data.gpu_degradations import GpuDegrader, jpeg_approx, quant_tables, resize_matrix

N_FACES = 24


def _to_batch(imgs: list[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 list -> float (N, 3, H, W) on the 0-255 scale."""
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float()


def _bicubic_psnr(lq: np.ndarray, gt: np.ndarray) -> float:
    up = cv2.resize(lq, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    return float(10 * np.log10(255.0 ** 2 / np.mean((up - gt.astype(np.float64)) ** 2)))


@pytest.fixture(scope="module")
def faces():
    from conftest import make_face
    return [make_face(1000 + i) for i in range(N_FACES)]


@pytest.fixture(scope="module")
def degrader():
    return GpuDegrader(D.DegradationCfg(), seed=11, device="cpu")


@pytest.fixture(scope="module")
def both_paths(faces, degrader):
    """LQ of the same faces with the same sampled records: exact OpenCV path and torch path (uint8 HxWx3)."""
    records = [degrader.sample(i, (512, 512))[0] for i in range(N_FACES)]
    exact = [D.apply_params(hq, p) for hq, p in zip(faces, records)]
    approx = []
    for s in range(0, N_FACES, 12):
        lq = degrader.apply(_to_batch(faces[s:s + 12]), records[s:s + 12])
        approx.extend(lq.permute(0, 2, 3, 1).numpy().astype(np.uint8))
    return records, exact, approx


def test_mean_bicubic_psnr_matches_exact_path(faces, both_paths):
    records, exact, approx = both_paths
    p_exact = np.array([_bicubic_psnr(lq, gt) for lq, gt in zip(exact, faces)])
    p_torch = np.array([_bicubic_psnr(lq, gt) for lq, gt in zip(approx, faces)])
    assert abs(p_torch.mean() - p_exact.mean()) < 0.2, (p_torch.mean(), p_exact.mean())
    # Per image too (same parameters, same noise field): the paths differ by codec/rounding details only.
    assert np.abs(p_torch - p_exact).max() < 0.3
    # The parameters exercised both kernel types and all three down-resize interpolations.
    assert {p.blur["kernel"] for p in records} == {"iso", "aniso"}
    assert {p.down["interp"] for p in records} == {"bilinear", "area", "bicubic"}


def test_lq_pixels_close_to_exact_path(both_paths):
    _, exact, approx = both_paths
    d = np.abs(np.stack(approx).astype(np.float64) - np.stack(exact))
    assert d.mean() < 1.5  # levels (0-255); measured ~0.6
    assert 10 * np.log10(255.0 ** 2 / np.mean(d ** 2)) > 38  # dB between the two LQs; measured ~46.5


def test_call_shapes_dtypes_ranges_and_determinism(faces):
    deg = GpuDegrader(D.DegradationCfg(), seed=5, device=torch.device("cpu"))
    gt = _to_batch(faces[:3]) / 255.0
    lq, gt_out = deg(gt, first_sample_no=40)
    assert lq.shape == (3, 3, 128, 128) and lq.dtype == torch.float32
    assert gt_out.shape == (3, 3, 512, 512) and gt_out.dtype == torch.float32
    assert float(lq.min()) >= 0.0 and float(lq.max()) <= 1.0
    np.testing.assert_allclose((lq * 255).numpy(), np.rint((lq * 255).numpy()), atol=1e-3)  # 8-bit levels
    torch.testing.assert_close(gt_out, gt)
    lq2, _ = deg(gt, first_sample_no=40)
    assert torch.equal(lq, lq2)  # same (seed, sample_no) -> same LQ
    lq3, _ = GpuDegrader(D.DegradationCfg(), seed=6, device="cpu")(gt, first_sample_no=40)
    assert not torch.equal(lq, lq3)
    # sample i of the batch is training sample first + i * stride, whatever the batch
    lq4, _ = deg(gt[1:2], first_sample_no=41)
    assert (lq4[0] - lq[1]).abs().max() <= 1.0 / 255 + 1e-6
    lq5, _ = deg(gt[[2, 0]], first_sample_no=38, stride=2)  # samples 38 and 40
    assert (lq5[1] - lq[0]).abs().max() <= 1.0 / 255 + 1e-6


def test_crop_is_aligned_with_full_lq(faces):
    full = GpuDegrader(D.DegradationCfg(), seed=3, device="cpu")
    crop = GpuDegrader(D.DegradationCfg(), seed=3, device="cpu", crop_size=32)
    gt = _to_batch(faces[3:5]) / 255.0
    lq_full, _ = full(gt, 7)
    lq, gt_c = crop(gt, 7)
    assert lq.shape == (2, 3, 32, 32) and gt_c.shape == (2, 3, 128, 128)
    for i in range(2):
        top, left = crop.sample(7 + i, (512, 512))[1]
        torch.testing.assert_close(lq[i], lq_full[i, :, top:top + 32, left:left + 32])
        torch.testing.assert_close(gt_c[i], gt[i, :, top * 4:top * 4 + 128, left * 4:left * 4 + 128])


def test_device_noise_mode_is_statistically_equivalent(faces):
    host = GpuDegrader(D.DegradationCfg(), seed=2, device="cpu", noise="host")
    dev = GpuDegrader(D.DegradationCfg(), seed=2, device="cpu", noise="device")
    gt = _to_batch(faces[:4]) / 255.0
    a, _ = host(gt, 0)
    b, _ = dev(gt, 0)
    assert not torch.equal(a, b)  # another realisation of the same noise
    pa = [_bicubic_psnr((x * 255).permute(1, 2, 0).numpy().round().astype(np.uint8), f) for x, f in zip(a, faces)]
    pb = [_bicubic_psnr((x * 255).permute(1, 2, 0).numpy().round().astype(np.uint8), f) for x, f in zip(b, faces)]
    assert abs(np.mean(pa) - np.mean(pb)) < 0.1


@pytest.mark.parametrize("order", ["mmagic", "rgb"])
@pytest.mark.parametrize("quality", [50, 75, 95])
def test_jpeg_model_close_to_libjpeg(faces, order, quality):
    img = np.ascontiguousarray(faces[quality % N_FACES][:200, :180])  # not multiples of 16
    ref = D.jpeg_roundtrip(img, quality, order).astype(np.float64)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    xp = torch.nn.functional.pad(x, (0, 192 - 180, 0, 208 - 200), mode="replicate")  # edge blocks, as libjpeg
    out = jpeg_approx(xp, [quality], order)[0, :, :200, :180].permute(1, 2, 0).numpy()
    assert 10 * np.log10(255.0 ** 2 / np.mean((out - ref) ** 2)) > 42  # measured 46-52 dB
    # same distortion as libjpeg: PSNR to the input within 0.1 dB
    hq = img.astype(np.float64)
    p_ref = 10 * np.log10(255.0 ** 2 / np.mean((ref - hq) ** 2))
    p_out = 10 * np.log10(255.0 ** 2 / np.mean((out - hq) ** 2))
    assert abs(p_ref - p_out) < 0.1


def test_quant_tables_follow_libjpeg_scaling():
    l50, c50 = quant_tables(50)
    assert l50[0, 0] == 16 and c50[0, 0] == 17 and c50[7, 7] == 99  # quality 50 = the Annex K tables
    l100, _ = quant_tables(100)
    assert (l100 == 1).all()
    l75, _ = quant_tables(75)
    assert l75[0, 0] == 8  # (16 * 50 + 50) // 100
    l10, _ = quant_tables(10)
    assert l10.max() == 255  # clamped to baseline


@pytest.mark.parametrize("interp", ["bilinear", "bicubic", "area", "lanczos"])
def test_resize_matrices_follow_cv2_float(interp):
    rng = np.random.default_rng(0)
    flag = D.INTERP[interp]
    for n_in, n_out in [(512, 37), (512, 301), (100, 512), (97, 96), (37, 53), (512, 128)]:
        img = rng.uniform(0, 255, (n_in, 5)).astype(np.float32)
        ref = cv2.resize(img, (5, n_out), interpolation=flag)
        m = resize_matrix(n_in, n_out, interp, n_in >= n_out)
        np.testing.assert_allclose(m @ img.astype(np.float64), ref, atol=0.02)


def test_skipped_steps_and_gray_noise(faces):
    cfg = D.DegradationCfg()
    cfg.blur.prob = 0.0
    cfg.jpeg.prob = 0.0
    cfg.noise.gaussian_gray_noise_prob = 1.0
    deg = GpuDegrader(cfg, seed=1, device="cpu")
    recs = [deg.sample(i, (512, 512))[0] for i in range(2)]
    assert all(p.blur is None and p.jpeg is None and p.noise["gray"] for p in recs)
    out = deg.apply(_to_batch(faces[:2]), recs).permute(0, 2, 3, 1).numpy()
    for o, hq, p in zip(out, faces, recs):
        ref = D.apply_params(hq, p).astype(np.float64)
        assert np.abs(o - ref).mean() < 1.0


def test_bad_inputs_are_refused(faces):
    deg = GpuDegrader(D.DegradationCfg(), seed=0, device="cpu")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        deg(torch.zeros(3, 512, 512), 0)
    with pytest.raises(ValueError, match="noise"):
        GpuDegrader(D.DegradationCfg(), seed=0, noise="gpu")


def test_trainer_runs_with_gpu_degradation_and_crop(tmp_path):
    """data.degrade_on=gpu end to end (on the CPU device): full GT from the dataset, crop after degrading."""
    import json

    from conftest import make_face, write_rgb_png

    from facesr.config import load_config
    from facesr.data.datasets import HQDegradeDataset
    from facesr.training.trainer import train

    hq = tmp_path / "hq"
    hq.mkdir()
    for i in range(3):
        write_rgb_png(hq / f"f{i}.png", make_face(i, size=64))
    cfg = load_config(None, [f"data.train_hq_dir={hq}", "data.hq_size=64", "degradation.up.size=64",
                             "degradation.final.size=16", "data.crop_size=8", "data.degrade_on=gpu",
                             "data.num_workers=0", "model.mid_channels=8", "model.num_blocks=1",
                             "train.batch_size=2", "train.max_iters=3", "train.log_interval=1",
                             "train.device=cpu", "train.ema_momentum=null"])
    ds = HQDegradeDataset(str(hq), cfg.degradation, 0, hq_size=64, crop_size=8, degrade=False)
    lq, gt = ds[(0, 0)]
    assert lq.numel() == 0 and tuple(gt.shape) == (3, 64, 64)  # the GPU degrader crops, not the dataset
    train(cfg, tmp_path / "wd", quiet=True)
    logs = [json.loads(line) for line in (tmp_path / "wd" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if r["kind"] == "train"]
    assert len(losses) == 3 and all(np.isfinite(losses))
