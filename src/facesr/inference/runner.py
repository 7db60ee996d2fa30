"""The runner protocol: what :class:`~facesr.inference.Restorer` needs from a backend.

A runner maps a batch of LQ images to the model's output and nothing else:

* input ``x``: float32 NCHW (N, 3, h, w) RGB on the **0-1 scale** (``uint8 / 255``), a torch
  tensor (on the runner's ``device``, or anywhere: it is moved) or a numpy array;
* output: float32 NCHW (N, 3, s*h, s*w) on the same nominal 0-1 scale, **unclamped**, of the same
  kind as ``x`` (tensor in, tensor out on ``device``; numpy in, numpy out).

It owns how the model runs (device, precision, memory layout, threads), so the Restorer only
converts uint8 to float and back, batches, tiles, averages flip TTA and handles alpha.
Implementations: :class:`~facesr.inference.TorchRunner` (PyTorch: device, precision/autocast,
Winograd, channels-last), :class:`~facesr.inference.OnnxRuntimeRunner` and
:class:`~facesr.backends.openvino.OpenVinoRunner` (numpy models on the CPU, both built on
:class:`ArrayRunner`).  :func:`make_runner` picks one for a model.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import BadValueError
from .precision import resolve_precision

#: Tile overlap (LQ pixels) for model files without facesr metadata: covers MSRResNet up to 18 blocks.
FALLBACK_RECEPTIVE_FIELD = 40


@runtime_checkable
class Runner(Protocol):
    """One backend running one model (see the module docstring for units and ranges).

    Attributes:
        backend: ``"torch"``, ``"onnxruntime"`` or ``"openvino"``.
        scale: output pixels per input pixel along each side (4 for the shipped model).
        receptive_field: LQ pixels of context an output pixel depends on (the exact tile overlap),
            or None when the model does not say.
        device: the torch device that ``__call__`` wants tensors on (the CPU for numpy backends).
        precision: what runs: ``"fp32"``, ``"fp32-winograd"``, ``"bf16"`` or ``"fp16"``.
    """

    backend: str
    scale: int
    receptive_field: int | None
    device: torch.device
    precision: str

    def __call__(self, x: Any) -> Any: ...


class ArrayRunner:
    """A runner over a model that maps float32 NCHW numpy arrays to numpy on the CPU, in fp32
    (onnxruntime's :class:`~facesr.inference.OnnxModel`, OpenVINO's
    :class:`~facesr.backends.openvino.OpenVinoModel`).

    ``model`` needs ``scale``, ``receptive_field()`` and ``__call__``.  ``precision``: None, ``"auto"``
    or ``"fp32"`` (anything else is a :class:`~facesr.errors.BadValueError`: these backends run fp32,
    or the int8 of a quantized model file).
    """

    backend = "numpy"
    channels_last = False
    winograd_convs = 0

    def __init__(self, model, precision: str | None = None):
        self.model = model
        self.device = torch.device("cpu")
        self.precision, self.precision_reason = resolve_precision(precision, self.device, self.backend)
        self.scale = int(model.scale)
        self.receptive_field: int | None = int(model.receptive_field())

    def __call__(self, x):
        """float32 NCHW 0-1 (numpy, or a CPU tensor) -> float32 NCHW, unclamped, of the same kind."""
        is_tensor = isinstance(x, torch.Tensor)
        arr = x.detach().cpu().numpy() if is_tensor else x
        y = self.model(np.ascontiguousarray(arr, dtype=np.float32))
        return torch.from_numpy(y) if is_tensor else y


def make_runner(
    model, device: str | torch.device = "auto", precision: str | None = None, channels_last: bool | None = None
) -> Runner:
    """The runner for ``model``: a :class:`TorchRunner` for an ``nn.Module``, the numpy backend's runner
    for an :class:`~facesr.inference.OnnxModel` or :class:`~facesr.backends.openvino.OpenVinoModel`,
    or ``model`` itself when it already is a :class:`Runner`.

    ``device``, ``precision`` and ``channels_last`` go to the runner; options that do not apply to it
    (a device other than the CPU, a channels-last choice, for a numpy backend; any option for a runner
    that is already built) are a :class:`~facesr.errors.BadValueError`, never silently dropped.
    """
    from torch import nn

    from .onnx import OnnxRuntimeRunner
    from .torch_runner import TorchRunner

    if isinstance(model, nn.Module):
        return TorchRunner(
            model, device=device, precision=precision, channels_last=True if channels_last is None else channels_last
        )
    if isinstance(model, Runner):
        given = [
            k
            for k, v in (
                ("device", device != "auto"),
                ("precision", precision is not None),
                ("channels_last", channels_last is not None),
            )
            if v
        ]
        if given:
            raise BadValueError(
                f"{', '.join(given)} cannot be changed on a {type(model).__name__} that is already "
                "built; give them to the runner"
            )
        return model
    backend = getattr(model, "backend", None)
    runner_cls: type[ArrayRunner]
    if backend == "onnxruntime":
        runner_cls = OnnxRuntimeRunner
    elif backend == "openvino":
        from .openvino import OpenVinoRunner

        runner_cls = OpenVinoRunner
    else:
        raise TypeError(
            f"a Restorer runs an nn.Module, an OnnxModel, an OpenVinoModel or a Runner, not {type(model).__name__}"
        )
    if str(device).lower() not in ("auto", "cpu"):
        raise BadValueError(f"device {device} applies to the torch backend; {backend} runs on the CPU")
    if channels_last is not None:
        raise BadValueError(f"channels_last applies to the torch backend, not to {backend}")
    return runner_cls(model, precision=precision)
