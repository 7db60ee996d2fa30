"""MSRResNet, exactly as MMagic 1.x builds it, plus the BasicSR variant.

Input and output are float tensors of shape (N, 3, H, W) on the 0-1 scale (the
reference divides uint8 pixels by 255).  The output is *not* clamped, as in the
reference; clamp before converting to uint8.

Layer names follow MMagic (``conv_first``, ``trunk_net.N.conv1``,
``upsample1.upsample_conv``, ``conv_hr``, ``conv_last``) so MMagic state dicts
load after stripping their ``generator.`` prefix.  BasicSR names are mapped in
:mod:`facesr.models.weights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def _kaiming_scaled_(module: nn.Module, scale: float) -> None:
    """Kaiming-normal init (fan_in, ReLU gain) times ``scale``, zero bias.

    This is mmengine's ``kaiming_init(a=0, mode='fan_in', nonlinearity='relu',
    distribution='normal')`` followed by ``weight *= scale``.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
            m.weight.data.mul_(scale)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResidualBlockNoBN(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, added to the input (no batch norm)."""

    def __init__(self, channels: int, res_scale: float = 1.0):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        if res_scale == 1.0:
            _kaiming_scaled_(self, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.conv1(x)))
        if self.res_scale != 1.0:  # x * 1.0 == x exactly, so skipping it changes no bit (and saves a pass)
            out = out * self.res_scale
        return out.add_(x)  # in place on the conv output (not needed by backward); out + x == x + out exactly


class PixelShufflePack(nn.Module):
    """conv3x3 to ``C * s^2`` channels, then pixel_shuffle(s).  Init scale 1.0."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, init_scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.upsample_conv = nn.Conv2d(in_channels, out_channels * scale * scale, 3, 1, 1)
        _kaiming_scaled_(self, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.upsample_conv(x), self.scale)


def check_resnet_cfg(cfg) -> list[tuple[str, str]]:
    """Range checks shared by residual-network Cfgs (channels, num_blocks, upscale_factor)."""
    bad = []
    if cfg.upscale_factor not in (2, 3, 4):
        bad.append(("upscale_factor", "must be 2, 3 or 4"))
    for k in ("in_channels", "out_channels", "mid_channels"):
        if not 0 < getattr(cfg, k) <= 1024:
            bad.append((k, "must be in 1..1024"))
    if not 0 <= cfg.num_blocks <= 1000:
        bad.append(("num_blocks", "must be in 0..1000"))
    return bad


def require_valid(cfg) -> None:
    """ValueError naming the first problem ``cfg.check()`` reports (a model built directly, not from a config)."""
    for key, msg in cfg.check():
        raise ValueError(f"{key} {msg}, got {getattr(cfg, key)!r}")


@dataclass
class MSRResNetCfg:
    """Constructor arguments of :class:`MSRResNet` (the ``model:`` section of a config)."""

    in_channels: int = 3
    out_channels: int = 3
    mid_channels: int = 64
    num_blocks: int = 16
    upscale_factor: int = 4
    variant: Literal["mmagic", "basicsr"] = "mmagic"

    def check(self) -> list[tuple[str, str]]:
        """Range problems as ``(field, message)`` pairs; empty when valid."""
        bad = check_resnet_cfg(self)
        if self.variant not in ("mmagic", "basicsr"):
            bad.append(("variant", "must be 'mmagic' or 'basicsr'"))
        return bad


class MSRResNet(nn.Module):
    """Modified SRResNet (MMagic ``MSRResNet``).

    Args:
        in_channels / out_channels: image channels (3 for RGB).
        mid_channels: feature width C (64 in the reference).
        num_blocks: residual blocks B (16 baseline, 24 best run).
        upscale_factor: 2, 3 or 4.
        variant: ``"mmagic"`` (no activation after pixel shuffle, up-convs
            init x1.0) or ``"basicsr"`` (LeakyReLU(0.1) after each pixel
            shuffle, up-convs init x0.1), which BasicSR/KAIR checkpoints need.

    Forward: ``conv_last(lrelu(conv_hr(up(trunk(lrelu(conv_first(x))))))) +
    bilinear_up(x)``, float in, float out, both nominally 0-1.
    """

    Cfg = MSRResNetCfg
    #: Documented configurations (``model:`` fields); all under the course cap of 2,276,356 parameters.
    PRESETS = {"baseline": {"num_blocks": 16}, "best": {"num_blocks": 24}, "largest": {"num_blocks": 26}}
    #: A small configuration for quick tests (tests/test_registry.py).
    TINY = {"mid_channels": 8, "num_blocks": 2}

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        mid_channels: int = 64,
        num_blocks: int = 16,
        upscale_factor: int = 4,
        variant: str = "mmagic",
    ):
        super().__init__()
        require_valid(MSRResNetCfg(in_channels, out_channels, mid_channels, num_blocks, upscale_factor, variant))  # type: ignore[arg-type]
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mid_channels = mid_channels
        self.num_blocks = num_blocks
        self.upscale_factor = upscale_factor
        self.variant = variant
        up_init = 1.0 if variant == "mmagic" else 0.1

        self.conv_first = nn.Conv2d(in_channels, mid_channels, 3, 1, 1, bias=True)
        self.trunk_net = nn.Sequential(*[ResidualBlockNoBN(mid_channels) for _ in range(num_blocks)])
        if upscale_factor in (2, 3):
            self.upsample1 = PixelShufflePack(mid_channels, mid_channels, upscale_factor, up_init)
            self.upsample2 = None
        else:
            self.upsample1 = PixelShufflePack(mid_channels, mid_channels, 2, up_init)
            self.upsample2 = PixelShufflePack(mid_channels, mid_channels, 2, up_init)
        self.conv_hr = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1, bias=True)
        self.conv_last = nn.Conv2d(mid_channels, out_channels, 3, 1, 1, bias=True)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        for m in (self.conv_first, self.conv_hr, self.conv_last):
            _kaiming_scaled_(m, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.lrelu(self.conv_first(x))
        out = self.trunk_net(feat)
        out = self.upsample1(out)
        if self.variant == "basicsr":
            out = self.lrelu(out)
        if self.upsample2 is not None:
            out = self.upsample2(out)
            if self.variant == "basicsr":
                out = self.lrelu(out)
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        # Global skip: bilinear upsampling of the network input (align_corners=False).
        return out + F.interpolate(x, scale_factor=self.upscale_factor, mode="bilinear", align_corners=False)

    def receptive_field(self) -> int:
        """LQ pixels of context on each side that an output pixel depends on (tile overlap for exact tiling).

        ``conv_first`` and the ``2 * num_blocks`` trunk convs widen it by one LQ pixel each; the HR
        convs (up-convs, ``conv_hr``, ``conv_last``) by less than two LQ pixels together; plus one for
        the bilinear skip: ``2 * num_blocks + 4``.
        """
        return 2 * self.num_blocks + 4

    def arch_config(self) -> dict:
        """Keyword arguments that rebuild this architecture (stored in checkpoints)."""
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "mid_channels": self.mid_channels,
            "num_blocks": self.num_blocks,
            "upscale_factor": self.upscale_factor,
            "variant": self.variant,
        }
