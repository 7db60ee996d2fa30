"""torch.distributed set-up for ``torchrun`` (DDP): NCCL on CUDA, gloo on CPU.

``torchrun --nproc_per_node=G -m facesr.cli train CFG`` (or ``facesr train``
under torchrun) starts G processes; each reads ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` from the environment.  Rank 0 logs, validates and checkpoints.
The effective batch is ``train.batch_size x WORLD_SIZE``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
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


def init_distributed(device_type: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # Under torchrun (which sets TORCHELASTIC_RUN_ID) a process group is made even for one process,
    # so a 1-process launch exercises the same NCCL/gloo path as a multi-process one.
    if world <= 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank, local_rank, world, initialized=True)


def barrier(info: DistInfo) -> None:
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


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
