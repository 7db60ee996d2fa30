"""Weight I/O for every checkpoint format facesr reads.  Never imports the engine.

Formats (detected from the file, not the name):

* **facesr weights** (``.safetensors``): tensors named as in
  :class:`~facesr.models.msrresnet.MSRResNet`; metadata ``format=facesr``,
  ``arch`` and ``arch_config`` (JSON).  An EMA copy, when present, is stored
  under the ``ema.`` prefix.
* **facesr training checkpoints** (``.pt``): ``{"format": "facesr-train",
  "arch", "arch_config", "model", "ema", ...}``; read with
  ``torch.load(weights_only=True)``.
* **MMagic / MMEditing** (``.pth``): ``state_dict`` with ``generator.*`` (and
  ``generator_ema.*``) keys, possibly beside a ``message_hub`` of mmengine
  objects.  Read through :mod:`facesr.models.safe_pickle`.
* **BasicSR** (``.pth``): ``params`` / ``params_ema`` with BasicSR names
  (``body.N.conv1``, ``upconv1``...).  Loaded into the BasicSR variant.

Foreign formats (MMagic, BasicSR, bare state dicts) are read as **MSRResNet only**:
their files do not say which architecture they hold, so the shapes are read off
MSRResNet's tensor names.  Other registered architectures (e.g. LQResNet) are
read from facesr files, which store ``arch`` and ``arch_config``.

All loaders return ``(model, info)`` where ``info`` says what was loaded.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError, OutputError, one_line
from ..io.files import open_regular
from .registry import arch_config_of, arch_name, build_model
from .safe_pickle import load_failure_reason, restricted_torch_load


@dataclass
class LoadedWeights:
    state_dict: dict[str, torch.Tensor]
    arch: str = "msrresnet"
    arch_config: dict = field(default_factory=dict)
    source_format: str = "facesr"
    used_ema: bool = False
    metadata: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- saving


def save_weights(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str | None = None,
    ema: nn.Module | None = None,
    metadata: dict | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Write ``model`` (and optionally its EMA copy) as facesr safetensors, atomically.

    ``arch`` defaults to the name ``model``'s class is registered under.
    ``dtype`` (e.g. ``torch.float16``) stores the tensors in that precision;
    loading casts back to float32.
    """
    if arch is None:
        arch = arch_name(_unwrap(model))

    def prep(sd, prefix=""):
        out = {}
        for k, v in sd.items():
            v = v.detach().to("cpu")
            if dtype is not None and v.is_floating_point():
                v = v.to(dtype)
            out[prefix + k] = v.contiguous().clone()  # safetensors refuses shared storage (model is ema)
        return out

    tensors = prep(_unwrap(model).state_dict())
    if ema is not None:
        tensors.update(prep(_unwrap(ema).state_dict(), "ema."))
    meta = {"format": "facesr", "arch": arch, "arch_config": json.dumps(arch_config_of(_unwrap(model)))}
    for k, v in (metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except (OSError, RuntimeError, SafetensorError) as exc:  # safetensors: an OSError, or its own Rust error
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc, 120)
        raise OutputError(f"cannot write {path}: {why}") from None
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


# ----------------------------------------------------------------------------- reading

_BASICSR_RENAMES = [
    (re.compile(r"^body\.(\d+)\."), r"trunk_net.\1."),
    (re.compile(r"^upconv1\."), "upsample1.upsample_conv."),
    (re.compile(r"^upconv2\."), "upsample2.upsample_conv."),
]


def _basicsr_to_facesr(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        for pat, rep in _BASICSR_RENAMES:
            k = pat.sub(rep, k)
        out[k] = v
    return out


def _strip(sd: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def infer_msrresnet_config(sd: dict, variant: str = "mmagic") -> dict:
    """Read mid_channels, num_blocks and upscale factor off MSRResNet tensor shapes."""
    try:
        w_first = sd["conv_first.weight"]
        w_last = sd["conv_last.weight"]
        w_up1 = sd["upsample1.upsample_conv.weight"]
    except KeyError as exc:
        raise CheckpointError(
            f"not an MSRResNet state dict (foreign formats are read as MSRResNet only): missing key {exc.args[0]!r}"
        ) from None
    mid = int(w_first.shape[0])
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"trunk_net\.(\d+)\.", k))}
    num_blocks = max(blocks) + 1 if blocks else 0
    if "upsample2.upsample_conv.weight" in sd:
        scale = 4
    else:
        scale = int(round((w_up1.shape[0] / mid) ** 0.5))
    return {
        "in_channels": int(w_first.shape[1]),
        "out_channels": int(w_last.shape[0]),
        "mid_channels": mid,
        "num_blocks": num_blocks,
        "upscale_factor": scale,
        "variant": variant,
    }


