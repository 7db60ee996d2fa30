"""torch.distributed set-up for ``torchrun``: NCCL on CUDA, gloo on CPU.

``torchrun --nproc_per_node=G -m facesr.cli train CFG`` (or ``predict``) starts G
processes; each reads ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` from the
environment.  Training (DDP) logs, validates and checkpoints on rank 0, with an
effective batch of ``train.batch_size x WORLD_SIZE``; ``facesr predict`` shards
its inputs by rank.  Without torchrun every helper here is a no-op on one
process (:class:`DistInfo` with ``enabled`` False).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import FacesrError


@dataclass
class DistInfo:
    """This process's place in the process group: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    initialized: bool = False  # a process group exists (torchrun), even with one process

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.initialized


def _rank_env(world: int) -> tuple[int, int]:
    """(RANK, LOCAL_RANK) of a torchrun environment, checked: one-line FacesrError for a partial or
    inconsistent one (WORLD_SIZE without RANK, RANK >= WORLD_SIZE, no rendezvous address)."""
    env = os.environ
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
    if missing:
        raise FacesrError(
            f"WORLD_SIZE={world} is set but {', '.join(missing)} is not: start several processes "
            f"with torchrun, or unset WORLD_SIZE for one"
        )
    try:
        rank, local_rank = int(env["RANK"]), int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise FacesrError(f"RANK={env.get('RANK')!r} / LOCAL_RANK={env.get('LOCAL_RANK')!r}: not integers") from None
    if not (0 <= rank < max(world, 1) and local_rank >= 0):
        raise FacesrError(f"RANK={rank} does not fit WORLD_SIZE={world} (ranks are 0..{max(world, 1) - 1})")
    return rank, local_rank


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group (NCCL for ``device_type`` "cuda", else gloo); one process: ``DistInfo()``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # Under torchrun (which sets TORCHELASTIC_RUN_ID) a process group is made even for one process,
    # so a 1-process launch exercises the same NCCL/gloo path as a multi-process one.
    if world <= 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return DistInfo()
    rank, local_rank = _rank_env(world)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank, local_rank, world, initialized=True)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op without a process group)."""
    if info.enabled:
        dist.barrier()


def all_reduce_max_flag(info: DistInfo, flag: bool) -> bool:
    """True on every rank if any rank passed True."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_reduce_max_int(info: DistInfo, value: int) -> int:
    """The largest ``value`` over all ranks (rank 0's plan wins when the others pass 0)."""
    if not info.enabled:
        return value
    t = torch.tensor([int(value)], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def gather_objects(info: DistInfo, obj) -> list:
    """``obj`` (any picklable value) of every rank, in rank order (``[obj]`` without a process group)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def cleanup(info: DistInfo) -> None:
    """Leave the process group, if one was made."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
