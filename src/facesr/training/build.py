"""What a run trains: device and process group, the model (with its parameter cap, initial weights
and EMA copy), the optimiser, and the module the loop calls (DDP and/or ``torch.compile``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Config
from ..devices import resolve_device
from ..errors import CheckpointError, ConfigError
from ..models import build_model, count_params
from ..models.registry import arch_config_of
from ..models.weights import load_into, read_weights
from . import distributed as D
from .ema import EMA


def setup_device(cfg: Config) -> tuple[torch.device, D.DistInfo]:
    """The training device and process group; determinism/cuDNN settings; the global seed.

    Seeding comes last: everything after it draws from the run's random stream in a fixed order.
    """
    device = resolve_device(cfg.train.device, option="train.device")
    dist = D.init_distributed(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    if cfg.train.precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision: fp16 needs a CUDA device (use bf16 on CPU)")
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)
    return device, dist


def build_networks(
    cfg: Config, device: torch.device, init_from: str | Path | None = None, init_ema: bool = False
) -> tuple[nn.Module, EMA | None, list]:
    """``(model, ema, lineage)``: the model on ``device`` (capped by ``model.max_params``), started from
    ``init_from``'s weights when given (its EMA copy with ``init_ema``), and its EMA copy."""
    model = build_model(cfg.model.arch, **cfg.model.arch_kwargs())
    n_params = count_params(model)
    if cfg.model.max_params is not None and n_params > cfg.model.max_params:
        raise ConfigError(
            f"model.max_params: the model has {n_params:,} trainable parameters, over the cap of "
            f"{cfg.model.max_params:,}"
        )
    lineage = init_weights(model, init_from, init_ema, cfg.model.arch) if init_from is not None else []
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ema = EMA(model, cfg.train.ema_momentum) if cfg.train.ema_momentum else None
    return model, ema, lineage


def init_weights(model: nn.Module, path: str | Path, ema: bool, arch: str) -> list:
    """Load weights only from ``path`` into ``model``; return the lineage list (oldest first)."""
    lw = read_weights(path, ema=ema)
    own = arch_config_of(model)
    if lw.arch != arch or lw.arch_config != own:
        diff = {k: (lw.arch_config.get(k), v) for k, v in own.items() if lw.arch_config.get(k) != v}
        raise CheckpointError(
            f"{path}: the initial weights are {lw.arch} {lw.arch_config}, the config builds {arch} "
            f"(differs in: {', '.join(f'{k} {a} vs {b}' for k, (a, b) in diff.items()) or 'arch'})"
        )
    load_into(model, lw.state_dict, str(path))
    h = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    meta = lw.metadata if isinstance(lw.metadata, dict) else {}
    prev = meta.get("lineage")
    try:
        lineage = json.loads(prev) if isinstance(prev, str) else list(prev or [])
    except ValueError:
        lineage = []
    return [
        *lineage,
        {
            "init_from": str(path),
            "sha256": h,
            "ema": ema,
            "source_format": lw.source_format,
            "source_iter": meta.get("iter"),
        },
    ]


def make_optimizer(cfg: Config, params, device: torch.device) -> torch.optim.Optimizer:
    """Adam/AdamW per ``optim``; ``optim.impl: auto`` = fused on CUDA, foreach elsewhere."""
    o = cfg.optim
    kw: dict = {"lr": o.lr, "betas": tuple(o.betas), "weight_decay": o.weight_decay}
    if o.impl == "fused" or (o.impl == "auto" and device.type == "cuda"):
        kw["fused"] = True
    elif o.impl == "foreach" or o.impl == "auto":
        kw["foreach"] = True
    else:
        kw["foreach"] = False
    cls = torch.optim.Adam if o.type == "adam" else torch.optim.AdamW
    return cls(params, **kw)


def training_module(model: nn.Module, device: torch.device, dist: D.DistInfo, compile: bool) -> nn.Module:
    """The module the loop calls: ``model`` wrapped in DDP under torchrun, then ``torch.compile``d if asked."""
    out: Any = model
    if dist.enabled:
        out = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        out = torch.compile(out)
    return out
