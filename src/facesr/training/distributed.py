"""Re-export of :mod:`facesr.distributed` (the torchrun helpers moved there, next to ``devices``,
because inference commands use them too)."""

from ..distributed import (
    DistInfo,
    all_reduce_max_flag,
    all_reduce_max_int,
    barrier,
    cleanup,
    gather_objects,
    init_distributed,
)

__all__ = [
    "DistInfo",
    "all_reduce_max_flag",
    "all_reduce_max_int",
    "barrier",
    "cleanup",
    "gather_objects",
    "init_distributed",
]
