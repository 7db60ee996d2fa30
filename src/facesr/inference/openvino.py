"""OpenVINO CPU backend (``--backend openvino``): :class:`OpenVinoModel` (the call contract of
:class:`facesr.inference.OnnxModel`) and :class:`OpenVinoRunner`, its runner for the Restorer.

float32 NCHW (0-1) in, float32 NCHW (nominally 0-1, unclamped) out; attributes ``scale`` and
``backend``, method :meth:`OpenVinoModel.receptive_field` (read from the facesr metadata, which
survives the ONNX -> IR conversion and int8 quantization).

Two ways in:

* from a PyTorch model (``Restorer.from_checkpoint(backend="openvino")``): exported to ONNX in
  memory and compiled for the CPU in fp32;
* from an OpenVINO IR file (``model.xml`` + ``model.bin``) written by ``facesr export --openvino``,
  optionally **int8** (NNCF post-training quantization on LQ faces, ``--int8 CALIB_DIR``).
  This is the fast option on CPUs without native bf16: measured speed and PSNR cost in
  docs/performance.md, "CPU inference backends".

Needs ``pip install 'facesr[openvino]'`` (running), ``'facesr[openvino-int8]'`` (quantizing).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, MissingExtraError, OutputError, one_line
from .runner import FALLBACK_RECEPTIVE_FIELD, ArrayRunner


def _ov():
    try:
        import openvino as ov
    except ImportError:
        raise MissingExtraError("openvino", "--backend openvino") from None
    return ov


def read_model(source) -> Any:
    """An ``openvino.Model`` from an ``.xml`` (IR) or ``.onnx`` path, or ONNX bytes (as :func:`export_onnx` returns)."""
    ov = _ov()
    core = ov.Core()
    if isinstance(source, (bytes, bytearray)):
        with tempfile.TemporaryDirectory() as d:
            tmp = os.path.join(d, "model.onnx")
            with open(tmp, "wb") as f:
                f.write(source)
            return core.read_model(tmp)
    p = Path(source)
    if not p.is_file():
        raise CheckpointError(f"{p}: model file not found")
    if p.suffix.lower() == ".xml" and not p.with_suffix(".bin").is_file():
        raise CheckpointError(f"{p}: its weights file {p.with_suffix('.bin').name} is missing beside it")
    try:
        return core.read_model(str(p))
    except Exception as exc:
        raise CheckpointError(f"{p}: not a loadable OpenVINO IR or ONNX model ({one_line(exc)})") from None


def _meta(model, key: str):
    try:
        return model.get_rt_info(["framework", key]).astype(str)
    except Exception:
        return None


class OpenVinoModel:
    """A model compiled for the OpenVINO CPU plugin, run like :class:`facesr.inference.OnnxModel`.

    Args:
        source: ``openvino.Model``, ``.xml``/``.onnx`` path, or ONNX bytes.
        precision: ``"f32"`` (default) or ``"bf16"``: OpenVINO's ``INFERENCE_PRECISION_HINT`` for
            the layers that are not quantized (bf16 only takes effect on CPUs with native bf16; the
            plugin's choice is in ``self.precision``).
        threads: inference threads (None = OpenVINO's default: all cores).
    """

    backend = "openvino"

    def __init__(self, source, precision: str = "f32", threads: int | None = None, device: str = "CPU"):
        ov = _ov()
        if precision not in ("f32", "bf16"):
            raise ValueError(f"precision must be 'f32' or 'bf16', got {precision!r}")
        self.name = str(source) if isinstance(source, (str, os.PathLike)) else "<in-memory model>"
        model = source if isinstance(source, ov.Model) else read_model(source)
        cfg: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = ov.Core().compile_model(model, device, cfg)
        except Exception as exc:
            raise CheckpointError(f"{self.name}: OpenVINO could not compile it ({one_line(exc)})") from None
        self.request = self.compiled.create_infer_request()
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # what the plugin chose
        self.precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        self.int8 = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
        scale = _meta(model, "facesr.upscale_factor")
        self.scale = int(scale) if scale is not None else int(self(np.zeros((1, 3, 8, 8), np.float32)).shape[2] // 8)
        if self.scale < 1:
            raise CheckpointError(f"{self.name}: model does not upscale (output smaller than input)")
        rf = _meta(model, "facesr.receptive_field")
        self._receptive_field = int(rf) if rf is not None else FALLBACK_RECEPTIVE_FIELD
        keys = ("facesr.arch", "facesr.arch_config", "facesr.receptive_field", "facesr.upscale_factor")
        self.metadata = {k: v for k in keys if (v := _meta(model, k)) is not None}

    def receptive_field(self) -> int:
        """LQ pixels of context an output pixel depends on (from the metadata; a fallback for foreign files)."""
        return self._receptive_field

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 3, h, w) 0-1 -> float32 (N, 3, s*h, s*w), unclamped."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = self.request.infer({0: x}, share_inputs=True)
        return np.array(out[self.compiled.output(0)], dtype=np.float32, copy=True)


class OpenVinoRunner(ArrayRunner):
    """The OpenVINO backend of the :mod:`facesr.inference.runner` protocol: an :class:`OpenVinoModel`
    on the CPU, fp32 (or the int8 of a quantized IR; ``int8`` says which).  :meth:`load` opens a file."""

    backend = "openvino"

    @property
    def int8(self) -> bool:
        """True when the model file is int8-quantized."""
        return bool(getattr(self.model, "int8", False))

    @classmethod
    def load(cls, source, threads: int | None = None, precision: str | None = None) -> OpenVinoRunner:
        """A runner for an ``.xml`` (IR) or ``.onnx`` path or ONNX bytes, compiled in fp32."""
        return cls(OpenVinoModel(source, threads=threads), precision=precision)


def quantize_int8(model, calibration: list[np.ndarray], subset_size: int | None = None):
    """NNCF post-training int8 quantization of an ``openvino.Model``.

    ``calibration``: float32 NCHW 0-1 batches (degraded LQ faces, as the model sees them).
    """
    try:
        import nncf
    except ImportError:
        raise MissingExtraError("openvino-int8", "int8 quantization") from None
    return nncf.quantize(model, nncf.Dataset(calibration), subset_size=subset_size or len(calibration))


def save_ir(model, path: str | os.PathLike) -> list[Path]:
    """Write ``model`` as OpenVINO IR ``path`` (.xml) + its .bin, each atomically; returns both paths.

    Weights stay at full precision (no fp16 compression).  The .bin is moved into place before
    the .xml, so an .xml that exists always has its weights.
    """
    ov = _ov()
    xml = Path(path)
    binf = xml.with_suffix(".bin")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".facesr-ir-", dir=xml.parent))
    except OSError as exc:
        raise OutputError(f"{xml}: could not write the OpenVINO model ({one_line(exc)})") from None
    try:
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        os.replace(tmp / "model.bin", binf)
        os.replace(tmp / "model.xml", xml)
    except OSError as exc:
        raise OutputError(f"{xml}: could not write the OpenVINO model ({one_line(exc)})") from None
    finally:
        for f in tmp.glob("*"):
            f.unlink()
        tmp.rmdir()
    return [xml, binf]