def read_weights(path: str | os.PathLike, ema: bool = False) -> LoadedWeights:
    """Read a checkpoint of any supported format into a :class:`LoadedWeights`.

    ``ema=True`` selects the EMA weights (``ema.*``, ``generator_ema.*`` or
    ``params_ema``) and fails clearly when the file has none.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file")
    try:
        with open_regular(path) as f:  # never open() a FIFO: it would wait for a writer forever
            head = f.read(16)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(head) < 8:
        raise CheckpointError(f"{path}: file is empty or truncated")
    if path.suffix == ".safetensors" or (head[8:9] == b"{" and not head.startswith(b"PK")):
        return _read_safetensors(path, ema)
    try:
        obj = restricted_torch_load(path)
    except Exception as exc:  # corrupt zip, truncated pickle, ...
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({load_failure_reason(exc)})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(obj).__name__}")
    return _from_torch_dict(path, obj, ema)


def _read_safetensors(path: Path, ema: bool) -> LoadedWeights:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (a safetensors handle, not a dict)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    has_ema = any(k.startswith("ema.") for k in tensors)
    if ema and not has_ema:
        raise CheckpointError(f"{path}: EMA weights asked for, but the file holds no EMA weights")
    sd = _strip(tensors, "ema.") if ema else {k: v for k, v in tensors.items() if not k.startswith("ema.")}
    arch = meta.get("arch", "msrresnet")
    if "arch_config" in meta:
        try:
            arch_config = json.loads(meta["arch_config"])
        except (ValueError, RecursionError):
            raise CheckpointError(f"{path}: metadata arch_config is not valid JSON") from None
    else:
        arch_config = infer_msrresnet_config(sd)
    _check_meta(path, arch, arch_config)
    return LoadedWeights(sd, arch, arch_config, "facesr", ema, meta)


def _check_meta(path: Path, arch, arch_config) -> None:
    """Types of a facesr file's self-description (the values are checked by the architecture's Cfg)."""
    if not isinstance(arch, str):
        raise CheckpointError(f"{path}: metadata arch must be a string, got {type(arch).__name__}")
    if not isinstance(arch_config, dict) or not all(isinstance(k, str) for k in arch_config):
        raise CheckpointError(
            f"{path}: metadata arch_config must be a mapping of names to values, got {type(arch_config).__name__}"
        )


def _from_torch_dict(path: Path, obj: dict, ema: bool) -> LoadedWeights:
    if obj.get("format") == "facesr-train":
        key = "ema" if ema else "model"
        if obj.get(key) is None:
            if ema:
                raise CheckpointError(f"{path}: EMA weights asked for, but the checkpoint holds no EMA weights")
            raise CheckpointError(f"{path}: facesr training checkpoint without model weights")
        weights, arch, arch_config = obj[key], obj.get("arch", "msrresnet"), obj.get("arch_config")
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise CheckpointError(f"{path}: the {key!r} entry is not a dict of tensors ({type(weights).__name__})")
        if arch_config is None:
            raise CheckpointError(f"{path}: facesr training checkpoint without arch_config")
        _check_meta(path, arch, arch_config)
        it = obj.get("iter")
        return LoadedWeights(
            {str(k): v for k, v in weights.items()},
            arch,
            dict(arch_config),
            "facesr-train",
            ema,
            {
                "iter": it if isinstance(it, int) else None,
                "lineage": [e for e in obj.get("lineage") or [] if isinstance(e, dict)]
                if isinstance(obj.get("lineage"), list)
                else [],
            },
        )
    if "params" in obj or "params_ema" in obj:  # BasicSR
        key = "params_ema" if ema else "params"
        if key not in obj:
            raise CheckpointError(f"{path}: BasicSR checkpoint has no {key!r} (keys: {', '.join(map(str, obj))})")
        sd = _basicsr_to_facesr(_tensor_items(obj[key]))
        return LoadedWeights(sd, "msrresnet", infer_msrresnet_config(sd, "basicsr"), "basicsr", ema)
    sd = obj.get("state_dict", obj)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: 'state_dict' is not a dict")
    sd = _tensor_items(sd)
    if any(k.startswith("generator.") for k in sd):  # MMagic / MMEditing
        prefix = "generator_ema." if ema else "generator."
        sub = _strip(sd, prefix)
        if not sub:
            raise CheckpointError(f"{path}: MMagic checkpoint has no {prefix}* weights")
        return LoadedWeights(sub, "msrresnet", infer_msrresnet_config(sub), "mmagic", ema)
    if any(k.startswith(("body.", "upconv1.")) for k in sd):  # bare BasicSR-named dict
        sd = _basicsr_to_facesr(sd)
        return LoadedWeights(sd, "msrresnet", infer_msrresnet_config(sd, "basicsr"), "basicsr", ema)
    if "conv_first.weight" in sd:
        if ema:
            raise CheckpointError(
                f"{path}: EMA weights asked for, but the file is a bare state dict without EMA weights"
            )
        return LoadedWeights(sd, "msrresnet", infer_msrresnet_config(sd), "state_dict", False)
    raise CheckpointError(
        f"{path}: no model weights found (top-level keys: {', '.join(map(str, list(obj)[:8]))}; "
        f"MMagic, BasicSR and bare state dicts are read as MSRResNet only)"
    )


def _tensor_items(d: dict) -> dict:
    return {str(k): v for k, v in d.items() if isinstance(v, torch.Tensor)}


def load_into(model: nn.Module, state_dict: dict, source: str = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` with one clear error naming bad keys/shapes."""
    own = model.state_dict()
    problems = _fit_problems(own, state_dict)
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the model ({' | '.join(problems)})")
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{source}: weights hold NaN or infinite values ({', '.join(bad[:3])}"
            f"{' ...' if len(bad) > 3 else ''}); the model would output garbage"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state_dict.items()})


