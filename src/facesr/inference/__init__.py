"""Run trained models on images: :class:`Restorer` (the one forward path), the runners it drives (one per
backend, :mod:`.runner`), tiling, ONNX export and runtime."""

from ..devices import resolve_device
from ..io.alpha import join_alpha, split_alpha
from .onnx import MIN_OPSET, OnnxModel, OnnxRuntimeRunner, export_onnx, opset_range
from .restorer import Restorer
from .runner import FALLBACK_RECEPTIVE_FIELD, ArrayRunner, Runner, make_runner
from .tiling import split_range, tile_boxes
from .torch_runner import TorchRunner

__all__ = [
    "FALLBACK_RECEPTIVE_FIELD",
    "MIN_OPSET",
    "ArrayRunner",
    "OnnxModel",
    "OnnxRuntimeRunner",
    "Restorer",
    "Runner",
    "TorchRunner",
    "export_onnx",
    "join_alpha",
    "make_runner",
    "opset_range",
    "resolve_device",
    "split_alpha",
    "split_range",
    "tile_boxes",
]
