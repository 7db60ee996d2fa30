"""Parameter and FLOP counts, with the conventions of MMagic's ``get_flops``.

MMagic's ``tools/analysis_tools/get_flops.py`` runs mmengine's fvcore-style
counter: a convolution or linear layer costs its multiply-adds (bias ignored),
``upsample_bilinear2d`` costs 4 per output element, and activations, additions
and pixel_shuffle cost nothing.  :func:`count_flops` counts the same ops by
intercepting ATen calls during one forward pass, so it also covers functional
calls (the global bilinear skip) that module hooks would miss.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten


class FlopCount(int):
    """A multiply-add count (an ``int``) that also carries the ``output_shape`` (C, H, W) of the counted pass."""

    output_shape: tuple[int, ...]

    def __new__(cls, macs: int, output_shape: tuple[int, ...]):
        obj = super().__new__(cls, macs)
        obj.output_shape = tuple(int(d) for d in output_shape)
        return obj

    def __repr__(self) -> str:
        return f"FlopCount({int(self)}, output_shape={self.output_shape})"


class _FlopCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = getattr(func, "overloadpacket", None)
        if packet is _aten.convolution:
            weight = args[1]
            # out: (N, Cout, *spatial); weight: (Cout, Cin/groups, *k)
            self.total += out.shape[0] * math.prod(weight.shape) * math.prod(out.shape[2:])
        elif packet in (_aten.addmm, _aten.mm):
            a, b = (args[1], args[2]) if packet is _aten.addmm else (args[0], args[1])
            self.total += a.shape[0] * a.shape[1] * b.shape[1]
        elif packet is _aten.upsample_bilinear2d:
            self.total += 4 * out.numel()
        return out


@torch.no_grad()
def count_flops(model: nn.Module, shape: tuple[int, int, int] = (3, 128, 128)) -> FlopCount:
    """Multiply-add count of one forward pass on a ``(1, *shape)`` input, as get_flops counts.

    Returns a :class:`FlopCount`: the count as an ``int``, with the output's (C, H, W) in ``.output_shape``.
    """
    param = next(model.parameters())
    x = torch.zeros((1, *shape), dtype=param.dtype, device=param.device)
    counter = _FlopCounter()
    was_training = model.training
    # Deterministic mode makes PyTorch decompose upsample_bilinear2d into primitives the counter cannot see.
    det, det_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    model.eval()
    try:
        with counter:
            out = model(x)
    finally:
        model.train(was_training)
        torch.use_deterministic_algorithms(det, warn_only=det_warn)
    return FlopCount(counter.total, tuple(out.shape[1:]))


def count_params(model: nn.Module) -> int:
    """Exact number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def format_size(n: float) -> str:
    """``41555066880 -> '41.555G'`` (mmengine's 3-decimal style)."""
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3f}{unit}"
    return str(n)
