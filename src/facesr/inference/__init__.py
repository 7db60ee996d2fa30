"""Run trained models on images: :class:`Restorer` (the one forward path), tiling, ONNX export and runtime."""
from ..devices import resolve_device
from .onnx import FALLBACK_RECEPTIVE_FIELD, MIN_OPSET, OnnxModel, export_onnx, opset_range
from .restorer import Restorer, join_alpha, split_alpha
from .tiling import split_range, tile_boxes

__all__ = ["Restorer", "OnnxModel", "export_onnx", "opset_range", "MIN_OPSET", "FALLBACK_RECEPTIVE_FIELD",
           "tile_boxes", "split_range", "split_alpha", "join_alpha", "resolve_device"]
