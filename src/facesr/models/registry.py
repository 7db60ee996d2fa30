"""The architecture registry: a name -> model class map, one line per architecture.

An architecture is one file that defines an ``nn.Module`` subclass with:

* ``Cfg``: a dataclass of its constructor arguments (typed; ``Literal`` for fixed
  choices) with a ``check() -> [(field, message)]`` method for value ranges;
* ``receptive_field() -> int``: LQ pixels of context an output pixel depends on
  (the tile overlap that makes tiled inference exact);
* ``arch_config() -> dict``: the keyword arguments that rebuild it (stored in
  checkpoints, so checkpoints describe themselves);
* an ``upscale_factor`` attribute;
* optionally ``PRESETS`` (``{name: Cfg fields}``, its documented configurations, which the
  registry test holds under the parameter cap) and ``TINY`` (Cfg fields of a small instance
  for quick tests).

plus one ``register(name, Class)`` line below.  A config's ``model:`` section is
``{arch: NAME, max_params: N, **Cfg fields}`` and goes straight to the class;
``tests/test_registry.py`` checks every registered architecture for params,
FLOPs, ONNX export and exact tiling.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ..errors import ConfigError
from ..schema import from_dict
from .lqresnet import LQResNet
from .msrresnet import MSRResNet

_REGISTRY: dict[str, type[nn.Module]] = {}


def register(name: str, cls: type[nn.Module]) -> None:
    """Register architecture ``cls`` under ``name`` (lower-case)."""
    for attr in ("Cfg", "receptive_field", "arch_config"):
        if not hasattr(cls, attr):
            raise TypeError(f"architecture {name!r} lacks {attr!r} (see facesr.models.registry)")
    key = name.lower()
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ValueError(f"architecture {name!r} is already registered")
    _REGISTRY[key] = cls


def available() -> list[str]:
    """Names of the registered architectures, sorted."""
    return sorted(_REGISTRY)


def arch_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``; :class:`ConfigError` naming the choices if unknown."""
    if not isinstance(name, str) or name.lower() not in _REGISTRY:
        raise ConfigError(f"model.arch: unknown architecture {name!r} (available: {', '.join(available())})")
    return _REGISTRY[name.lower()]


def arch_name(model: nn.Module) -> str:
    """The registry name of ``model``'s class (for self-describing checkpoints)."""
    for name, cls in _REGISTRY.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered architecture (see facesr.models.registry)")


def arch_config_of(model: nn.Module) -> dict:
    """The keyword arguments that rebuild ``model`` (its ``arch_config()``; every registered class has one)."""
    return dict(getattr(model, "arch_config")())


def receptive_field_of(model: nn.Module) -> int:
    """LQ pixels of context an output pixel depends on (the model's ``receptive_field()``)."""
    return int(getattr(model, "receptive_field")())


def arch_cfg(name: str, kwargs: dict, prefix: str = "model", also_known: tuple[str, ...] = ()):
    """Validate ``kwargs`` against architecture ``name``'s ``Cfg`` (types and ranges); return the Cfg.

    ``also_known``: keys the caller takes itself (``arch``, ``max_params`` of a config's ``model:`` section),
    named with the architecture's fields when a key is unknown.
    """
    cls = arch_class(name)
    fields = {f.name for f in dataclasses.fields(getattr(cls, "Cfg"))}
    for key in kwargs:
        if key not in fields:
            known = ", ".join([*also_known, *sorted(fields)])
            raise ConfigError(f"{prefix}.{key}: unknown key for architecture {name!r} (known: {known})")
    cfg = from_dict(getattr(cls, "Cfg"), kwargs, prefix)
    for key, msg in cfg.check():
        raise ConfigError(f"{prefix}.{key}: {msg}")
    return cfg


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the architecture registered as ``name`` from its (validated) keyword arguments."""
    cfg = arch_cfg(name, kwargs)
    return arch_class(name)(**dataclasses.asdict(cfg))


register("msrresnet", MSRResNet)
register("lqresnet", LQResNet)
