"""facesr.backends.openvino.OpenVinoModel: the OnnxModel call contract (skipped without openvino)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")
pytest.importorskip("onnx")

from facesr.backends.openvino import OpenVinoModel  # noqa: E402
from facesr.inference import export_onnx  # noqa: E402
from facesr.models import MSRResNet  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = MSRResNet(mid_channels=16, num_blocks=2)
    for mod in m.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight)
    return m.eval()


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
    with pytest.raises(FileNotFoundError):
        OpenVinoModel(tmp_path / "missing.onnx")