def _fit_problems(own: dict, state_dict: dict) -> list[str]:
    """What keeps ``state_dict`` from loading into a model whose state dict is ``own`` (empty: it fits)."""
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected[:6]) + (" ..." if len(unexpected) > 6 else ""))
    if shapes:
        problems.append("shape mismatch: " + "; ".join(shapes[:4]))
    return problems


def load_model(path: str | os.PathLike, ema: bool = False, map_location="cpu") -> tuple[nn.Module, LoadedWeights]:
    """Build the architecture a checkpoint describes and load its weights (float32, eval mode)."""
    lw = read_weights(path, ema=ema)
    model = build_checked(lw, str(path))
    load_into(model, lw.state_dict, str(path))
    return model.to(map_location).eval(), lw


class _SkipInit(torch.overrides.TorchFunctionMode):
    """In-place ops on meta tensors (weight init: ``normal_``, ``uniform_``, ``mul_``...) do nothing.

    Building a shape-only model then costs no import of meta decompositions.  Torch function modes are
    thread-local, so other threads are unaffected.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if (
            name.endswith("_")
            and not name.startswith("_")
            and args
            and isinstance(args[0], torch.Tensor)
            and args[0].is_meta
        ):
            return args[0]
        return func(*args, **(kwargs or {}))


def build_checked(lw: LoadedWeights, source: str) -> nn.Module:
    """Build the model ``lw`` describes, after checking its metadata against the weights' shapes.

    The model is first built on the ``meta`` device (no memory), so metadata claiming e.g. 200,000 blocks
    over a 3 MB file is refused before anything is allocated.
    """
    from ..errors import ConfigError

    try:
        with torch.device("meta"), _SkipInit():
            shell = build_model(lw.arch, **lw.arch_config)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(
            f"{source}: metadata does not describe a model facesr builds ({one_line(exc, 150)})"
        ) from None
    problems = _fit_problems(shell.state_dict(), lw.state_dict)
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the model ({' | '.join(problems)})")
    del shell
    return build_model(lw.arch, **lw.arch_config)
