"""``facesr restore`` end to end on a temp folder of awkward inputs (small random model, fake detector).

The detector is replaced by a perfect fake (the faces the test pasted), so these run without the
'faces' extra; tests/test_faces_detect.py runs the command with the real detector.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

import faces_synth as S
from facesr.cli import main
from facesr.io.images import read_any


@pytest.fixture()
def fake_detector(monkeypatch):
    """Every photo 'contains' one face at a fixed place (or none, for photos smaller than it)."""
    from facesr.faces import detect

    _, _, faces = S.make_photo([(0.5, 10.0, (60.0, 50.0))], h=100, w=120)

    def load(name="hog", **kw):
        def det(rgb):
            return S.FakeDetector(faces)(rgb) if rgb.shape[0] >= 100 and rgb.shape[1] >= 100 else []

        return det

    monkeypatch.setattr(detect, "load_detector", load)
    return faces


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels but which holds (almost) no data."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.fixture()
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    lq, _, _ = S.make_photo([(0.5, 10.0, (60.0, 50.0))], h=100, w=120)
    Image.fromarray(lq).save(d / "photo.png")
    Image.fromarray(lq[..., 0], "L").save(d / "gray.png")
    Image.fromarray(np.dstack([lq, np.full((100, 120), 90, np.uint8)]), "RGBA").save(d / "alpha.png")
    cv2.imwrite(str(d / "deep16.png"), (lq[..., ::-1].astype(np.uint16) * 257))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(lq[:64, :96]).save(d / "rotated.jpg", quality=95, exif=exif.tobytes())
    (d / "truncated.png").write_bytes((d / "photo.png").read_bytes()[:80])
    (d / "notes.jpg").write_bytes(b"this is not an image\n")
    (d / "giant.png").write_bytes(_png_header_only(100_000, 100_000))
    return d


def test_restore_folder_of_awkward_inputs(tmp_path, inputs, ckpt, fake_detector, capsys):
    out = tmp_path / "out"
    rc = main(["restore", str(inputs), "--out", str(out), "--checkpoint", ckpt])
    cap = capsys.readouterr()
    assert rc == 1  # three inputs skipped
    assert "skipped 3 photo(s)" in cap.err
    for name in ("truncated.png", "notes.jpg", "giant.png"):
        line = next(l for l in cap.err.splitlines() if name in l)
        assert "Traceback" not in cap.err and line.strip().startswith(str(inputs))
    assert "100000x100000" in cap.err and "over the cap" in cap.err
    assert "wrote 5 photo(s)" in cap.out and "4 face(s) restored" in cap.out
    assert "rotated.jpg: no face restored" in cap.err  # 96x64 photo: the fake finds nothing there
    rgb, alpha = read_any(out / "photo.png")
    assert rgb.shape == (200, 240, 3) and alpha is None  # default --upscale 2
    rgb, alpha = read_any(out / "alpha.png")
    assert alpha is not None and alpha.shape == (200, 240) and int(np.median(alpha)) == 90
    assert read_any(out / "gray.png")[0].shape == (200, 240, 3)
    assert read_any(out / "deep16.png")[0].shape == (200, 240, 3)
    assert read_any(out / "rotated.png")[0].shape == (192, 128, 3)  # EXIF rotation applied: 64 wide, 96 high
    assert sorted(p.name for p in out.iterdir()) == ["alpha.png", "deep16.png", "gray.png", "photo.png", "rotated.png"]


def test_upscale_background_and_save_faces(tmp_path, inputs, ckpt, fake_detector):
    out = tmp_path / "out"
    rc = main(
        [
            "restore",
            str(inputs / "photo.png"),
            "--out",
            str(out),
            "--checkpoint",
            ckpt,
            "--upscale",
            "4",
            "--bg",
            "lanczos",
            "--save-faces",
        ]
    )
    assert rc == 0
    assert read_any(out / "photo.png")[0].shape == (400, 480, 3)
    folder = out / "photo_faces"
    doc = json.loads((folder / "faces.json").read_text())
    assert doc["upscale"] == 4 and doc["background"] == "lanczos" and doc["width"] == 120 and doc["height"] == 100
    (face,) = doc["faces"]
    assert np.allclose(face["landmarks"], fake_detector[0].landmarks, atol=0.01)
    assert len(face["affine_to_aligned_512"]) == 2 and len(face["box"]) == 4
    assert read_any(folder / face["files"]["input"])[0].shape == (128, 128, 3)
    assert read_any(folder / face["files"]["restored"])[0].shape == (512, 512, 3)


def test_min_face_skips_and_counts(tmp_path, inputs, ckpt, fake_detector, capsys):
    rc = main(
        [
            "restore",
            str(inputs / "photo.png"),
            "--out",
            str(tmp_path / "o"),
            "--checkpoint",
            ckpt,
            "--min-face",
            "500",
            "--upscale",
            "1",
        ]
    )
    cap = capsys.readouterr()
    assert rc == 0 and "0 face(s) restored, 1 face(s) narrower than 500 px" in cap.out
    assert "no face restored (1 too small)" in cap.err


def test_refuses_input_folder_and_overwrite(tmp_path, inputs, ckpt, fake_detector, capsys):
    assert main(["restore", str(inputs), "--out", str(inputs), "--checkpoint", ckpt]) == 2
    assert "is the input folder" in capsys.readouterr().err
    out = tmp_path / "out"
    args = ["restore", str(inputs / "photo.png"), "--out", str(out), "--checkpoint", ckpt, "--save-faces"]
    assert main(args) == 0
    before = (out / "photo.png").stat().st_mtime_ns
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "exist" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "photo.png").stat().st_mtime_ns == before
    (out / "photo.png").unlink()
    assert main(args) == 2  # the faces folder alone still counts as an output
    assert main(args + ["--overwrite"]) == 0
    assert not [p for p in out.rglob("*.tmp")]


def test_max_pixels_is_checked_before_decoding(tmp_path, inputs, ckpt, fake_detector, capsys):
    rc = main(
        [
            "restore",
            str(inputs / "photo.png"),
            "--out",
            str(tmp_path / "o"),
            "--checkpoint",
            ckpt,
            "--max-pixels",
            "0.005",  # megapixels: 5,000 pixels
        ]
    )
    assert rc == 1 and "120x100" in capsys.readouterr().err


def test_missing_extra_is_one_line(tmp_path, inputs, ckpt, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if the 'faces' extra were not installed
    rc = main(["restore", str(inputs / "photo.png"), "--out", str(tmp_path / "o"), "--checkpoint", ckpt])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("facesr restore: error:") and 'pip install "facesr[faces]"' in err
    assert not (tmp_path / "o").exists()


def test_detector_choice_reaches_the_loader(tmp_path, inputs, ckpt, monkeypatch):
    from facesr.faces import detect

    asked = []

    def load(name="hog", **kw):
        asked.append(name)
        return lambda rgb: []

    monkeypatch.setattr(detect, "load_detector", load)
    rc = main(
        [
            "restore",
            str(inputs / "photo.png"),
            "--out",
            str(tmp_path / "o"),
            "--checkpoint",
            ckpt,
            "--detector",
            "hog-upright",
            "--upscale",
            "1",
        ]
    )
    assert rc == 0 and asked == ["hog-upright"]


def test_bad_video_options_are_one_line(tmp_path, inputs, ckpt, fake_detector, capsys):
    for extra in (["--crf", "60"], ["--max-frames", "0"], ["--start", "-1"], ["--duration", "0"]):
        rc = main(["restore", str(inputs / "photo.png"), "--out", str(tmp_path / "o"), "--checkpoint", ckpt, *extra])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1 and extra[0] in err


def test_help_lists_restore(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "restore" in capsys.readouterr().out
