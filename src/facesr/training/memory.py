"""Will a run fit in memory?  An estimate made before anything is allocated, and a one-line refusal.

The estimate (bytes) adds up:

* ``state``: weights, gradients, the optimiser's two moments and the EMA copy (float32, 4 bytes each);
* ``activations``: what the forward pass keeps for the backward pass, found by running the model and
  the loss on the ``meta`` device (shapes only, nothing allocated), plus twice the largest of those
  tensors for the backward pass's working space; half of it under bf16/fp16 autocast;
* ``batches``: the float 0-1 batch on the device, and the uint8 LQ/GT batches in flight (the
  loader's prefetch queue, and the one each worker -- or the main process -- is building);
* ``workers``: each DataLoader worker process (:data:`WORKER_BYTES`) and its decoded-image cache;
* ``process``: the training process itself (:data:`PROCESS_BYTES`: torch, OpenCV, compiled kernels).

On CUDA, state, activations and the device batch are compared with the GPU's free memory
(``torch.cuda.mem_get_info``), the rest with the host's; on other devices everything with the host's
available memory (``MemAvailable``, within a cgroup limit).  It is an estimate: docs/training-limits.md
compares it with measured peaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import Config
from ..devices import gb, host_memory
from ..errors import TrainingError
from ..models import build_model
from .losses import get_loss

#: Memory of one DataLoader worker process (torch and OpenCV loaded, own buffers): about 0.17 GB measured.
WORKER_BYTES = 200 * 2**20
#: Memory of the training process before its model and batches: about 0.3 GB after importing torch, 0.6 GB
#: once training has run a step (measured, docs/training-limits.md).
PROCESS_BYTES = 600 * 2**20
#: The HQ images each process keeps decoded (HQDegradeDataset's cache budget).
CACHE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs; ``device_side``: the parts that live on the training device (CUDA)."""

    state: int
    activations: int
    device_batch: int
    host_batches: int
    workers: int
    process: int = PROCESS_BYTES

    @property
    def device_side(self) -> int:
        return self.state + self.activations + self.device_batch

    @property
    def host_side(self) -> int:
        return self.host_batches + self.workers + self.process

    @property
    def total(self) -> int:
        return self.device_side + self.host_side


def _shapes(cfg: Config) -> tuple[int, int, int]:
    """``(batch, LQ side, HQ side)`` of one training batch (the largest patch of a crop schedule)."""
    d, s = cfg.data, cfg.model.upscale_factor
    crops = [c for _, c in d.crop_schedule] if d.crop_schedule else [d.crop_size]
    lq = max(c or d.hq_size // s for c in crops)
    return cfg.train.batch_size, lq, lq * s


def meta_model(cfg: Config) -> torch.nn.Module:
    """The config's model on the ``meta`` device: shapes only, no memory (the random streams untouched)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return build_model(cfg.model.arch, **cfg.model.arch_kwargs())


def activation_bytes(cfg: Config, model: torch.nn.Module) -> int:
    """What one training step's forward keeps for backward, plus the backward's working space (bytes);
    ``model``: the :func:`meta_model`."""
    n, lq, hq = _shapes(cfg)
    x, target = torch.empty(n, 3, lq, lq, device="meta"), torch.empty(n, 3, hq, hq, device="meta")
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in params:
            saved[storage._cdata] = max(saved.get(storage._cdata, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        get_loss(cfg.train.loss)(model(x).float(), target)
    total = sum(saved.values()) + 2 * max(saved.values(), default=0)
    return total // 2 if cfg.train.precision in ("bf16", "fp16") else total


def estimate(cfg: Config, num_workers: int, n_images: int) -> MemoryEstimate:
    """The memory a run of ``cfg`` needs with ``num_workers`` loader workers over ``n_images`` HQ images."""
    model = meta_model(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    copies = 4 + (1 if cfg.train.ema_momentum else 0)  # weights, gradients, Adam's two moments, EMA
    n, lq, hq = _shapes(cfg)
    gpu = cfg.data.degrade_engine == "batched"
    full = cfg.data.hq_size
    uint8_batch = n * 3 * (full * full if gpu else lq * lq + hq * hq)
    in_flight = num_workers * (cfg.data.prefetch_factor + 1) + 1 if num_workers else 2
    device_batch = 4 * n * 3 * (lq * lq + hq * hq) + (4 * 4 * n * 3 * full * full if gpu else 0)
    cache = min(CACHE_BYTES, n_images * 3 * full * full)
    return MemoryEstimate(
        state=4 * copies * n_params,
        activations=activation_bytes(cfg, model),
        device_batch=device_batch,
        host_batches=uint8_batch * in_flight,
        workers=num_workers * WORKER_BYTES + max(1, num_workers) * cache,
    )


def _describe(cfg: Config, e: MemoryEstimate, part: int) -> str:
    n, lq, _ = _shapes(cfg)
    return (
        f"about {gb(part)} (batch {n} of {lq}x{lq} LQ: activations {gb(e.activations)}, model and optimiser "
        f"{gb(e.state)}, batches {gb(e.device_batch + e.host_batches)}, data workers {gb(e.workers)}, the "
        f"process {gb(e.process)})"
    )


HINT = "lower train.batch_size, data.crop_size, data.num_workers or the model's size"


def check_fits(cfg: Config, device: torch.device, num_workers: int, n_images: int, local_procs: int = 1) -> None:
    """TrainingError (one line: the estimate, what is available, what to lower) when the run cannot fit.

    ``local_procs``: training processes on this machine (torchrun), which share its memory.
    """
    e = estimate(cfg, num_workers, n_images)
    host = host_memory()
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        if e.device_side > free:
            raise TrainingError(
                f"training needs {_describe(cfg, e, e.device_side)} on {device}, which has "
                f"{gb(free)} free ({gb(total)} in all); {HINT}"
            )
        need = e.host_side * local_procs
    else:
        need = e.total * local_procs
    if host is not None and need > host[0]:
        raise TrainingError(
            f"training needs {_describe(cfg, e, need)} of memory, but {gb(host[0])} is available "
            f"({gb(host[1])} in all); {HINT}"
        )
