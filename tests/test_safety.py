"""Hostile inputs: every case gives a correct result or one line (no traceback), and no user file is lost.

The hostile files are built here: PNG/JPEG headers with struct/zlib, pickles, YAML bombs; a full disk is a
monkeypatched write raising ENOSPC (the tests run as root, so chmod would not block writes).
"""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facesr.cli import main
from facesr.models import MSRResNet, save_weights

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


# ----------------------------------------------------------------------------- hostile files


def png_header(path: Path, w: int, h: int, pad: int = 0) -> Path:
    """A PNG whose IHDR says ``w x h`` (8-bit RGB); one tiny IDAT (whose data does not match), optional padding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    idat = zlib.compress(b"\x00" * 1000 + b"\x00" * pad, 9)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + b"\x00" * pad
        + chunk(b"IEND", b"")
    )
    return path


def jpeg_header(path: Path, w: int, h: int) -> Path:
    """A baseline JPEG whose SOF0 says ``w x h`` (3 components); no image data."""
    seg = lambda marker, data: b"\xff" + marker + struct.pack(">H", len(data) + 2) + data
    sof = struct.pack(">BHHB", 8, h, w, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    sos = struct.pack(">B", 3) + b"\x01\x00\x02\x00\x03\x00" + b"\x00\x3f\x00"
    path.write_bytes(
        b"\xff\xd8"
        + seg(b"\xe0", b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + seg(b"\xc0", sof)
        + seg(b"\xda", sos)
        + b"\x00" * 16
        + b"\xff\xd9"
    )
    return path


def small_png(path: Path, h: int = 16, w: int = 16, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def ckpt(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    save_weights(path, MSRResNet(mid_channels=8, num_blocks=1))
    return path


def cli(capsys, *argv) -> tuple[int, str, str]:
    """Exit code, stdout, and stderr; asserts no traceback and a one-line (<= 300 chars) error when one is printed."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    for line in cap.err.splitlines():
        if ": error: " in line:
            assert len(line) <= 330, line
            assert cap.err.count(": error: ") == 1
    return code, cap.out, cap.err


