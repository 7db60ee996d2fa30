"""Architectures, the registry, complexity counting and checkpoint I/O."""

from ..errors import CheckpointError
from .complexity import FlopCount, count_flops, count_params, format_size
from .lqresnet import LQResNet
from .msrresnet import MSRResNet
from .registry import available, build_model, register
from .weights import load_model, read_weights, save_weights

__all__ = [
    "MSRResNet",
    "LQResNet",
    "build_model",
    "register",
    "available",
    "FlopCount",
    "count_flops",
    "count_params",
    "format_size",
    "CheckpointError",
    "load_model",
    "read_weights",
    "save_weights",
]
