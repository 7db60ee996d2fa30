"""Parameter and FLOP counts, with the conventions of MMagic's ``get_flops``.

MMagic's ``tools/analysis_tools/get_flops.py`` runs mmengine's fvcore-style
counter: a convolution or linear layer costs its multiply-adds (bias ignored),
``upsample_bilinear2d`` costs 4 per output element, and activations, additions
and pixel_shuffle cost nothing.  :func:`count_flops` counts the same ops with
torch's public ``FlopCounterMode`` (ATen-level, so it also covers functional
calls such as the global bilinear skip that module hooks would miss).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


class FlopCount(int):
    """A multiply-add count (an ``int``) that also carries the ``output_shape`` (C, H, W) of the counted pass."""

    output_shape: tuple[int, ...]

    def __new__(cls, macs: int, output_shape: tuple[int, ...]):
        obj = super().__new__(cls, macs)
        obj.output_shape = tuple(int(d) for d in output_shape)
        return obj

    def __repr__(self) -> str:
        return f"FlopCount({int(self)}, output_shape={self.output_shape})"


def _bilinear_flops(*args, out_shape=None, **kwargs) -> int:
    """FLOPs (2 per multiply-add) of ``upsample_bilinear2d``: get_flops charges 4 multiply-adds per output element."""
    return 2 * 4 * math.prod(out_shape)


@torch.no_grad()
def count_flops(model: nn.Module, shape: tuple[int, int, int] = (3, 128, 128)) -> FlopCount:
    """Multiply-add count of one forward pass on a ``(1, *shape)`` input, as get_flops counts.

    Returns a :class:`FlopCount`: the count as an ``int``, with the output's (C, H, W) in ``.output_shape``.
    """
    param = next(model.parameters())
    x = torch.zeros((1, *shape), dtype=param.dtype, device=param.device)
    # torch's public counter: 2 FLOPs per multiply-add of convolutions and matmuls; the bilinear skip is added.
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.upsample_bilinear2d: _bilinear_flops})
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
    return FlopCount(counter.get_total_flops() // 2, tuple(out.shape[1:]))


def count_params(model: nn.Module) -> int:
    """Exact number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def format_size(n: float) -> str:
    """``41555066880 -> '41.555G'`` (mmengine's 3-decimal style)."""
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3f}{unit}"
    return str(n)
