"""OpenVINO runtime backend: the call contract of :class:`facesr.inference.OnnxModel`.

float32 NCHW (0-1) in, float32 NCHW (nominally 0-1, unclamped) out; attribute ``scale``.
Needs ``pip install 'facesr[openvino]'``.  Precision: ``"f32"`` or ``"bf16"`` (OpenVINO's
``INFERENCE_PRECISION_HINT``; bf16 is only honoured on CPUs with native bf16, else it runs f32),
or an already quantized (int8, NNCF) ``openvino.Model``.  Measured speed and PSNR cost:
docs/performance.md, "CPU inference backends".
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def _ov():
    try:
        import openvino as ov
    except ImportError:
        raise ValueError("--backend openvino needs the openvino package (pip install 'facesr[openvino]')") from None
    return ov


def read_onnx(source) -> "object":
    """An ``openvino.Model`` from an ``.onnx``/``.xml`` path or ONNX bytes (as :func:`export_onnx` returns)."""
    ov = _ov()
    core = ov.Core()
    if isinstance(source, (bytes, bytearray)):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "model.onnx")
            with open(p, "wb") as f:
                f.write(source)
            return core.read_model(p)
    p = Path(source)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: model file not found")
    return core.read_model(str(p))


class OpenVinoModel:
    """Compile a model for the OpenVINO CPU plugin and run it like :class:`facesr.inference.OnnxModel`.

    Args:
        source: ``openvino.Model``, ``.onnx``/``.xml`` path, or ONNX bytes.
        precision: ``"f32"`` or ``"bf16"`` inference precision hint.
        threads: inference threads (None = OpenVINO's default).
        scale: the upscale factor (None: read from the ONNX metadata, else probed).
    """

    def __init__(self, source, precision: str = "f32", threads: int | None = None, scale: int | None = None,
                 device: str = "CPU"):
        ov = _ov()
        if precision not in ("f32", "bf16"):
            raise ValueError(f"precision must be 'f32' or 'bf16', got {precision!r}")
        model = source if isinstance(source, ov.Model) else read_onnx(source)
        cfg = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = ov.Core().compile_model(model, device, cfg)
        self.request = self.compiled.create_infer_request()
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # what the plugin chose
        self.precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        if scale is None:
            try:
                scale = int(model.get_rt_info(["framework", "facesr.upscale_factor"]).astype(str))
            except Exception:  # noqa: BLE001 - metadata absent or named differently: measure it
                scale = int(self(np.zeros((1, 3, 8, 8), np.float32)).shape[2] // 8)
        self.scale = int(scale)
        if self.scale < 1:
            raise ValueError("model does not upscale (output smaller than input)")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = self.request.infer({0: x}, share_inputs=True)
        return np.array(out[self.compiled.output(0)], dtype=np.float32, copy=True)


def quantize_int8(model, calibration: list[np.ndarray], subset_size: int | None = None):
    """NNCF post-training int8 quantization of an ``openvino.Model`` on float32 NCHW 0-1 batches."""
    try:
        import nncf
    except ImportError:
        raise ValueError("int8 quantization needs nncf (pip install nncf)") from None
    ds = nncf.Dataset(calibration)
    return nncf.quantize(model, ds, subset_size=subset_size or len(calibration))
