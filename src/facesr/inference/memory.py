"""Will an inference pass fit in memory?  An estimate made before the pass is allocated.

A forward pass over ``pixels`` LQ pixels (all the images or tiles of one batch, overlap included) needs
about ``bytes_per_lq_pixel * pixels`` bytes:

* the float 0-1 input (3 values per LQ pixel);
* the activations alive at once: four outputs of the widest layer (a residual trunk keeps its input,
  each block its own input and two conv outputs), found by running the model on the ``meta`` device
  (shapes only, nothing allocated); half of it under bf16/fp16 autocast;
* the float output and the bilinear skip at ``scale**2`` times the pixels (the output twice with flip
  TTA) and the uint8 result.

It is compared with the device's free memory (``torch.cuda.mem_get_info``) or the host's available
memory (:func:`facesr.devices.host_memory`).  ONNX and OpenVINO files run outside torch: a file whose facesr
metadata names its architecture is traced as that architecture, any other is costed as
:data:`FALLBACK_WIDEST` values per LQ pixel (MSRResNet's widest layer, 64 channels at x4).  docs/robustness.md compares the estimate with measured peaks.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from ..devices import gb, host_memory
from ..errors import BadValueError, FacesrError
from ..models import build_model

#: Values per LQ pixel of the widest layer of a model that cannot be traced (MSRResNet: 64 channels at x4).
FALLBACK_WIDEST = 64 * 16
#: Activations of the widest layer alive at once (module docstring).
LIVE_WIDEST = 4
#: The side (LQ pixels) of the meta-device probe; the estimate scales linearly from it.
PROBE = 16


def widest_values_per_pixel(model: nn.Module) -> int | None:
    """Values per LQ pixel of the largest output of any layer of ``model`` (traced on the meta device);
    None when the model cannot run there."""
    params = {k: torch.empty_like(v, device="meta") for k, v in model.named_parameters()}
    params.update({k: torch.empty_like(v, device="meta") for k, v in model.named_buffers()})
    widest = [0]

    def hook(_m: nn.Module, _inp: tuple, out: object) -> None:
        if isinstance(out, torch.Tensor):
            widest[0] = max(widest[0], out.numel())

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        x = torch.empty(1, 3, PROBE, PROBE, device="meta")
        with torch.no_grad():
            torch.func.functional_call(model, params, (x,))
    except Exception:  # a layer without a meta kernel (e.g. NNPACK's): no estimate
        return None
    finally:
        for h in handles:
            h.remove()
    return -(-widest[0] // (PROBE * PROBE))


def traceable(model) -> nn.Module | None:
    """``model`` itself if it is a torch module; for an ONNX/OpenVINO model whose facesr metadata names its
    architecture (``facesr.arch``, ``facesr.arch_config``), that architecture built on the meta device."""
    if isinstance(model, nn.Module):
        return model
    meta = getattr(model, "metadata", None) or {}
    try:
        with torch.device("meta"):
            return build_model(meta["facesr.arch"], **json.loads(meta["facesr.arch_config"]))
    except (KeyError, TypeError, ValueError, FacesrError):  # not described, or not as we know it
        return None


def bytes_per_lq_pixel(runner, tta: bool = False) -> int:
    """Bytes one LQ pixel of a forward pass needs on ``runner`` (a :class:`~facesr.inference.Runner`)."""
    model = traceable(runner.model)
    widest = widest_values_per_pixel(model) if model is not None else None
    widest = widest or FALLBACK_WIDEST
    act = 4 * LIVE_WIDEST * widest
    if runner.precision in ("bf16", "fp16"):
        act //= 2
    out = 3 * runner.scale**2
    return 4 * 3 + act + 4 * out * (3 if tta else 2) + out


def available(device: torch.device) -> tuple[int, str] | None:
    """``(bytes, what)`` free for a forward pass on ``device``; None when unknown."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free, f"free on {device}"
    host = host_memory()
    return (host[0], "available") if host is not None else None


def check_pass_fits(runner, need: int, shape: tuple[int, int], hint: str) -> None:
    """BadValueError (one line: the estimate, what is available, ``hint``) when a forward pass that needs
    ``need`` bytes, its largest piece ``shape`` (h, w) LQ pixels, cannot fit on ``runner.device``."""
    room = available(runner.device)
    if room is None:
        return
    if need > room[0]:
        h, w = shape
        raise BadValueError(
            f"a forward pass over {h}x{w} LQ pixels needs about {gb(need)} of memory, but {gb(room[0])} is "
            f"{room[1]}; {hint}"
        )
