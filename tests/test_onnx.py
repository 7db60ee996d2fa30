"""ONNX export (dynamic batch/height/width) and the onnxruntime backend agree with PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import strong_msrresnet
from facesr.cli import main
from facesr.inference import OnnxModel, Restorer, export_onnx
from facesr.io.images import read_any
from facesr.models import MSRResNet, save_weights


@pytest.fixture(scope="module")
def model():
    return strong_msrresnet()


@pytest.fixture(scope="module")
def onnx_bytes(model):
    return export_onnx(model, check=False)


def _img(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_export_has_dynamic_axes_and_metadata(onnx_bytes):
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["facesr.upscale_factor"] == "4"


def test_onnxruntime_matches_pytorch_within_one_level(model, onnx_bytes):
    torch_r = Restorer(model, device="cpu", channels_last=False)
    ort_r = Restorer.from_onnx(onnx_bytes, batch_size=2)
    assert ort_r.backend == "onnxruntime" and ort_r.scale == 4
    imgs = [_img(16, 16, 0), _img(16, 16, 1), _img(16, 16, 2), _img(11, 23, 3)]  # batch 2 + 1, other size
    for a, b in zip(torch_r.restore_batch(imgs), ort_r.restore_batch(imgs)):
        assert a.shape == b.shape
        assert np.abs(a.astype(int) - b).max() <= 1
    # raw float outputs agree closely too
    x = np.random.default_rng(4).random((1, 3, 9, 13), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(OnnxModel(onnx_bytes)(x), ref, atol=1e-4)


def test_onnx_tiling(model, onnx_bytes):
    img = _img(40, 36, 5)
    full = Restorer.from_onnx(onnx_bytes).restore(img)
    tiled = Restorer.from_onnx(onnx_bytes, tile=16, tile_overlap=12).restore(img)
    assert np.abs(full.astype(int) - tiled).max() <= 1


def test_export_cli_and_predict_backend(tmp_path, capsys):
    ckpt = tmp_path / "m.safetensors"
    save_weights(ckpt, MSRResNet(mid_channels=8, num_blocks=1))
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(onnx_path)]) == 0
    assert onnx_path.stat().st_size > 1000 and "wrote" in capsys.readouterr().out
    # refuses to overwrite its input, and an existing output without --overwrite
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(ckpt)]) == 2
    assert "input checkpoint" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(onnx_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(tmp_path / "o10.onnx"), "--opset", "10"]) == 2
    assert "--opset 10" in capsys.readouterr().err and not (tmp_path / "o10.onnx").exists()

    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_img(12, 16, 6)).save(d / "face.png")
    base = [str(d), "--checkpoint", str(ckpt)]
    assert main(["predict", *base, "--precision", "fp32", "--out", str(tmp_path / "pt")]) == 0  # compared below
    assert (
        main(
            [
                "predict",
                str(d),
                "--backend",
                "onnxruntime",
                "--model-file",
                str(onnx_path),
                "--out",
                str(tmp_path / "ox"),
            ]
        )
        == 0
    )
    assert main(["predict", *base, "--backend", "onnxruntime", "--out", str(tmp_path / "ox2")]) == 0
    pt = read_any(tmp_path / "pt" / "face.png")[0]
    for sub in ("ox", "ox2"):
        ox = read_any(tmp_path / sub / "face.png")[0]
        assert ox.shape == (48, 64, 3) and np.abs(pt.astype(int) - ox).max() <= 1
    capsys.readouterr()
    assert main(["predict", str(d), "--model-file", str(onnx_path), "--out", str(tmp_path / "o3")]) == 2
    assert "--backend onnxruntime" in capsys.readouterr().err
    # the deprecated --onnx still works, with a one-line warning, and is gone from the help
    assert (
        main(["predict", str(d), "--backend", "onnxruntime", "--onnx", str(onnx_path), "--out", str(tmp_path / "o4")])
        == 0
    )
    err = capsys.readouterr().err
    assert "facesr predict: warning: --onnx is deprecated; use --model-file" in err
    assert (tmp_path / "o4" / "face.png").read_bytes() == (tmp_path / "ox" / "face.png").read_bytes()
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    helptext = capsys.readouterr().out
    assert "--model-file" in helptext and "--onnx" not in helptext and "--amp" not in helptext


def test_bad_onnx_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx at all")
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_img(8, 8, 7)).save(d / "a.png")
    assert (
        main(["predict", str(d), "--backend", "onnxruntime", "--model-file", str(bad), "--out", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("facesr predict: error:") and "bad.onnx" in err and len(err.strip().splitlines()) == 1
