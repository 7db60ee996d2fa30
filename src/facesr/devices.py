"""Device names -> ``torch.device``, with one-line :class:`~facesr.errors.DeviceError` messages."""

from __future__ import annotations

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
