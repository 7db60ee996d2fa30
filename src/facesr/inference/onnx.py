"""ONNX export (:func:`export_onnx`) and running an exported model with onnxruntime (:class:`OnnxModel`,
and :class:`OnnxRuntimeRunner`, its :mod:`.runner` for the Restorer).

An exported model takes ``lq`` float32 (N, 3, h, w) RGB on the 0-1 scale and returns ``sr``
float32 (N, 3, s*h, s*w), unclamped.  facesr stores its upscale factor, receptive field and
architecture in the ONNX metadata, so :class:`~facesr.inference.Restorer` picks the exact
tile overlap for an ONNX model as it does for a PyTorch one.
"""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BadValueError, CheckpointError, FacesrError, MissingExtraError, one_line
from ..models.registry import arch_config_of, arch_name, receptive_field_of
from .runner import FALLBACK_RECEPTIVE_FIELD, ArrayRunner

MIN_OPSET = 11  # first opset whose Resize matches PyTorch's bilinear (align_corners=False)


def opset_range() -> tuple[int, int]:
    """(lowest, highest) ONNX opset :func:`export_onnx` supports with this PyTorch."""
    try:
        from torch.onnx import _constants

        return MIN_OPSET, int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))
    except ImportError:
        return MIN_OPSET, 20


class OnnxModel:
    """An onnxruntime session that maps float32 NCHW (0-1) to float32 NCHW (nominally 0-1, unclamped).

    Args:
        source: path of an ``.onnx`` file, or its bytes.
        threads: intra-op threads (None = onnxruntime's default).
        providers: onnxruntime execution providers (default: CPU).

    ``scale`` and :meth:`receptive_field` come from the facesr metadata of the file; for a
    foreign file the scale is measured and the receptive field is :data:`FALLBACK_RECEPTIVE_FIELD`.
    """

    backend = "onnxruntime"

    def __init__(
        self, source: str | os.PathLike | bytes, threads: int | None = None, providers: Sequence[str] | None = None
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingExtraError("onnx", "running ONNX models") from None
        name = "<in-memory model>" if isinstance(source, bytes) else str(source)
        if not isinstance(source, bytes):
            p = Path(source)
            if not p.is_file():
                raise CheckpointError(f"{p}: ONNX file not found")
            source = p.read_bytes()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                source, sess_options=opts, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:
            raise CheckpointError(f"{name}: not a loadable ONNX model ({one_line(exc)})") from None
        self.name = name
        self.input_name = self.session.get_inputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map or {})
        if "facesr.upscale_factor" in self.metadata:
            self.scale = int(self.metadata["facesr.upscale_factor"])
        else:  # not exported by facesr: measure it
            y = self(np.zeros((1, 3, 8, 8), np.float32))
            self.scale = int(y.shape[2] // 8)
        if self.scale < 1:
            raise CheckpointError(f"{name}: model does not upscale (output smaller than input)")
        self._receptive_field = int(self.metadata.get("facesr.receptive_field", FALLBACK_RECEPTIVE_FIELD))

    def receptive_field(self) -> int:
        """LQ pixels of context an output pixel depends on (from the metadata; a fallback for foreign files)."""
        return self._receptive_field

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 3, h, w) 0-1 -> float32 (N, 3, s*h, s*w), unclamped."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


class OnnxRuntimeRunner(ArrayRunner):
    """The onnxruntime backend of the :mod:`.runner` protocol: an :class:`OnnxModel`, in fp32 on the CPU
    (or the given execution providers).  :meth:`load` opens a file or bytes."""

    backend = "onnxruntime"

    @classmethod
    def load(
        cls,
        source: str | os.PathLike | bytes,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        precision: str | None = None,
    ) -> OnnxRuntimeRunner:
        """A runner for an ``.onnx`` path or ONNX bytes (see :class:`OnnxModel` for the arguments)."""
        return cls(OnnxModel(source, threads=threads, providers=providers), precision=precision)


