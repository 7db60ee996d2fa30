"""Deprecated: the batched degradation moved to :mod:`facesr.data.batched_degradations`.

``GpuDegrader`` is :class:`facesr.data.batched_degradations.BatchedDegrader` (same call:
``GpuDegrader(deg_cfg, seed, device, crop_size)(gt_0_1, first_sample_no, stride)``), and the
config option ``data.degrade_on: gpu`` is now ``data.degrade_engine: batched``.
"""

from __future__ import annotations

import warnings

from .batched_degradations import BatchedDegrader as GpuDegrader
from .batched_ops import jpeg_approx, quant_tables

warnings.warn(
    "facesr.data.gpu_degradations is deprecated; use facesr.data.batched_degradations", DeprecationWarning, stacklevel=2
)

__all__ = ["GpuDegrader", "jpeg_approx", "quant_tables"]
