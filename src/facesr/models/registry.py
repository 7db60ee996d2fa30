"""A small name -> builder registry for architectures.

``build_model("msrresnet", num_blocks=24)`` builds a model; ``register`` adds
one.  Checkpoints store the architecture name and its keyword arguments, so a
new architecture plugs in by registering a class with ``arch_config()``.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .msrresnet import MSRResNet

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, builder: Callable[..., nn.Module]) -> None:
    """Register ``builder`` (a class or factory returning an nn.Module) under ``name``."""
    key = name.lower()
    if key in _REGISTRY and _REGISTRY[key] is not builder:
        raise ValueError(f"architecture {name!r} is already registered")
    _REGISTRY[key] = builder


def available() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the architecture registered as ``name`` with ``kwargs``."""
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown architecture {name!r}; available: {', '.join(available())}")
    try:
        return _REGISTRY[key](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for architecture {name!r}: {exc}") from None


register("msrresnet", MSRResNet)
