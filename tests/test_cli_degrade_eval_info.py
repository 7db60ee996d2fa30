"""``facesr info``, ``facesr degrade`` and ``facesr eval`` through ``facesr.cli.main``."""

from __future__ import annotations

import copy
import csv
import json
import math

import cv2
import numpy as np
import pytest

from facesr.cli import main
from facesr.data.datasets import degrade_offline
from facesr.data.degradations import DegradationCfg
from facesr.io.images import read_rgb
from facesr.models import MSRResNet, save_weights


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, cmd, *needles):
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"facesr {cmd}: error: ")
    for n in needles:
        assert n in lines[0], (n, lines[0])


def png_info(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return img.shape, img.dtype


# ----------------------------------------------------------------------------- info


def test_info_json(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {num_blocks: 16}\n")
    rc, out, _ = run(capsys, "info", "--config", cfg, "--shape", 3, 32, 32, "--json")
    assert rc == 0
    info = json.loads(out)
    assert info["params"] == 1_517_571
    assert info["flops"] * 16 == 41_555_066_880  # counted at 32x32, scales with area
    assert info["input_shape"] == [3, 32, 32] and info["output_shape"] == [3, 128, 128]
    assert info["model"]["num_blocks"] == 16 and info["model"]["variant"] == "mmagic"
    assert info["fits"] is None

    rc, out, _ = run(
        capsys,
        "info",
        "--config",
        cfg,
        "--set",
        "model.num_blocks=24",
        "--shape",
        3,
        32,
        32,
        "--max-params",
        2_000_000,
        "--json",
    )
    info = json.loads(out)
    assert rc == 1 and info["params"] == 2_108_419 and info["fits"] is False
    assert info["flops"] * 16 == 51_218_743_296


def test_info_checkpoint_and_errors(capsys, tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, MSRResNet(num_blocks=2, mid_channels=8))
    rc, out, _ = run(capsys, "info", "--checkpoint", path, "--shape", 3, 16, 16, "--json")
    assert rc == 0 and json.loads(out)["model"]["num_blocks"] == 2
    bad = tmp_path / "bad.pth"
    bad.write_bytes(path.read_bytes()[:100] + b"garbage")
    rc, _, err = run(capsys, "info", "--checkpoint", bad)
    assert_one_line_error(rc, err, "info", "bad.pth")
    rc, _, err = run(capsys, "info", "--config", tmp_path / "nope.yaml")
    assert_one_line_error(rc, err, "info", "nope.yaml")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {num_block: 16}\n")
    rc, _, err = run(capsys, "info", "--config", cfg)
    assert_one_line_error(rc, err, "info", "model.num_block")


# ----------------------------------------------------------------------------- degrade


def test_degrade_writes_lq_and_params(capsys, tmp_path, face_dir):
    out_dir = tmp_path / "lq"
    rc, out, err = run(capsys, "degrade", face_dir, out_dir, "--seed", 3)
    assert rc == 0, err
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert pngs == ["face_a.png", "face_b.png", "face_c.png"]
    for name in pngs:
        assert png_info(out_dir / name) == ((128, 128, 3), np.uint8)
    lines = [json.loads(ln) for ln in (out_dir / "params.jsonl").read_text().splitlines()]
    assert [ln["file"] for ln in lines] == pngs
    rec = lines[0]
    assert rec["hq"] == "face_a.png" and rec["seed"] == 3 and rec["copy"] == 0
    assert rec["params"]["in_size"] == [512, 512] and rec["params"]["final"]["size"] == [128, 128]
    # Exactly what training validation (data.val_hq_dir + val_seed) produces.
    hq = read_rgb(face_dir / "face_b.png")
    expected, _ = degrade_offline(hq, DegradationCfg(), 3, "face_b")
    np.testing.assert_array_equal(read_rgb(out_dir / "face_b.png"), expected)
    assert not list(out_dir.glob(".*.tmp"))


def test_degrade_copies_and_workers_identical(capsys, tmp_path, face_dir):
    a, b = tmp_path / "w0", tmp_path / "w2"
    rc, _, err = run(capsys, "degrade", face_dir, a, "--copies", 2, "--seed", 1)
    assert rc == 0, err
    rc, _, err = run(capsys, "degrade", face_dir, b, "--copies", 2, "--seed", 1, "--workers", 2)
    assert rc == 0, err
    names = sorted(p.name for p in a.iterdir())
    assert names == [
        "face_a_0.png",
        "face_a_1.png",
        "face_b_0.png",
        "face_b_1.png",
        "face_c_0.png",
        "face_c_1.png",
        "params.jsonl",
    ]
    assert names == sorted(p.name for p in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    assert not np.array_equal(read_rgb(a / "face_a_0.png"), read_rgb(a / "face_a_1.png"))
    params = [json.loads(ln) for ln in (a / "params.jsonl").read_text().splitlines()]
    assert [(p["hq"], p["copy"]) for p in params][:2] == [("face_a.png", 0), ("face_a.png", 1)]


def test_degrade_refuses_overwrite_and_same_folder(capsys, tmp_path, face_dir):
    out_dir = tmp_path / "lq"
    assert run(capsys, "degrade", face_dir, out_dir)[0] == 0
    before = (out_dir / "face_a.png").read_bytes()
    rc, _, err = run(capsys, "degrade", face_dir, out_dir, "--seed", 9)
    assert_one_line_error(rc, err, "degrade", "already exist", "face_a.png", "--overwrite")
    assert (out_dir / "face_a.png").read_bytes() == before
    rc, _, err = run(capsys, "degrade", face_dir, out_dir, "--seed", 9, "--overwrite")
    assert rc == 0 and (out_dir / "face_a.png").read_bytes() != before
    rc, _, err = run(capsys, "degrade", face_dir, face_dir)
    assert_one_line_error(rc, err, "degrade", "HQ folder")
    rc, _, err = run(capsys, "degrade", face_dir, face_dir / ".." / face_dir.name)
    assert_one_line_error(rc, err, "degrade", "HQ folder")


def test_degrade_mmagic_rng(capsys, tmp_path, face_dir):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(capsys, "degrade", face_dir, a, "--rng", "mmagic", "--seed", 4)[0] == 0
    assert run(capsys, "degrade", face_dir, b, "--set", "degradation.rng=mmagic", "--seed", 4)[0] == 0
    for p in a.glob("*.png"):
        assert p.read_bytes() == (b / p.name).read_bytes()
    rec = json.loads((a / "params.jsonl").read_text().splitlines()[0])
    assert rec["params"]["rng"] == "mmagic" and rec["params"]["seed"] == 4


def test_degrade_bad_inputs(capsys, tmp_path, face_dir):
    rc, _, err = run(capsys, "degrade", tmp_path / "missing", tmp_path / "o1")
    assert_one_line_error(rc, err, "degrade", "missing", "not found")
    txt = tmp_path / "txtonly"
    txt.mkdir()
    (txt / "notes.txt").write_text("hello")
    rc, _, err = run(capsys, "degrade", txt, tmp_path / "o2")
    assert_one_line_error(rc, err, "degrade", "txtonly", "no images")
    rc, _, err = run(capsys, "degrade", face_dir, tmp_path / "o3", "--copies", 0)
    assert_one_line_error(rc, err, "degrade", "--copies")
    rc, _, err = run(capsys, "degrade", face_dir, tmp_path / "o4", "--set", "degradation.blur.sigma=1")
    assert_one_line_error(rc, err, "degrade", "degradation.blur.sigma")


def test_degrade_skips_truncated_png(capsys, tmp_path, face_dir):
    good = (face_dir / "face_a.png").read_bytes()
    (face_dir / "broken.png").write_bytes(good[: len(good) // 3])
    (face_dir / "empty.png").write_bytes(b"")
    out_dir = tmp_path / "lq"
    rc, out, err = run(capsys, "degrade", face_dir, out_dir)
    assert rc == 1
    assert "broken.png" in err and "empty.png" in err and "skipped 2" in err
    assert sorted(p.name for p in out_dir.glob("*.png")) == ["face_a.png", "face_b.png", "face_c.png"]
    assert len((out_dir / "params.jsonl").read_text().splitlines()) == 3


def test_degrade_odd_hq_formats(capsys, tmp_path, face):
    d = tmp_path / "hq"
    d.mkdir()
    rgb = face(7)
    cv2.imwrite(str(d / "gray.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    rgba = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 200, np.uint8)])
    cv2.imwrite(str(d / "rgba.png"), rgba)
    cv2.imwrite(str(d / "deep16.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(d / "small.png"), face(8, 256)[..., ::-1])
    cv2.imwrite(str(d / "photo.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out_dir = tmp_path / "lq"
    rc, _, err = run(capsys, "degrade", d, out_dir)
    assert rc == 0, err
    assert err.count("area-resizing") == 1 and "small.png" in err  # warned once
    for name in ("gray", "rgba", "deep16", "small", "photo"):
        assert png_info(out_dir / f"{name}.png") == ((128, 128, 3), np.uint8)
    # 16-bit input is read as its 8-bit equivalent: same LQ as the 8-bit image.
    cv2.imwrite(str(d / "deep16.png"), rgb[..., ::-1])  # rewrite as 8-bit under the same stem
    rc, _, _ = run(capsys, "degrade", d, tmp_path / "lq8")
    assert rc == 0
    assert (out_dir / "deep16.png").read_bytes() == (tmp_path / "lq8" / "deep16.png").read_bytes()


# ----------------------------------------------------------------------------- eval (folders)


def _bicubic_pairs(tmp_path, face, n=3):
    """GT faces 128x128, LQ = area /4, predictions = bicubic x4 of the LQ (uint8)."""
    gt_dir, lq_dir, pred_dir = tmp_path / "gt", tmp_path / "lq", tmp_path / "pred"
    for d in (gt_dir, lq_dir, pred_dir):
        d.mkdir()
    gts, preds = {}, {}
    for i in range(n):
        gt = face(20 + i, 128)
        lq = cv2.resize(gt, (32, 32), interpolation=cv2.INTER_AREA)
        pred = cv2.resize(lq, (128, 128), interpolation=cv2.INTER_CUBIC)
        stem = f"{i:05d}"
        for d, img in ((gt_dir, gt), (lq_dir, lq), (pred_dir, pred)):
            cv2.imwrite(str(d / f"{stem}.png"), img[..., ::-1])
        gts[stem], preds[stem] = gt, pred
    return gt_dir, lq_dir, pred_dir, gts, preds


def _psnr64(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def test_eval_folders_matches_numpy_psnr(capsys, tmp_path, face):
    gt_dir, _, pred_dir, gts, preds = _bicubic_pairs(tmp_path, face)
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    rc, out, err = run(capsys, "eval", pred_dir, gt_dir, "--json", js, "--csv", cs)
    assert rc == 0, err
    res = json.loads(js.read_text())
    assert set(res) == {"mean", "per_image"}
    assert set(res["mean"]) == {"psnr", "ssim", "psnr_challenge"}
    assert sorted(res["per_image"]) == sorted(gts)
    for stem in gts:
        ref = _psnr64(preds[stem], gts[stem])
        assert abs(res["per_image"][stem]["psnr_challenge"] - ref) < 1e-6
        assert abs(res["per_image"][stem]["psnr"] - ref) < 1e-4  # float32 accumulation (MMagic)
        assert 0 < res["per_image"][stem]["ssim"] < 1
    mean_ref = np.mean([_psnr64(preds[s], gts[s]) for s in gts])
    assert abs(res["mean"]["psnr_challenge"] - mean_ref) < 1e-6
    assert "mean" in out and f"{mean_ref:.4f}" in out
    rows = list(csv.DictReader(cs.open()))
    assert [r["stem"] for r in rows] == sorted(gts)
    assert abs(float(rows[0]["psnr_challenge"]) - res["per_image"][rows[0]["stem"]]["psnr_challenge"]) < 1e-9


def test_eval_crop_and_y_options(capsys, tmp_path, face):
    gt_dir, _, pred_dir, gts, preds = _bicubic_pairs(tmp_path, face, n=1)
    js = tmp_path / "r.json"
    assert run(capsys, "eval", pred_dir, gt_dir, "--crop-border", 4, "--y", "--json", js)[0] == 0
    r = json.loads(js.read_text())["per_image"]["00000"]
    from facesr.evaluation import metrics

    assert r["psnr"] == pytest.approx(metrics.psnr(preds["00000"], gts["00000"], 4, True), abs=1e-9)
    assert r["psnr_challenge"] == pytest.approx(_psnr64(preds["00000"], gts["00000"]), abs=1e-6)


def test_eval_unmatched_pairs_refused(capsys, tmp_path, face):
    gt_dir, _, pred_dir, _, _ = _bicubic_pairs(tmp_path, face)
    (pred_dir / "00001.png").rename(pred_dir / "extra.png")
    rc, _, err = run(capsys, "eval", pred_dir, gt_dir)
    assert_one_line_error(rc, err, "eval", "unmatched", "extra", "00001")


def test_eval_size_mismatch_refused(capsys, tmp_path, face):
    gt_dir, _, pred_dir, _, _ = _bicubic_pairs(tmp_path, face)
    cv2.imwrite(str(pred_dir / "00002.png"), np.zeros((64, 64, 3), np.uint8))
    rc, _, err = run(capsys, "eval", pred_dir, gt_dir)
    assert_one_line_error(rc, err, "eval", "00002", "64x64", "128x128")


def test_eval_usage_errors(capsys, tmp_path, face):
    gt_dir, lq_dir, pred_dir, _, _ = _bicubic_pairs(tmp_path, face, n=1)
    rc, _, err = run(capsys, "eval", pred_dir)
    assert_one_line_error(rc, err, "eval", "PRED_DIR GT_DIR")
    rc, _, err = run(capsys, "eval", pred_dir, gt_dir, "--save", tmp_path / "s")
    assert_one_line_error(rc, err, "eval", "--save")
    rc, _, err = run(capsys, "eval", "--lq", lq_dir)
    assert_one_line_error(rc, err, "eval", "--gt")


# ----------------------------------------------------------------------------- eval (checkpoint)


def test_eval_checkpoint_mode(capsys, tmp_path, face, randomise):
    gt_dir, lq_dir, _, gts, _ = _bicubic_pairs(tmp_path, face)
    model = randomise(MSRResNet(num_blocks=1, mid_channels=8), seed=5, std=0.01).eval()
    ckpt = tmp_path / "m.safetensors"
    save_weights(ckpt, model, ema=copy.deepcopy(model))
    save, js, cs = tmp_path / "saved", tmp_path / "r.json", tmp_path / "r.csv"
    rc, out, err = run(
        capsys,
        "eval",
        "--checkpoint",
        ckpt,
        "--lq",
        lq_dir,
        "--gt",
        gt_dir,
        "--save",
        save,
        "--json",
        js,
        "--csv",
        cs,
        "--ema",
    )
    assert rc == 0, err
    assert "reference (MMagic, unrounded)" in out and "challenge (uint8 PNG)" in out and "bicubic" in out
    res = json.loads(js.read_text())
    assert set(res["mean"]) == {"psnr", "ssim", "psnr_challenge"}
    assert sorted(res["per_image"]) == sorted(gts)
    # The saved uint8 predictions score exactly the reported challenge PSNR.
    for stem, gt in gts.items():
        pred = read_rgb(save / f"{stem}.png")
        assert pred.shape == (128, 128, 3)
        assert abs(res["per_image"][stem]["psnr_challenge"] - _psnr64(pred, gt)) < 1e-9
    # The bicubic baseline line is INTER_CUBIC x4 of the LQ.
    for stem, gt in gts.items():
        bic = cv2.resize(read_rgb(lq_dir / f"{stem}.png"), (128, 128), interpolation=cv2.INTER_CUBIC)
        assert abs(res["bicubic"]["per_image"][stem]["psnr_challenge"] - _psnr64(bic, gt)) < 1e-9
    assert len(list(csv.DictReader(cs.open()))) == len(gts)
    # Predictions are not written over inputs.
    rc, _, err = run(capsys, "eval", "--checkpoint", ckpt, "--lq", lq_dir, "--gt", gt_dir, "--save", lq_dir)
    assert_one_line_error(rc, err, "eval", "--lq")


def test_eval_checkpoint_size_mismatch(capsys, tmp_path, face):
    gt_dir, lq_dir, _, _, _ = _bicubic_pairs(tmp_path, face, n=2)
    cv2.imwrite(str(lq_dir / "00001.png"), np.zeros((30, 30, 3), np.uint8))
    ckpt = tmp_path / "m.safetensors"
    save_weights(ckpt, MSRResNet(num_blocks=1, mid_channels=8))
    rc, _, err = run(capsys, "eval", "--checkpoint", ckpt, "--lq", lq_dir, "--gt", gt_dir)
    assert_one_line_error(rc, err, "eval", "00001", "30x30")


def test_eval_default_model_is_the_shipped_one(capsys, tmp_path, face, monkeypatch):
    import facesr.assets as assets

    gt_dir, lq_dir, _, _, _ = _bicubic_pairs(tmp_path, face, n=1)
    ckpt = tmp_path / "shipped.safetensors"
    save_weights(ckpt, MSRResNet(num_blocks=1, mid_channels=8))
    monkeypatch.setattr(assets, "shipped_checkpoint", lambda: ckpt)
    rc, out, err = run(capsys, "eval", "--lq", lq_dir, "--gt", gt_dir)
    assert rc == 0, err
    assert "shipped model shipped.safetensors" in out
