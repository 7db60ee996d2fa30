"""Flip test-time augmentation in the Restorer, ``predict --skip-existing`` and ``predict`` under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facesr
from conftest import strong_msrresnet
from facesr.cli import main
from facesr.inference import Restorer
from facesr.inference.torch_runner import channels_last_input
from facesr.models import build_model, save_weights


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- TTA


def test_tta_flip_is_the_average_of_the_two_predictions():
    m = strong_msrresnet()
    img = _img(20, 24, seed=3)
    r = Restorer(m, device="cpu", tta="flip", channels_last=False, precision="fp32")
    got = r.predict_float(img[None])[0]
    # the runner hands the model a channels-last batch (PyTorch's NCHW kernels for a batch of one round
    # differently, by about 2e-5 on the 0-1 scale on AVX-512 CPUs), so the hand-made average does too
    x = channels_last_input(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0)
    with torch.inference_mode():
        manual = (m(x) + m(x.flip(3)).flip(3)) * 0.5
    manual = manual.clamp(0, 1).mul(255.0)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, manual, atol=1e-4)
    plain = Restorer(m, device="cpu", channels_last=False, precision="fp32").predict_float(img[None])[0]
    assert np.abs(plain - got).max() > 1.0  # the model is not flip-symmetric: TTA changes the output
    # restore() rounds the same forward pass that predict_float() returns: equal on every CPU, whichever way
    # the batch of one was built (img[None] has a batch axis of stride 0, restore() stacks a copy)
    np.testing.assert_array_equal(r.restore(img), np.rint(got).astype(np.uint8))
    np.testing.assert_array_equal(r.predict_float(np.stack([img]))[0], got)
    # channels-last gives the same numbers up to float rounding
    np.testing.assert_allclose(Restorer(m, device="cpu", tta="flip").predict_float(img[None])[0], got, atol=0.01)
    with pytest.raises(ValueError, match="tta must be one of"):
        Restorer(m, tta="rot90")


def test_tta_tiled_equals_untiled():
    m = strong_msrresnet()
    img = _img(70, 90, seed=1)
    full = Restorer(m, device="cpu", tta="flip").restore(img)
    tiled = Restorer(m, device="cpu", tta="flip", tile=32, batch_size=3).restore(img)
    assert int(np.abs(full.astype(int) - tiled).max()) <= 1


def test_tta_with_onnxruntime():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from facesr.inference import export_onnx

    m = strong_msrresnet(mid=8, blocks=1)
    img = _img(16, 12, seed=2)
    torch_out = Restorer(m, device="cpu", tta="flip").predict_float(img[None])
    ort = Restorer.from_onnx(export_onnx(m, check=False), tta="flip")
    assert ort.precision == "fp32"
    np.testing.assert_allclose(ort.predict_float(img[None]), torch_out, atol=0.05)


# ----------------------------------------------------------------------------- predict: skip-existing, torchrun


@pytest.fixture()
def ckpt(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    save_weights(path, build_model("msrresnet", mid_channels=8, num_blocks=1))
    return str(path)


@pytest.fixture()
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    sizes = [(16, 12), (16, 12), (12, 16), (16, 12), (10, 10)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(_img(h, w, seed=i)).save(d / f"img{i}.png")
    (d / "broken.png").write_bytes(b"not a png")
    return d


def test_skip_existing_restores_only_the_missing(tmp_path, inputs, ckpt, capsys):
    base = ["predict", str(inputs), "--checkpoint", ckpt, "--device", "cpu", "--precision", "fp32"]
    assert main(base + ["--out", str(tmp_path / "ref")]) == 1  # broken.png is skipped
    out = tmp_path / "out"
    out.mkdir()
    (out / "img1.png").write_bytes((tmp_path / "ref" / "img1.png").read_bytes())
    (out / "img3.png").write_bytes((tmp_path / "ref" / "img3.png").read_bytes()[:100])  # truncated: done again
    (out / "img2.png").write_bytes(b"")  # empty: done again
    capsys.readouterr()
    assert main(base + ["--out", str(out)]) == 2
    assert "use --overwrite" in capsys.readouterr().err
    assert main(base + ["--out", str(out), "--skip-existing", "--zip", str(tmp_path / "s.zip")]) == 1
    cap = capsys.readouterr()
    assert "wrote 4 image(s)" in cap.out and "kept 1 existing" in cap.out
    assert "img3.png exists but is not a complete PNG" in cap.err and "img2.png exists" in cap.err
    for i in range(5):
        assert (out / f"img{i}.png").read_bytes() == (tmp_path / "ref" / f"img{i}.png").read_bytes()
    with zipfile.ZipFile(tmp_path / "s.zip") as z:
        assert sorted(z.namelist()) == [f"img{i}.png" for i in range(5)]
    assert main(base + ["--out", str(out), "--skip-existing", "--overwrite"]) == 2


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path, inputs, ckpt):
    # The documented condition: the same threads per process.  torchrun gives each rank one thread by default,
    # so the one-process run asks for one with --threads.
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    # the subprocesses import the same facesr as this test does
    env["PYTHONPATH"] = os.pathsep.join([str(Path(facesr.__file__).parents[1]), env.get("PYTHONPATH", "")])
    common = ["predict", str(inputs), "--checkpoint", ckpt, "--device", "cpu", "--precision", "fp32"]
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "facesr.cli",
            *common,
            "--threads",
            "1",
            "--out",
            str(tmp_path / "one"),
            "--zip",
            str(tmp_path / "one.zip"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert one.returncode == 1, one.stderr[-2000:]  # broken.png
    run = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=localhost:0",
        "-m",
        "facesr.cli",
        *common,
    ]
    two = subprocess.run(
        run + ["--out", str(tmp_path / "two"), "--zip", str(tmp_path / "two.zip")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert two.returncode != 0  # broken.png: every rank exits 1, so torchrun reports a failure
    assert "wrote 5 image(s)" in two.stdout and "(2 processes)" in two.stdout, two.stdout + two.stderr[-2000:]
    assert two.stderr.count("skipped 1 file(s)") == 1 and "broken.png" in two.stderr
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) == 5
    for n in names:
        assert (tmp_path / "one" / n).read_bytes() == (tmp_path / "two" / n).read_bytes(), n
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()  # the zip bytes too
    with zipfile.ZipFile(tmp_path / "one.zip") as a:
        assert a.namelist() == names
    # a restarted job: remove two outputs; --skip-existing restores just those, across 2 ranks
    for n in ("img0.png", "img3.png"):
        (tmp_path / "two" / n).unlink()
    again = subprocess.run(
        run + ["--out", str(tmp_path / "two"), "--skip-existing"], capture_output=True, text=True, env=env, timeout=240
    )
    assert "wrote 2 image(s)" in again.stdout and "kept 3 existing" in again.stdout, again.stdout + again.stderr
    for n in names:
        assert (tmp_path / "one" / n).read_bytes() == (tmp_path / "two" / n).read_bytes(), n
