"""Run a PyTorch model: :class:`TorchRunner`, the torch backend of the :mod:`.runner` protocol.

It owns everything about how the module runs: the device, the precision (autocast for bf16/fp16,
NNPACK's Winograd convolutions for fp32-winograd, :mod:`.precision`, :mod:`.winograd`) and the
memory layout.  The input always reaches the model channels-last, in freshly laid-out strides
(:func:`channels_last_input`): oneDNN's channels-last convolutions give an image the same result
whatever else shares its batch, whereas PyTorch runs a batch of one whose NCHW-looking strides
(``img[None]`` gives the batch axis stride 0) through other kernels, about 2e-5 (0-1 scale) apart
on AVX-512 CPUs: enough to move a rounded pixel by one level.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ..devices import resolve_device
from .precision import DTYPES, resolve_precision
from .winograd import winograd_model


def channels_last_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) with exactly the strides of a new channels-last tensor (a copy only when they differ)."""
    _, c, h, w = x.shape
    if x.stride() == (h * w * c, 1, w * c, c):
        return x
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last).copy_(x)


class TorchRunner:
    """An ``nn.Module`` mapping float (N, 3, h, w) 0-1 to (N, 3, s*h, s*w), run for inference.

    Args:
        model: the module; put in eval mode and moved to ``device`` in place (``fp32-winograd`` then
            runs a converted copy of it, :func:`~facesr.inference.winograd.winograd_model`).
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ...
        precision: None (= fp32), ``"auto"``, ``"fp32"``, ``"fp32-winograd"``, ``"bf16"`` or ``"fp16"``
            (:func:`~facesr.inference.precision.resolve_precision`; ``auto`` is logged once).
            ``fp32-winograd`` on a model without a 3x3 conv of 64+ channels runs plain fp32 and says so.
        channels_last: store the weights channels-last (the fastest layout for oneDNN and cuDNN); the
            input is channels-last either way (module docstring).  Off for ``fp32-winograd``, whose
            NNPACK convolutions read NCHW.

    Attributes: ``model`` (what runs), ``device``, ``precision``, ``precision_reason``,
    ``channels_last``, ``winograd_convs`` (convolutions running NNPACK's Winograd), ``scale``,
    ``receptive_field`` (``model.receptive_field()``, or None when the module has none).
    """

    backend = "torch"

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        precision: str | None = None,
        channels_last: bool = True,
    ):
        self.device = resolve_device(device)
        self.precision, self.precision_reason = resolve_precision(precision, self.device, self.backend)
        self.autocast_dtype = DTYPES[self.precision]
        rf = getattr(model, "receptive_field", None)
        self.receptive_field = int(rf()) if callable(rf) else None
        model = model.eval().to(self.device)
        self.winograd_convs = 0
        if self.precision == "fp32-winograd":
            model, self.winograd_convs = winograd_model(model)
            if not self.winograd_convs:  # nothing to convert: plain fp32, in the faster layout, and say so
                self.precision = "fp32"
                self.precision_reason += "; no 3x3 conv of 64+ channels to run as Winograd, so plain fp32"
        self.channels_last = bool(channels_last) and not self.winograd_convs  # NNPACK reads NCHW
        self.model = (
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            if self.channels_last
            else model
        )
        self.scale = int(getattr(model, "upscale_factor", 0)) or self._probe_scale()

    def _probe_scale(self) -> int:
        with torch.inference_mode():
            return int(self(torch.zeros(1, 3, 8, 8)).shape[2] // 8)

    def __call__(self, x):
        """float32 NCHW 0-1 (tensor or numpy) -> float32 NCHW, unclamped, of the same kind (a tensor on
        ``device``).  No autograd; call it under ``torch.inference_mode()`` for the least overhead."""
        t = torch.from_numpy(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x
        t = channels_last_input(t.to(self.device))
        amp = (
            torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.no_grad(), amp:
            y = self.model(t)
        y = y.float()
        return y if isinstance(x, torch.Tensor) else y.cpu().numpy()

    def __repr__(self) -> str:
        return (
            f"TorchRunner(device={self.device}, precision={self.precision}, channels_last={self.channels_last}, "
            f"scale={self.scale})"
        )
