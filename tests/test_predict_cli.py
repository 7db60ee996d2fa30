"""``facesr predict`` end to end on a temp folder of awkward inputs (small random model, CPU)."""

from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from facesr.cli import main
from facesr.io.images import read_any


def _rng_img(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_rng_img(16, 12, 0)).save(d / "rgb.png")
    Image.fromarray(_rng_img(16, 12, 1)[..., 0], "L").save(d / "gray.png")
    rgba = np.dstack([_rng_img(10, 14, 2), np.full((10, 14), 90, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(d / "alpha.png")
    deep = (np.random.default_rng(3).integers(0, 65536, (16, 12, 3))).astype(np.uint16)
    cv2.imwrite(str(d / "deep16.png"), deep)
    # Stored 16 wide x 8 high: left half red, right half blue; EXIF orientation 6 = rotate 90 deg clockwise.
    stored = np.zeros((8, 16, 3), np.uint8)
    stored[:, :8] = (230, 20, 20)
    stored[:, 8:] = (20, 20, 230)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(d / "rotated.jpg", quality=95, exif=exif.tobytes())
    png = (d / "rgb.png").read_bytes()
    (d / "truncated.png").write_bytes(png[:60])
    (d / "notes.jpg").write_bytes(b"this is not an image\n")
    return d


def _run(argv, capsys):
    rc = main(["predict", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_predict_awkward_inputs(tmp_path, inputs, ckpt, capsys):
    out = tmp_path / "out"
    rc, so, se = _run(
        [str(inputs), "--out", str(out), "--checkpoint", ckpt, "--zip", str(tmp_path / "sub.zip")], capsys
    )
    assert rc == 1
    assert "truncated.png" in se and "notes.jpg" in se and "skipped 2" in se
    names = sorted(p.name for p in out.iterdir())
    assert names == ["alpha.png", "deep16.png", "gray.png", "rgb.png", "rotated.png"]

    def raw(name):
        return cv2.imdecode(np.fromfile(str(out / name), np.uint8), cv2.IMREAD_UNCHANGED)

    for name in ("rgb.png", "gray.png", "deep16.png"):
        a = raw(name)
        assert a.dtype == np.uint8 and a.shape == (64, 48, 3), name
    a = raw("alpha.png")
    assert a.shape == (40, 56, 4) and (a[..., 3] == 90).all()
    # EXIF applied: 16x8 stored -> 8 wide x 16 high displayed -> 32 x 64 output, red on top, blue below.
    rot, _ = read_any(out / "rotated.png")
    assert rot.shape == (64, 32, 3)
    top, bottom = rot[:24].reshape(-1, 3).mean(0), rot[40:].reshape(-1, 3).mean(0)
    assert top[0] > top[2] + 100 and bottom[2] > bottom[0] + 100

    with zipfile.ZipFile(tmp_path / "sub.zip") as zf:
        assert sorted(zf.namelist()) == names and all("/" not in n for n in zf.namelist())
        for n in names:
            assert zf.read(n) == (out / n).read_bytes()
            assert Image.open(io.BytesIO(zf.read(n))).size == Image.open(out / n).size


def test_refuses_to_write_into_input_folder(tmp_path, ckpt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_rng_img(8, 8, 0)).save(d / "a.jpg")
    rc, _, se = _run([str(d), "--out", str(d), "--checkpoint", ckpt], capsys)
    assert rc == 2 and "input folder" in se and len(se.strip().splitlines()) == 1
    rc, _, se = _run([str(d / "a.jpg"), "--out", str(d), "--checkpoint", ckpt], capsys)
    assert rc == 2 and "holds input" in se
    assert sorted(p.name for p in d.iterdir()) == ["a.jpg"]


def test_no_overwrite_without_flag(tmp_path, ckpt, capsys):
    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    for k in range(3):
        Image.fromarray(_rng_img(8, 8, k)).save(d / f"im{k}.png")
    assert _run([str(d), "--out", str(out), "--checkpoint", ckpt], capsys)[0] == 0
    (out / "im1.png").write_bytes(b"keep me")
    rc, _, se = _run([str(d / "*.png"), "--out", str(out), "--checkpoint", ckpt], capsys)
    assert rc == 2 and "--overwrite" in se and "im0.png" in se
    assert (out / "im1.png").read_bytes() == b"keep me"
    rc, so, _ = _run([str(d / "*.png"), "--out", str(out), "--checkpoint", ckpt, "--overwrite"], capsys)
    assert rc == 0 and "wrote 3" in so
    assert read_any(out / "im1.png")[0].shape == (32, 32, 3)


def test_same_stem_and_missing_input(tmp_path, ckpt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_rng_img(8, 8, 0)).save(d / "x.png")
    Image.fromarray(_rng_img(8, 8, 1)).save(d / "x.jpg")
    rc, _, se = _run([str(d), "--out", str(tmp_path / "o"), "--checkpoint", ckpt], capsys)
    assert rc == 2 and "share a stem" in se and not (tmp_path / "o").exists()
    rc, _, se = _run([str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--checkpoint", ckpt], capsys)
    assert rc == 2 and "nope" in se


def test_tile_and_batch_options_give_same_pixels(tmp_path, ckpt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    for k in range(3):
        Image.fromarray(_rng_img(20, 24, k)).save(d / f"im{k}.png")
    base = ["--checkpoint", ckpt]
    assert _run([str(d), "--out", str(tmp_path / "a")] + base, capsys)[0] == 0
    assert (
        _run(
            [str(d), "--out", str(tmp_path / "b"), "--tile", "8", "--tile-overlap", "8", "--batch-size", "2"] + base,
            capsys,
        )[0]
        == 0
    )
    for k in range(3):
        a, b = read_any(tmp_path / "a" / f"im{k}.png")[0], read_any(tmp_path / "b" / f"im{k}.png")[0]
        assert np.abs(a.astype(int) - b).max() <= 1
    rc, _, se = _run([str(d), "--out", str(tmp_path / "c"), "--tile", "-2"] + base, capsys)
    assert rc == 2 and "--tile" in se


def test_bad_checkpoint_is_one_line(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_rng_img(8, 8, 0)).save(d / "a.png")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 40)
    rc, _, se = _run([str(d), "--out", str(tmp_path / "o"), "--checkpoint", str(bad)], capsys)
    assert rc == 2 and se.startswith("facesr predict: error:") and "bad.safetensors" in se
