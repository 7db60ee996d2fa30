"""Exponential moving average of model weights (MMagic ``ExponentialMovingAverageHook``).

After every optimiser step: ``ema <- ema + m (theta - ema)`` for floating-point
parameters (m = momentum, 0.001 in the reference, i.e. decay 0.999); buffers
are copied.  MMagic starts the EMA as a copy made *before* its runner re-draws
three layers' initial weights, so its EMA differs from the generator by a
0.999^n-decaying amount at the start; facesr starts from an exact copy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

#: ``torch._foreach_lerp_`` when this torch has it (private API: never assumed, see :meth:`EMA.update`).
_FOREACH_LERP = getattr(torch, "_foreach_lerp_", None)


class EMA:
    def __init__(self, model: nn.Module, momentum: float = 0.001):
        self.momentum = float(momentum)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_p: list[torch.Tensor] = list(self.module.parameters())
        src_p: list[torch.Tensor] = [p.detach() for p in model.parameters()]
        if ema_p and _FOREACH_LERP is not None:  # one fused kernel launch (a private torch API, hence the guard)
            _FOREACH_LERP(ema_p, src_p, self.momentum)
        else:  # the same lerp, one parameter at a time
            for e, s in zip(ema_p, src_p):
                e.lerp_(s, self.momentum)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, sd: dict) -> None:
        self.module.load_state_dict(sd)
