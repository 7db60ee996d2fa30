"""Training batches: HQ folder -> degradation (DataLoader workers, or the GPU) -> float 0-1 on the device.

Sample ``n`` of the run is a pure function of ``(seed, n)`` (:class:`~facesr.data.datasets.InfiniteSampler`),
so a loader built at iteration ``it`` continues the stream exactly: that is how a resumed run and
a new patch size (``data.crop_schedule``) pick it up.  Workers are single-threaded, started by
forkserver, and exit with the trainer, even when it is killed with ``kill -9``.
"""

from __future__ import annotations

import functools
import gc
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..config import Config
from ..data.datasets import HQDegradeDataset, InfiniteSampler
from ..errors import ConfigError, FacesrError
from .distributed import DistInfo
from .step import Batch


def _exit_with_parent(parent_pid: int) -> None:
    """Make this (DataLoader worker) process exit when ``parent_pid`` dies, even by ``kill -9``.

    A forkserver worker's parent is the fork server, not the trainer, so PR_SET_PDEATHSIG alone
    does not cover the trainer: a daemon thread also polls for the trainer once a second.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no libc: the poll below still works
            pass

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent_pid, 0)
            except (ProcessLookupError, PermissionError):  # gone (or the pid reused by another user)
                os._exit(0)

    threading.Thread(target=watch, name="facesr-parent-watch", daemon=True).start()


def _worker_init(_worker_id: int, parent_pid: int | None = None) -> None:
    """Workers each run single-threaded OpenCV/torch: N workers must not oversubscribe the cores."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    if parent_pid is not None:
        _exit_with_parent(parent_pid)


def worker_message(exc: BaseException) -> str:
    """The original one-line message of an error re-raised from a DataLoader worker (else the message)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return re.sub(r"^[\w.]*(Error|Exception): ", "", lines[-1])
    return lines[0] if lines else type(exc).__name__


def apply_builtin_fallback(cfg: Config, main: bool) -> None:
    """With ``data.fallback_to_builtin``, replace missing data folders by the bundled sample faces.

    Paths the user gave explicitly (``cfg.user_set``) are never replaced: a typo stays an error.
    """
    d = cfg.data
    if not d.fallback_to_builtin:
        return
    user_set: set[str] = getattr(cfg, "user_set", set())
    missing = [
        k
        for k in ("train_hq_dir", "val_hq_dir")
        if isinstance(getattr(d, k), str) and not Path(getattr(d, k)).is_dir() and f"data.{k}" not in user_set
    ]
    if not missing:
        return
    from ..assets import builtin_faces_dir

    folder = str(builtin_faces_dir())
    for k in missing:
        if main:
            print(f"data.{k}: {getattr(d, k)} not found; using the built-in sample faces ({folder})", file=sys.stderr)
        setattr(d, k, folder)


def cores_available() -> int:
    """CPU cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_cap() -> int:
    """The most DataLoader workers per process: the cores there are, shared by the processes of this
    machine under torchrun (``LOCAL_WORLD_SIZE``)."""
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, cores_available() // local)


def capped_workers(cfg: Config, warn: bool = False) -> int:
    """``data.num_workers``, capped by :func:`worker_cap` (with a one-line warning on stderr when ``warn``)."""
    asked, cap = cfg.data.num_workers, worker_cap()
    if asked <= cap:
        return asked
    if warn:
        print(f"data.num_workers={asked} is more than the {cap} CPU core(s) here; using {cap}", file=sys.stderr)
    return cap


def crop_at(cfg: Config, it: int) -> int | None:
    """The LQ patch size iteration ``it`` trains on (``data.crop_schedule``, else ``data.crop_size``)."""
    if not cfg.data.crop_schedule:
        return cfg.data.crop_size
    return [c for start, c in cfg.data.crop_schedule if start <= it][-1]


