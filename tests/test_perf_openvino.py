"""facesr.inference.openvino.OpenVinoModel: the OnnxModel call contract (skipped without openvino)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")
pytest.importorskip("onnx")

from conftest import strong_msrresnet
from facesr.errors import CheckpointError
from facesr.inference import export_onnx
from facesr.inference.openvino import OpenVinoModel


@pytest.fixture(scope="module")
def model():
    return strong_msrresnet()


@pytest.fixture(scope="module")
def onnx_bytes(model):
    return export_onnx(model, check=False)


@pytest.mark.parametrize("shape", [(1, 3, 24, 24), (2, 3, 16, 20)])
def test_openvino_matches_pytorch(model, onnx_bytes, shape):
    ov_model = OpenVinoModel(onnx_bytes, "f32", threads=1)
    assert ov_model.scale == 4
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    y = ov_model(x)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    assert y.dtype == np.float32 and y.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
    assert np.abs(y - ref).max() * 255 < 0.5  # same 8-bit output to within rounding


def test_openvino_from_file_and_bf16_hint(tmp_path, onnx_bytes):
    p = tmp_path / "m.onnx"
    p.write_bytes(onnx_bytes)
    m = OpenVinoModel(p, "bf16", threads=1)
    assert m.precision in ("f32", "bf16")  # bf16 only where the CPU has it natively
    assert m(np.zeros((1, 3, 8, 8), np.float64)).shape == (1, 3, 32, 32)  # float64 in is cast


def test_openvino_bad_arguments(tmp_path, onnx_bytes):
    with pytest.raises(ValueError):
        OpenVinoModel(onnx_bytes, "fp16")
    with pytest.raises(CheckpointError, match="missing.onnx: model file not found"):
        OpenVinoModel(tmp_path / "missing.onnx")
    (tmp_path / "lonely.xml").write_text("<net/>")
    with pytest.raises(CheckpointError, match="lonely.bin is missing"):
        OpenVinoModel(tmp_path / "lonely.xml")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="junk.onnx: not a loadable"):
        OpenVinoModel(tmp_path / "junk.onnx")


# ----------------------------------------------------------------------------- --backend openvino, export --openvino


def _faces(d, n, size=16):
    from PIL import Image

    d.mkdir()
    for i in range(n):
        Image.fromarray(np.random.default_rng(10 + i).integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(
            d / f"f{i}.png"
        )
    return d


def _pixels(d):
    from facesr.io.images import read_any

    return {p.name: read_any(p)[0].astype(int) for p in sorted(d.glob("*.png"))}


def test_export_openvino_and_predict_eval_backend(tmp_path, model, capsys):
    from facesr.cli import main
    from facesr.models import save_weights

    ckpt = tmp_path / "m.safetensors"
    save_weights(ckpt, model)
    lq = _faces(tmp_path / "lq", 3)
    xml = tmp_path / "m.xml"
    assert main(["export", "--checkpoint", str(ckpt), "--openvino", str(xml)]) == 0
    assert xml.is_file() and (tmp_path / "m.bin").stat().st_size > 1000
    assert "fp32" in capsys.readouterr().out
    # an existing .bin alone blocks the export (both files are checked before any work)
    (tmp_path / "n.bin").write_bytes(b"keep me")
    assert main(["export", "--checkpoint", str(ckpt), "--openvino", str(tmp_path / "n.xml")]) == 2
    assert "n.bin exists" in capsys.readouterr().err and (tmp_path / "n.bin").read_bytes() == b"keep me"

    assert (
        main(["predict", str(lq), "--checkpoint", str(ckpt), "--precision", "fp32", "--out", str(tmp_path / "pt")]) == 0
    )
    assert (
        main(["predict", str(lq), "--backend", "openvino", "--model-file", str(xml), "--out", str(tmp_path / "ir")])
        == 0
    )
    assert (
        main(["predict", str(lq), "--backend", "openvino", "--checkpoint", str(ckpt), "--out", str(tmp_path / "fly")])
        == 0
    )
    pt = _pixels(tmp_path / "pt")
    for sub in ("ir", "fly"):
        got = _pixels(tmp_path / sub)
        assert got.keys() == pt.keys() and all(np.abs(got[k] - pt[k]).max() <= 1 for k in pt)

    # eval runs the OpenVINO model on LQ/GT pairs (GT = the torch output, so PSNR is very high)
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--lq",
                str(lq),
                "--gt",
                str(tmp_path / "pt"),
                "--backend",
                "openvino",
                "--model-file",
                str(xml),
                "--json",
                str(tmp_path / "ev.json"),
            ]
        )
        == 0
    )
    import json

    assert json.loads((tmp_path / "ev.json").read_text())["mean"]["psnr"] > 45


def test_export_int8_runs_and_is_marked(tmp_path, capsys):
    pytest.importorskip("nncf")
    from facesr.cli import main
    from facesr.inference.openvino import OpenVinoModel
    from facesr.models import build_model, save_weights

    torch.manual_seed(0)
    model = build_model("lqresnet", mid_channels=8, num_blocks=2).eval()  # default init: outputs near 0-1
    ckpt = tmp_path / "m.safetensors"
    save_weights(ckpt, model)
    lq = _faces(tmp_path / "lq", 4)
    xml = tmp_path / "q.xml"
    assert (
        main(["export", "--checkpoint", str(ckpt), "--openvino", str(xml), "--int8", str(lq), "--calib-count", "3"])
        == 0
    )
    assert "int8" in capsys.readouterr().out
    q = OpenVinoModel(xml)
    assert q.int8 and q.scale == 4 and q.receptive_field() == model.receptive_field()
    assert not OpenVinoModel(export_onnx(model, check=False)).int8
    x = np.random.default_rng(1).random((1, 3, 16, 20), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    err = np.abs(q(x) - ref)
    assert err.max() > 0 and err.mean() < 0.02  # quantized: not bit-equal, still close (0-1 scale)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "--openvino", "{t}/a.onnx"], "must end in .xml"),
        (["export", "--onnx", "{t}/a.onnx", "--int8", "{t}"], "--int8 needs --openvino"),
        (["export"], "give --onnx OUT.onnx or --openvino OUT.xml"),
        (["export", "--openvino", "{t}/a.xml", "--int8", "{t}/nowhere"], "--int8 {t}/nowhere: not a folder"),
        (["predict", "{t}", "--out", "{t}/o", "--model-file", "{t}/m.xml"], "--model-file needs --backend"),
        (
            ["predict", "{t}", "--out", "{t}/o", "--backend", "openvino", "--precision", "bf16"],
            "applies to --backend torch",
        ),
        (
            ["predict", "{t}", "--out", "{t}/o", "--backend", "onnxruntime", "--model-file", "{t}/m.xml"],
            "runs with --backend openvino",
        ),
        (
            ["predict", "{t}", "--out", "{t}/o", "--backend", "openvino", "--model-file", "{t}/missing.xml"],
            "missing.xml: model file not found",
        ),
    ],
)
def test_backend_and_export_errors_are_one_line(tmp_path, capsys, argv, message):
    from facesr.cli import main

    _faces(tmp_path / "in", 1)
    t = str(tmp_path)
    argv = [a.replace("{t}", t) for a in argv]
    if argv[0] == "predict":
        argv[1] = str(tmp_path / "in")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.replace("{t}", t) in err and len(err.strip().splitlines()) == 1, err
