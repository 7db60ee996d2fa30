"""Architectures, the registry, complexity counting and checkpoint I/O."""
from .complexity import count_flops, count_params, format_size
from .msrresnet import MSRResNet
from .registry import available, build_model, register
from .weights import CheckpointError, load_model, read_weights, save_weights

__all__ = ["MSRResNet", "build_model", "register", "available", "count_flops", "count_params",
           "format_size", "CheckpointError", "load_model", "read_weights", "save_weights"]