class BatchSource:
    """Batches for iteration ``it`` on: uint8 from the loader, float 0-1 on ``device``.

    Built before anything slow, so a bad data folder fails fast.  ``data.degrade_engine: batched``
    degrades full GT batches on ``data.degrade_device``
    (:func:`~facesr.data.batched_degradations.train_degrader`).
    """

    def __init__(self, cfg: Config, device: torch.device, dist: DistInfo):
        if not cfg.data.train_hq_dir:
            raise ConfigError("data.train_hq_dir: not set (a folder of HQ face images)")
        self.cfg, self.device, self.dist = cfg, device, dist
        self.num_workers = capped_workers(cfg, warn=dist.is_main)
        d = cfg.data
        assert d.train_hq_dir  # checked above
        self.dataset = HQDegradeDataset(
            d.train_hq_dir,
            cfg.degradation,
            cfg.seed,
            d.hq_size,
            d.hq_resize,
            crop_at(cfg, 0),
            d.flip,
            cfg.model.upscale_factor,
            degrade=d.degrade_engine == "exact",
        )
        from ..data.batched_degradations import train_degrader

        self.gpu_degrader = train_degrader(cfg, device)  # None with data.degrade_engine: exact
        self._iter: Iterator | None = None

    @property
    def crop_size(self) -> int | None:
        return self.dataset.crop_size

    def start(self, it: int) -> None:
        """(Re)start the stream at iteration ``it``, at its patch size (a new DataLoader)."""
        self._iter = None  # the old loader's workers exit once it is dropped
        self._iter = iter(self._loader(it))

    def crop_changes_at(self, it: int) -> bool:
        """Restart at a new patch size if ``data.crop_schedule`` changes it at ``it``; True if it did."""
        if self.dataset.crop_size == crop_at(self.cfg, it):
            return False
        self.start(it)
        return True

    def _loader(self, from_iter: int) -> DataLoader:
        cfg, dist = self.cfg, self.dist
        self.dataset.crop_size = crop_at(cfg, from_iter)
        sampler = InfiniteSampler(
            len(self.dataset), cfg.seed, from_iter * cfg.train.batch_size * dist.world_size, dist.rank, dist.world_size
        )
        nw = self.num_workers
        return DataLoader(
            self.dataset,
            batch_size=cfg.train.batch_size,
            sampler=sampler,
            num_workers=nw,
            pin_memory=cfg.data.pin_memory and self.device.type == "cuda",
            drop_last=True,
            worker_init_fn=functools.partial(_worker_init, parent_pid=os.getpid()) if nw else None,
            persistent_workers=nw > 0,
            prefetch_factor=cfg.data.prefetch_factor if nw else None,
            # forkserver: a forked worker deadlocks in OpenCV once the parent has used its thread pool.
            multiprocessing_context="forkserver" if nw and sys.platform != "win32" else None,
        )

    def fetch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next uint8 ``(lq, gt)`` from the loader (the time the loop waits for data)."""
        if self._iter is None:
            raise RuntimeError("BatchSource.fetch before start")
        try:
            return next(self._iter)
        except FacesrError as exc:  # from a DataLoader worker: its message is "Caught X in ... Traceback"
            raise type(exc)(worker_message(exc)) from None

    def to_device(self, lq: torch.Tensor, gt: torch.Tensor, it: int) -> Batch:
        """uint8 ``(lq, gt)`` of iteration ``it`` -> a float 0-1 :class:`Batch` on the device."""
        cfg, dist = self.cfg, self.dist
        gt = gt.to(self.device, non_blocking=True).float().div_(255.0)
        if self.gpu_degrader is not None:
            lq, gt = self.gpu_degrader(
                gt, it * cfg.train.batch_size * dist.world_size + dist.rank, stride=dist.world_size
            )
        else:
            lq = lq.to(self.device, non_blocking=True).float().div_(255.0)
        if cfg.train.channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
            gt = gt.contiguous(memory_format=torch.channels_last)
        return Batch(lq, gt, it)

    def close(self, now: bool = False) -> None:
        """End the stream; ``now`` (a signal): terminate the workers first rather than wait for the
        batches they are building (DataLoader waits up to 5 s for each)."""
        it, self._iter = self._iter, None
        if now:
            for w in getattr(it, "_workers", ()):
                try:
                    if w.is_alive():
                        w.terminate()
                except (OSError, AssertionError, ValueError):  # already gone or closed
                    pass
        del it
        if now:
            gc.collect()  # the loader's queues release their semaphores now (the process may leave by os._exit)
