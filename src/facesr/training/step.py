"""One optimisation step, and the seam for extra loss terms and second networks.

:class:`TrainStep` runs, in two halves: forward under autocast (``train.precision``) -> pixel loss
(+ the ``extra_losses``) -> backward through the GradScaler (fp16 only) (:meth:`TrainStep.backward`:
gradients only, so a signal may abandon it), then set the lr -> optional gradient clipping ->
optimiser step -> EMA update -> the ``hooks`` (:meth:`TrainStep.update`).

Extending training without editing the loop (Python API, :func:`facesr.training.trainer.train`):

* ``extra_losses``: callables ``(sr, hq, batch) -> scalar Tensor`` added to the pixel loss.
  ``sr`` is the model's output in float32 (N, 3, H, W), unclamped, nominally 0-1, with gradients;
  ``hq`` is the target, float 0-1; ``batch`` the whole :class:`Batch`.  E.g. a perceptual loss,
  or a generator's adversarial term ``lambda sr, hq, b: 0.01 * softplus(-disc(sr)).mean()``.
* ``hooks``: objects with ``step(sr, hq, batch) -> None``, called after the optimiser and EMA
  step with ``sr`` detached: where a second network (a discriminator) takes its own step with its
  own optimiser.  A hook with ``state_dict()`` / ``load_state_dict(sd)`` is saved in every
  checkpoint and restored on resume (tensors and plain values only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from ..inference.precision import DTYPES
from .ema import EMA


@dataclass(frozen=True)
class Batch:
    """One training batch on the device: ``lq`` (N, 3, h, w) and ``hq`` (N, 3, s*h, s*w), float 0-1.

    ``it``: completed iterations before this step (the step trains with ``lr_at(it)``).
    """

    lq: torch.Tensor
    hq: torch.Tensor
    it: int


#: ``(sr, hq, batch) -> scalar loss`` added to the pixel loss (see the module docstring)
ExtraLoss = Callable[[torch.Tensor, torch.Tensor, Batch], torch.Tensor]


@dataclass(frozen=True)
class Pending:
    """A step between :meth:`TrainStep.backward` and :meth:`TrainStep.update`: the detached float32
    output ``sr``, the detached ``loss`` and the ``batch``."""

    sr: torch.Tensor
    loss: torch.Tensor
    batch: Batch


class StepHook(Protocol):
    """Called once per iteration after the optimiser step (see the module docstring)."""

    def step(self, sr: torch.Tensor, hq: torch.Tensor, batch: Batch) -> None: ...


class TrainStep:
    """One iteration's forward, loss, backward and updates of ``model`` (and of its ``ema``).

    ``forward``: the module that runs the model (``model`` itself, or its DDP/compiled wrapper);
    ``precision``: fp32, bf16 or fp16 (autocast of the forward; fp16 also scales the loss).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable,
        *,
        device: torch.device,
        precision: str = "fp32",
        forward: nn.Module | None = None,
        grad_clip: float | None = None,
        ema: EMA | None = None,
        extra_losses: Sequence[ExtraLoss] = (),
        hooks: Sequence[StepHook] = (),
    ):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.forward = forward if forward is not None else model
        self.device, self.dtype = device, DTYPES[precision]
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
        self.grad_clip, self.ema = grad_clip, ema
        self.extra_losses, self.hooks = list(extra_losses), list(hooks)

    def loss(self, sr: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The pixel loss of float32 ``sr`` against ``batch.hq``, plus every extra loss term."""
        loss = self.loss_fn(sr, batch.hq)
        for extra in self.extra_losses:
            loss = loss + extra(sr, batch.hq, batch)
        return loss

    def __call__(self, batch: Batch, lr: float) -> torch.Tensor:
        """Train on ``batch`` with learning rate ``lr``; returns the (detached) loss, not synced to the host."""
        return self.update(self.backward(batch), lr)

    def backward(self, batch: Batch) -> Pending:
        """Forward, loss and backward: gradients only, so the model, optimiser and EMA are untouched and
        the step may be abandoned (a signal) with nothing to undo."""
        with torch.autocast(device_type=self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            out = self.forward(batch.lq)
        sr = out.float()
        loss = self.loss(sr, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        return Pending(sr.detach(), loss.detach(), batch)

    def update(self, pending: Pending, lr: float) -> torch.Tensor:
        """The optimiser step with learning rate ``lr`` (after optional clipping), the EMA update and the
        hooks; returns the (detached) loss, not synced to the host."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        for hook in self.hooks:
            hook.step(pending.sr, pending.batch.hq, pending.batch)
        return pending.loss

    def hook_states(self) -> list | None:
        """The hooks' ``state_dict()`` (None for a hook without one); None when there are no hooks."""
        if not self.hooks:
            return None
        return [h.state_dict() if hasattr(h, "state_dict") else None for h in self.hooks]

    def load_hook_states(self, states: list | None) -> None:
        """Restore what :meth:`hook_states` saved (hooks without ``load_state_dict`` are skipped)."""
        for hook, sd in zip(self.hooks, states or []):
            if sd is not None and hasattr(hook, "load_state_dict"):
                hook.load_state_dict(sd)


class LossWindow:
    """Loss and timings of the iterations since the last log line, summed on the device (no host
    sync per step); ``nonfinite`` stays set once any loss of the run was NaN or infinite."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.n, self.wait_s, self.step_s = 0, 0.0, 0.0

    def add(self, loss: torch.Tensor, wait_s: float, step_s: float) -> None:
        """One iteration: its detached ``loss``, seconds waiting for the batch and seconds in all."""
        self.loss_sum += loss
        self.nonfinite |= ~torch.isfinite(loss)
        self.n += 1
        self.wait_s += wait_s
        self.step_s += step_s

    def any_nonfinite(self) -> bool:
        """Host sync: True when any loss so far was not finite."""
        return bool(self.nonfinite.item())

    def flush(self) -> dict:
        """``loss`` (window mean), ``data_wait`` (fraction 0-1), ``it_per_s``; then starts a new window."""
        out = {
            "loss": self.loss_sum.item() / self.n,
            "data_wait": self.wait_s / self.step_s if self.step_s > 0 else 0.0,
            "it_per_s": self.n / self.step_s if self.step_s > 0 else 0.0,
        }
        self.loss_sum.zero_()
        self.n, self.wait_s, self.step_s = 0, 0.0, 0.0
        return out
