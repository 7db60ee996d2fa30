"""Device names -> ``torch.device``, with one-line :class:`~facesr.errors.DeviceError` messages; the host's
memory (for the estimates that refuse a run or a forward pass that cannot fit)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import DeviceError

#: Device types facesr computes on ("meta", "xla", ... hold no data or are not supported).
SUPPORTED = ("cpu", "cuda", "mps")


def resolve_device(spec: str | torch.device | None = "auto", option: str = "device") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` as given.

    ``option`` names the setting in messages ("device", "train.device"; a command passes its flag).
    """
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"{option} {spec!r}: not a device name (use auto, cpu, cuda or cuda:N)") from None
    if dev.type not in SUPPORTED:
        raise DeviceError(f"{option} {spec}: facesr runs on {', '.join(SUPPORTED)} (use auto, cpu, cuda or cuda:N)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{option} {spec}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"{option} {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"{option} {spec}: MPS is not available on this machine")
    return dev


def gb(n: float) -> str:
    """Bytes as decimal gigabytes for messages: ``"1.5 GB"``."""
    return f"{n / 1e9:,.1f} GB"


def _cgroup_limit() -> tuple[int, int] | None:
    """``(limit, in use)`` of this process's cgroup (v2), or None when unlimited or unknown."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit), int((base / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def host_memory() -> tuple[int, int] | None:
    """``(available, total)`` bytes of host memory (MemAvailable, within a cgroup limit); None if unknown."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total, avail = os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
    except (AttributeError, ValueError, OSError):
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    cg = _cgroup_limit()
    if cg is not None:
        total, avail = min(total, cg[0]), min(avail, max(0, cg[0] - cg[1]))
    return avail, total