def bounded(code: str, tmp_path: Path, seconds: float = 2.0, mb: float = 500) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; assert the measured part took < ``seconds`` and < ``mb`` peak RSS."""
    script = tmp_path / "bounded.py"
    script.write_text(
        textwrap.dedent("""
        import resource, sys, time, json
        import torch, numpy, PIL.Image, facesr.cli  # imports are not what is measured

        def hwm_kb():  # peak RSS since the last reset (Linux), else since the start
            try:
                with open("/proc/self/status") as f:
                    return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
            except (OSError, StopIteration):
                return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak-RSS mark, so the imports' own peak is not counted
        except OSError:
            pass
        t0 = time.perf_counter()
        try:
            rc = facesr.cli.main(json.loads(sys.argv[1]))
        except SystemExit as e:
            rc = e.code
        dt = time.perf_counter() - t0
        print(json.dumps({"rc": rc, "seconds": dt, "peak_mb": hwm_kb() / 1024}))
    """)
    )
    r = subprocess.run(
        [sys.executable, str(script), code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["seconds"] < seconds, stats
    assert stats["peak_mb"] < mb, stats
    assert "Traceback" not in r.stderr, r.stderr
    r.stats = stats
    return r


# ----------------------------------------------------------------------------- pixel caps


def test_huge_headers_are_skipped_and_listed_by_predict(tmp_path, ckpt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    small_png(d / "ok.png")
    png_header(d / "bomb_png.png", 50000, 50000)
    jpeg_header(d / "bomb_jpg.jpg", 65000, 65000)
    code, out, err = cli(capsys, "predict", d, "--out", tmp_path / "out", "--checkpoint", ckpt)
    assert code == 1 and "wrote 1 image" in out
    assert "bomb_png.png" in err and "bomb_jpg.jpg" in err and "over the cap" in err
    assert (tmp_path / "out" / "ok.png").is_file()


def test_12000_square_png_fails_fast_and_small(tmp_path, ckpt):
    d = tmp_path / "in"
    d.mkdir()
    png_header(d / "big.png", 12000, 12000, pad=140_000)
    assert 100_000 < (d / "big.png").stat().st_size < 200_000
    r = bounded(json.dumps(["predict", str(d), "--out", str(tmp_path / "out"), "--checkpoint", str(ckpt)]), tmp_path)
    assert r.stats["rc"] == 1 and "over the cap of 64 Mpx" in r.stderr
    # The cap is a flag: a smaller one refuses a small image too.
    small_png(d / "big.png", 40, 40)
    r = bounded(
        json.dumps(
            ["predict", str(d), "--out", str(tmp_path / "out2"), "--checkpoint", str(ckpt), "--max-pixels", "0.001"]
        ),
        tmp_path,
        seconds=10,
    )
    assert r.stats["rc"] == 1 and "over the cap of 0.001 Mpx" in r.stderr


def test_huge_headers_in_eval_compare_demo_degrade(tmp_path, ckpt, capsys, face):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    small_png(pred / "a.png", 64, 64)
    png_header(gt / "a.png", 50000, 50000)
    code, _, err = cli(capsys, "eval", pred, gt)
    assert code == 2 and "over the cap" in err
    code, _, err = cli(capsys, "compare", pred, pred, gt, "--out", tmp_path / "sheet.png")
    assert code == 2 and "over the cap" in err
    code, _, err = cli(
        capsys,
        "demo",
        "--image",
        jpeg_header(tmp_path / "x.jpg", 65000, 65000),
        "--checkpoint",
        ckpt,
        "--out",
        tmp_path / "demo.png",
    )
    assert code == 2 and "over the cap" in err
    hq = tmp_path / "hq"
    hq.mkdir()
    Image.fromarray(face(0, 512)).save(hq / "good.png")
    jpeg_header(hq / "bomb.jpg", 65000, 65000)
    code, out, err = cli(capsys, "degrade", hq, tmp_path / "lq")
    assert code == 1 and "bomb.jpg" in err and "over the cap" in err
    records = (tmp_path / "lq" / "params.jsonl").read_text().splitlines()
    assert [json.loads(r)["file"] for r in records] == ["good.png"]


# ----------------------------------------------------------------------------- outputs never replace user files


def test_eval_outputs_never_replace_inputs_or_existing_files(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    small_png(pred / "a.png", 32, 32, 1)
    small_png(gt / "a.png", 32, 32, 2)
    gt_bytes = (gt / "a.png").read_bytes()
    for flag in ("--json", "--csv"):
        code, _, err = cli(capsys, "eval", pred, gt, flag, gt / "a.png", "--overwrite")
        assert code == 2 and "must not replace" in err
    assert (gt / "a.png").read_bytes() == gt_bytes
    (tmp_path / "old.json").write_text("keep me")
    code, _, err = cli(capsys, "eval", pred, gt, "--json", tmp_path / "old.json")
    assert code == 2 and "exists" in err and "--overwrite" in err
    assert (tmp_path / "old.json").read_text() == "keep me"
    code, _, err = cli(capsys, "eval", pred, gt, "--json", tmp_path / "r.json", "--csv", tmp_path / "r.json")
    assert code == 2 and "must not replace" in err
    code, _, _ = cli(capsys, "eval", pred, gt, "--json", tmp_path / "old.json", "--overwrite")
    assert code == 0 and "mean" in json.loads((tmp_path / "old.json").read_text())


def test_eval_save_refuses_existing_pngs(tmp_path, ckpt, capsys, face):
    import cv2

    lq, gt, save = tmp_path / "lq", tmp_path / "gt", tmp_path / "save"
    for d in (lq, gt, save):
        d.mkdir()
    hq = face(0, 64)
    Image.fromarray(hq).save(gt / "a.png")
    Image.fromarray(cv2.resize(hq, (16, 16), interpolation=cv2.INTER_AREA)).save(lq / "a.png")
    (save / "a.png").write_bytes(b"precious")
    code, _, err = cli(capsys, "eval", "--checkpoint", ckpt, "--lq", lq, "--gt", gt, "--save", save)
    assert code == 2 and "exist" in err and "--overwrite" in err
    assert (save / "a.png").read_bytes() == b"precious"
    code, _, err = cli(capsys, "eval", "--checkpoint", ckpt, "--lq", lq, "--gt", gt, "--json", lq / "a.png")
    assert code == 2 and "must not replace" in err


def test_predict_zip_never_replaces_an_output_png(tmp_path, ckpt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    small_png(d / "00000.png")
    code, _, err = cli(
        capsys,
        "predict",
        d,
        "--out",
        tmp_path / "out",
        "--checkpoint",
        ckpt,
        "--zip",
        tmp_path / "out" / "00000.png",
        "--overwrite",
    )
    assert code == 2 and "one of the output images" in err


def test_full_disk_and_read_only_outputs_are_one_line_without_tmp(tmp_path, ckpt, capsys, monkeypatch):
    import facesr.io.files as files

    d = tmp_path / "in"
    d.mkdir()
    small_png(d / "a.png")

    def no_space(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", no_space)
    code, _, err = cli(capsys, "predict", d, "--out", tmp_path / "out", "--checkpoint", ckpt)
    assert code == 2 and "No space left on device" in err
    assert not [p for p in (tmp_path / "out").iterdir()]  # no hidden .tmp left
    monkeypatch.undo()

    real_mkdir = Path.mkdir

    def read_only(self, *a, **kw):
        if self.name == "ro":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = cli(capsys, "predict", d, "--out", tmp_path / "ro", "--checkpoint", ckpt)
    assert code == 2 and "Permission denied" in err


def test_zip_with_non_utf8_file_name(tmp_path, ckpt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    small_png(Path(os.fsdecode(bytes(d) + b"/caf\xe9.png")))
    code, _, err = cli(
        capsys, "predict", d, "--out", tmp_path / "out", "--checkpoint", ckpt, "--zip", tmp_path / "out.zip"
    )
    assert code == 0, err
    assert zipfile.ZipFile(tmp_path / "out.zip").namelist() == ["caf\\xe9.png"]


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    "payload, words",
    [
        ({"format": "facesr-train", "model": 5}, "not a dict of tensors"),
        ({"format": "facesr-train", "model": {"w": torch.zeros(1)}}, "without arch_config"),
        ({"format": "facesr-train", "model": {"w": torch.zeros(1)}, "arch_config": [1, 2]}, "must be a mapping"),
        ({"format": "facesr-train", "model": {"w": torch.zeros(1)}, "arch": 7, "arch_config": {}}, "must be a string"),
        (
            {"format": "facesr-train", "model": {"w": torch.zeros(1)}, "arch": "evil", "arch_config": {}},
            "unknown architecture",
        ),
        ({"format": "facesr-train", "model": {"w": torch.zeros(1)}, "arch_config": {"bogus": 1}}, "unknown key"),
    ],
)
def test_malformed_facesr_checkpoints_are_one_line(tmp_path, capsys, payload, words):
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    small_png(d / "a.png")
    for argv in (["predict", d, "--out", tmp_path / "out", "--checkpoint", path], ["info", "--checkpoint", path]):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and words in err, err


def test_malformed_safetensors_metadata(tmp_path, capsys):
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in MSRResNet(mid_channels=8, num_blocks=1).state_dict().items()}
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path), metadata={"format": "facesr", "arch": "msrresnet", "arch_config": "{not json"})
    code, _, err = cli(capsys, "info", "--checkpoint", path)
    assert code == 2 and "not valid JSON" in err


def test_checkpoint_claiming_200000_blocks_fails_fast(tmp_path):
    sd = MSRResNet(mid_channels=64, num_blocks=16).state_dict()
    path = tmp_path / "liar.pt"
    torch.save(
        {
            "format": "facesr-train",
            "arch": "msrresnet",
            "model": sd,
            "arch_config": {"mid_channels": 64, "num_blocks": 200000},
        },
        path,
    )
    assert path.stat().st_size < 12_000_000
    r = bounded(json.dumps(["info", "--checkpoint", str(path)]), tmp_path)
    assert r.stats["rc"] == 2 and "num_blocks" in r.stderr


def test_metadata_that_does_not_match_the_weights_is_refused_before_building(tmp_path, capsys):
    sd = MSRResNet(mid_channels=8, num_blocks=1).state_dict()
    path = tmp_path / "liar.pt"
    torch.save(
        {
            "format": "facesr-train",
            "arch": "msrresnet",
            "model": sd,
            "arch_config": {"mid_channels": 1024, "num_blocks": 3},
        },
        path,
    )
    code, _, err = cli(capsys, "info", "--checkpoint", path)
    assert code == 2 and "do not fit the model" in err


def test_non_finite_weights_are_an_error_at_load(tmp_path, ckpt, capsys):
    m = MSRResNet(mid_channels=8, num_blocks=1)
    with torch.no_grad():
        m.conv_last.weight[0, 0, 0, 0] = float("nan")
    save_weights(tmp_path / "nan.safetensors", m)
    d = tmp_path / "in"
    d.mkdir()
    small_png(d / "a.png")
    code, _, err = cli(capsys, "predict", d, "--out", tmp_path / "out", "--checkpoint", tmp_path / "nan.safetensors")
    assert code == 2 and "NaN or infinite" in err and not (tmp_path / "out" / "a.png").exists()


def test_torchscript_rejection_never_suggests_weights_only_false(tmp_path, capsys):
    class M(torch.nn.Module):
        def forward(self, x):
            return x

    path = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.trace(M(), torch.zeros(1)), str(path))
    for argv in (["info", "--checkpoint", path], ["train", "--work-dir", tmp_path / "wd", "--resume", path]):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and "TorchScript" in err and "weights_only" not in err, err


# ----------------------------------------------------------------------------- YAML and config ranges


def test_yaml_alias_bomb_is_refused_fast(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for _i, (prev, cur) in enumerate(zip("abcdefgh", "bcdefghi")):
        lines.append(f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 700
    r = bounded(json.dumps(["info", "--config", str(bomb)]), tmp_path)
    assert r.stats["rc"] == 2 and "aliases" in r.stderr and len(r.stderr) < 400
    r = bounded(
        json.dumps(["info", "--config", str(REPO / "configs" / "quickstart.yaml"), "--set", "seed=" + "&x [1]"]),
        tmp_path,
        seconds=5,
    )  # an anchor alone is harmless


def test_yaml_non_utf8_deep_and_oversized(tmp_path, capsys):
    cases = {"latin1.yaml": b"name: caf\xe9\n", "deep.yaml": b"[" * 20000, "big.yaml": b"# " + b"x" * (2 << 20)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        code, _, err = cli(capsys, "info", "--config", tmp_path / name)
        assert code == 2, name
    code, _, err = cli(capsys, "info", "--config", tmp_path / "latin1.yaml")
    assert "not UTF-8" in err
    code, _, err = cli(capsys, "info", "--config", tmp_path / "deep.yaml")
    assert "nested deeper" in err


@pytest.mark.parametrize(
    "override, words",
    [
        ("optim.lr=.inf", "optim.lr: must be a finite number"),
        ("optim.lr=-1", "optim.lr: must be positive"),
        ("degradation.down.resize_scale=[100,100]", "degradation.down.resize_scale"),
        ("degradation.blur.rotate_angle=[.nan,1]", "rotate_angle: must be a finite number"),
        ("model.mid_channels=1e7", "model.mid_channels"),
        ("model.mid_channels=10000000", "model.mid_channels: must be in 1..1024"),
        ("model.arch=evil", "unknown architecture 'evil'"),
        ("degradation.blur.kernel_size=[100001]", "kernel sizes must be odd, 1..201"),
        ("degradation.jpeg.quality=[0,500]", "degradation.jpeg.quality"),
    ],
)
def test_config_ranges_are_validated(capsys, override, words):
    code, _, err = cli(capsys, "info", "--config", REPO / "configs" / "quickstart.yaml", "--set", override)
    assert code == 2 and words in err, err


def test_info_shape_is_capped_and_counted_without_memory(tmp_path, capsys):
    code, out, _ = cli(capsys, "info", "--config", REPO / "configs" / "quickstart.yaml", "--shape", 3, 30000, 30000)
    assert code == 0 and "3x120000x120000" in out
    code, _, err = cli(capsys, "info", "--config", REPO / "configs" / "quickstart.yaml", "--shape", 3, 100000, 10)
    assert code == 2 and "65536" in err
    code, _, err = cli(capsys, "info", "--config", REPO / "configs" / "quickstart.yaml", "--shape", 4, 16, 16)
    assert code == 2 and "input channels" in err


# ----------------------------------------------------------------------------- silent garbage


def test_float_tiff_in_0_1_is_scaled_not_black(tmp_path):
    from facesr.io.images import read_any

    a = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    Image.fromarray(a, "F").save(tmp_path / "f.tif")
    rgb, _ = read_any(tmp_path / "f.tif")
    assert rgb.max() == 255 and abs(float(rgb.mean()) - 127.5) < 2
    a[0, 0] = np.nan
    Image.fromarray(a, "F").save(tmp_path / "nan.tif")
    with pytest.raises(Exception, match="NaN"):
        read_any(tmp_path / "nan.tif")


def test_symlink_loop_in_input_folder_is_listed(tmp_path, ckpt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    small_png(d / "a.png")
    os.symlink(d / "loop.png", d / "loop.png")
    os.symlink(tmp_path / "gone.png", d / "dangling.png")
    code, out, err = cli(capsys, "predict", d, "--out", tmp_path / "out", "--checkpoint", ckpt)
    assert code == 1 and "wrote 1 image" in out and "loop.png" in err and "dangling.png" in err


def test_large_inputs_warn_once_and_point_to_restore(tmp_path, ckpt, capsys):
    import facesr.io.images as images

    images._warned_large = False
    d = tmp_path / "in"
    d.mkdir()
    small_png(d / "a.png", 300, 260)
    small_png(d / "b.png", 300, 260, 1)
    code, _, err = cli(capsys, "predict", d, "--out", tmp_path / "out", "--checkpoint", ckpt, "--tile", 64)
    assert code == 0 and err.count("warning:") == 1 and "facesr restore" in err


def test_demo_never_replaces_a_picture(tmp_path, ckpt, capsys, monkeypatch):
    """Without --out a second demo writes facesr_demo_2.png; an existing --out needs --overwrite."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "facesr_demo.png").write_bytes(b"mine")
    code, _, err = cli(capsys, "demo", "--checkpoint", ckpt, "--rows", "1")
    assert code == 0 and (tmp_path / "facesr_demo.png").read_bytes() == b"mine"
    assert (tmp_path / "facesr_demo_2.png").read_bytes().startswith(b"\x89PNG")
    code, _, err = cli(capsys, "demo", "--checkpoint", ckpt, "--rows", "1", "--out", tmp_path / "facesr_demo.png")
    assert code == 2 and "--overwrite" in err and (tmp_path / "facesr_demo.png").read_bytes() == b"mine"