def _torchscript_export(m: nn.Module, opset: int) -> bytes:
    """The bare ONNX bytes of CPU fp32 module ``m`` (dynamic batch, height and width)."""
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                m,
                (x,),
                buf,  # type: ignore[arg-type]  # a file object works; the stub says path only
                dynamo=False,
                opset_version=int(opset),
                input_names=["lq"],
                output_names=["sr"],
                do_constant_folding=True,
                dynamic_axes={
                    "lq": {0: "batch", 2: "height", 3: "width"},
                    "sr": {0: "batch", 2: "out_height", 3: "out_width"},
                },
            )
        except Exception as exc:  # e.g. an unsupported opset
            raise FacesrError(f"ONNX export failed (opset {opset}): {one_line(exc)}") from None
    return buf.getvalue()


def _with_metadata(data: bytes, m: nn.Module) -> bytes:
    """``data`` with facesr's metadata (scale, receptive field, architecture); unchanged without ``onnx``."""
    try:
        import onnx
    except ImportError:  # the 'onnx' extra is absent: a valid model without facesr metadata
        return data
    proto = onnx.load_from_string(data)
    meta = {
        "facesr.upscale_factor": str(int(getattr(m, "upscale_factor", 4))),
        "facesr.input": "float32 NCHW RGB 0-1",
        "facesr.output": "float32 NCHW RGB, clamp to 0-1 then x255",
    }
    if hasattr(m, "receptive_field"):
        meta["facesr.receptive_field"] = str(receptive_field_of(m))
    if hasattr(m, "arch_config"):
        meta["facesr.arch_config"] = json.dumps(arch_config_of(m))
    try:
        meta["facesr.arch"] = arch_name(m)
    except ValueError:  # not a registered architecture: the file just does not name one
        pass
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "facesr"
    return proto.SerializeToString()


def _check_export(data: bytes, m: nn.Module) -> None:
    """FacesrError unless onnxruntime (when installed) reproduces ``m`` within 1e-3 on a random input."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return
    x = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = m(x).numpy()
    got = OnnxModel(data)(x.numpy())
    if got.shape != ref.shape or float(np.abs(got - ref).max()) > 1e-3:
        raise FacesrError(
            f"ONNX export does not reproduce PyTorch (shape {got.shape} vs {ref.shape}, "
            f"max diff {float(np.abs(got - ref).max()) if got.shape == ref.shape else 'n/a'})"
        )


def export_onnx(model: nn.Module, path: str | os.PathLike | None = None, opset: int = 17, check: bool = True) -> bytes:
    """Export ``model`` to ONNX with dynamic batch, height and width; return the bytes.

    Input ``lq``: float32 (N, 3, h, w), 0-1.  Output ``sr``: float32 (N, 3, s*h, s*w),
    unclamped.  Uses PyTorch's TorchScript-based exporter (``dynamo=False``), which
    works offline without ``onnxscript``.  The upscale factor, receptive field and
    architecture are stored as metadata (``facesr.upscale_factor``,
    ``facesr.receptive_field``, ``facesr.arch_config``).  When ``path`` is given the file
    is written atomically.  With ``check`` the export is run once in onnxruntime (if
    installed) and compared with PyTorch on a small random input.
    """
    from ..io.files import atomic_write_bytes

    lo, hi = opset_range()
    if not lo <= int(opset) <= hi:
        # Below 11, ONNX Resize cannot express PyTorch's bilinear (half-pixel) sampling.
        raise BadValueError(
            f"ONNX opset {opset} is not supported: use {lo} to {hi} (this PyTorch's TorchScript exporter)"
        )
    src = getattr(model, "module", model)
    src = getattr(src, "_orig_mod", src)
    m = copy.deepcopy(src).to("cpu", torch.float32).to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
    data = _with_metadata(_torchscript_export(m, opset), m)
    if check:
        _check_export(data, m)
    if path is not None:
        atomic_write_bytes(path, data)
    return data
