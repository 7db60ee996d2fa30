"""LQResNet: an MSRResNet body that spends its compute at LQ resolution, with a cheap x4 head.

MSRResNet spends about 54% of its 41.6 GFLOPs (per 128x128 input) at 256x256 and
512x512, in its two up-convs and ``conv_hr``.  The efficient-SR designs (IMDN,
RFDN, RLFN, SPAN) instead keep nearly all work at LQ resolution and end with one
conv to ``3 * s^2`` channels and a pixel shuffle.  LQResNet does that with
MSRResNet's own residual blocks, so the saved FLOPs and parameters buy depth
(or width) in the body:

    x (N,3,h,w) float 0-1
      -> lrelu(conv_first) -> B x ResidualBlockNoBN -> conv_body (+ features: long skip)
      -> conv_up (C -> 3*s^2) -> pixel_shuffle(s) -> + bilinear_up(x)
      -> (N,3,s*h,s*w) float, nominally 0-1, not clamped (clamp before uint8)

Receptive field: every 3x3 conv widens it by one LQ pixel on each side:
``conv_first + 2*B + conv_body + conv_up`` = ``2*B + 3``, plus one for the bilinear skip,
so :meth:`receptive_field` is ``2*B + 4`` LQ pixels (the tile overlap that makes tiled
inference exact).

Presets (all under the challenge's 2,276,356-parameter cap, FLOPs for a 128x128 input):

========================  ==========  ============  =========
config                    params      FLOPs (MAC)   body convs
========================  ==========  ============  =========
C=64, B=29 ("deep")       2,208,240   36.1G         58 at LQ
C=96, B=12 ("wide")       2,120,208   34.7G         24 at LQ
========================  ==========  ============  =========
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .msrresnet import ResidualBlockNoBN, _kaiming_scaled_, check_resnet_cfg, require_valid


@dataclass
class LQResNetCfg:
    """Constructor arguments of :class:`LQResNet` (the ``model:`` section of a config)."""

    in_channels: int = 3
    out_channels: int = 3
    mid_channels: int = 64
    num_blocks: int = 29
    upscale_factor: int = 4

    def check(self) -> list[tuple[str, str]]:
        """Range problems as ``(field, message)`` pairs; empty when valid."""
        return check_resnet_cfg(self)


class LQResNet(nn.Module):
    """Residual network computed at LQ resolution with a one-conv pixel-shuffle head.

    Args: see :class:`LQResNetCfg`.  Input/output as MSRResNet: float (N, C, H, W),
    0-1 scale in, ``upscale_factor`` x larger out, not clamped.
    """

    Cfg = LQResNetCfg
    #: Documented configurations (``model:`` fields); all under the course cap of 2,276,356 parameters.
    PRESETS = {"deep": {"mid_channels": 64, "num_blocks": 29}, "wide": {"mid_channels": 96, "num_blocks": 12}}
    #: A small configuration for quick tests (tests/test_registry.py).
    TINY = {"mid_channels": 8, "num_blocks": 2}

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        mid_channels: int = 64,
        num_blocks: int = 29,
        upscale_factor: int = 4,
    ):
        super().__init__()
        require_valid(LQResNetCfg(in_channels, out_channels, mid_channels, num_blocks, upscale_factor))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.mid_channels, self.num_blocks, self.upscale_factor = mid_channels, num_blocks, upscale_factor
        self.conv_first = nn.Conv2d(in_channels, mid_channels, 3, 1, 1)
        self.trunk_net = nn.Sequential(*[ResidualBlockNoBN(mid_channels) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1)
        self.conv_up = nn.Conv2d(mid_channels, out_channels * upscale_factor**2, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        for m in (self.conv_first, self.conv_body, self.conv_up):
            _kaiming_scaled_(m, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.lrelu(self.conv_first(x))
        body = self.conv_body(self.trunk_net(feat)) + feat
        out = F.pixel_shuffle(self.conv_up(body), self.upscale_factor)
        return out + F.interpolate(x, scale_factor=self.upscale_factor, mode="bilinear", align_corners=False)

    def receptive_field(self) -> int:
        """LQ pixels of context on each side that an output pixel depends on (tile overlap for exact tiling)."""
        return 2 * self.num_blocks + 4

    def arch_config(self) -> dict:
        """Keyword arguments that rebuild this architecture (stored in checkpoints)."""
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "mid_channels": self.mid_channels,
            "num_blocks": self.num_blocks,
            "upscale_factor": self.upscale_factor,
        }
