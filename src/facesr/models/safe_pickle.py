"""Load PyTorch pickles from untrusted files without executing anything.

MMagic Runner checkpoints hold, besides tensors, a ``message_hub`` of mmengine
objects that ``torch.load(weights_only=True)`` rejects.  Loading them with
``weights_only=False`` would execute whatever the pickle names.  Instead,
:func:`restricted_torch_load` gives ``torch.load`` an unpickler whose
``find_class`` returns real objects only for an allow-list of tensor-rebuild
helpers and plain containers, already imported; every other global becomes an
inert placeholder class that records its arguments and does nothing.  No module
is imported and no user-named callable is ever called.
"""

from __future__ import annotations

import collections
import pickle
import types

import torch
import torch._utils

_ALLOWED: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
}
if hasattr(torch._utils, "_rebuild_parameter_with_state"):
    _ALLOWED[("torch._utils", "_rebuild_parameter_with_state")] = torch._utils._rebuild_parameter_with_state
for _name in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool"):
    _ALLOWED[("torch", _name)] = getattr(torch, _name)


class InertObject:
    """Stand-in for a class the checkpoint names but we refuse to import."""

    _qualname = "?"

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self._qualname}>"


def _placeholder(module: str, name: str) -> type:
    return type(name, (InertObject,), {"_qualname": f"{module}.{name}", "__module__": "facesr.inert"})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that never imports or calls anything outside the allow-list."""

    def find_class(self, module: str, name: str):
        obj = _ALLOWED.get((module, name))
        if obj is not None:
            return obj
        return _placeholder(module, name)


# torch.load(pickle_module=...) wants a module-like object with Unpickler and load.
restricted_pickle_module = types.SimpleNamespace(
    Unpickler=RestrictedUnpickler,
    load=lambda f, **kw: RestrictedUnpickler(f, **kw).load(),
    __name__="facesr_restricted_pickle",
)


def restricted_torch_load(path, map_location="cpu"):
    """``torch.load`` that first tries ``weights_only=True`` and falls back to
    the restricted unpickler (never ``weights_only=False`` semantics)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "looks like a TorchScript archive": reported as an error instead
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        pass
    return torch.load(path, map_location=map_location, weights_only=False, pickle_module=restricted_pickle_module)


def load_failure_reason(exc: BaseException) -> str:
    """A short, safe reason for a failed ``torch.load``.

    Never repeats PyTorch's advice to retry with ``weights_only=False`` (that would run code named by the file).
    """
    msg = " ".join(str(exc).split())
    if "TorchScript" in msg:
        return "a TorchScript archive, not a file of weights (save the model's state_dict instead)"
    if "weights_only" in msg or "Weights only load failed" in msg:
        return "it holds Python objects other than tensors, which facesr refuses to load"
    first = msg.split(". ")[0]
    if len(first) > 120:
        first = first[:117] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
