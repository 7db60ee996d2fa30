"""Plain data (parsed YAML) -> typed dataclasses, with one-line errors naming the dotted key.

The one converter behind :mod:`facesr.config` and the model registry's architecture ``Cfg``
checks.  It sits below both, so neither imports the other to validate.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

from .errors import ConfigError


def type_name(tp: Any) -> str:
    """A readable name for a type annotation (``int``, ``Optional[str]``, ``DataCfg``)."""
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _to_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _to_int(value: Any, key: str) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    return value


def _to_float(value: Any, key: str) -> float:
    if isinstance(value, str):  # PyYAML reads 2e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _to_str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _to_union(value: Any, args: tuple, key: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for a in args:
        if a is type(None):
            continue
        try:
            return convert(value, a, key)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: bad value {value!r}")


def _to_literal(value: Any, args: tuple, key: str) -> Any:
    if value not in args:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
    return value


def _to_list(value: Any, args: tuple, key: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    return [convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]


def convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked and converted to annotation ``tp``; :class:`ConfigError` naming ``key`` if it can't be.

    A class with a ``from_config_value(value, key)`` static method converts itself (how the config's
    ``model:`` section hands its fields to the architecture registry).
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return _to_union(value, args, key)
    if origin is Literal:
        return _to_literal(value, args, key)
    if origin is list:
        return _to_list(value, args, key)
    if hasattr(tp, "from_config_value"):
        return tp.from_config_value(value, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {type_name(tp)} fields, got {value!r}")
        return from_dict(tp, value, key)
    if tp in _SCALARS:
        return _SCALARS[tp](value, key)
    return value


def from_dict(cls: Any, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and bad types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(names))})")
        kwargs[k] = convert(v, hints[k], key)
    return cls(**kwargs)
