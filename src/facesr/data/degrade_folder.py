"""Degrading a folder of HQ faces into LQ files (the work behind ``facesr degrade``).

Every HQ image (read as uint8 RGB 0-255; grayscale expanded, alpha dropped,
16-bit reduced to 8-bit by OpenCV) is brought to ``hq_size`` (512 by default;
other sizes are area-resized, or refused with ``hq_resize: error``), then degraded
``copies`` times with :func:`facesr.data.datasets.degrade_offline` -- the very
function the trainer uses for ``data.val_hq_dir`` validation, so the same seed
gives the same LQ.  Outputs are 8-bit RGB PNGs (0-255), ``<stem>.png`` for one
copy or ``<stem>_<k>.png`` for several.

Each image's randomness depends only on ``(seed, stem, copy)`` (``rng: facesr``)
or on ``seed + copy`` (``rng: mmagic``), never on processing order, so the output
is identical for any number of worker processes.

:func:`degrade_files_batched` (``--engine batched``) draws the very same records, and
so writes the same file names and ``params.jsonl`` lines (plus ``"engine": "batched"``),
but applies them with :class:`facesr.data.batched_degradations.BatchedDegrader`, a
batch at a time on any torch device, with each record's own noise field; the LQ
differ from the exact engine's by its approximations (docs/performance.md).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from ..errors import ImageError, one_line


def output_name(stem: str, k: int, copies: int) -> str:
    """File name of copy ``k`` of ``stem``: ``<stem>.png`` (one copy) or ``<stem>_<k>.png``."""
    return f"{stem}.png" if copies == 1 else f"{stem}_{k}.png"


def worker_init() -> None:
    """Pool initializer: one OpenCV/torch thread per worker, so N workers do not oversubscribe the cores.

    Signals: SIGINT (a terminal's Ctrl-C reaches the whole group) is left to the main process, which
    ends the pool; SIGTERM (how the pool ends its workers) removes the worker's temporary files first.
    """
    import signal

    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_terminated)

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover - torch is a dependency
        pass


def _worker_terminated(signum: int, frame) -> None:
    from ..io.files import remove_temp_files

    remove_temp_files()
    os._exit(0)


def load_hq(path, hq_size: int, hq_resize: str, max_pixels: int | None = None):
    """Read one HQ file as uint8 RGB ``hq_size``^2 -> ``(image or None, result dict)``; the result holds
    ``hq`` (file name), ``records`` (empty), ``resized`` ((w, h) when resized) and ``error`` (one line)."""
    from ..io.images import read_rgb
    from .datasets import prepare_hq

    path = Path(path)
    result = {"hq": path.name, "records": [], "resized": None, "error": None}
    try:
        img = read_rgb(path, max_pixels)
        if img.shape[:2] != (hq_size, hq_size):
            result["resized"] = (int(img.shape[1]), int(img.shape[0]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the main process warns once for the whole run
            return prepare_hq(img, hq_size, hq_resize, str(path)), result
    except (ImageError, ValueError, MemoryError) as exc:
        result["error"] = one_line(exc) if isinstance(exc, ImageError) else f"{path}: {one_line(exc)}"
        return None, result


def degrade_file(task: tuple) -> dict:
    """Degrade one HQ file ``copies`` times and write the PNGs.  Runs in a worker or in-process.

    ``task`` = ``(path, DegradationCfg, seed, copies, hq_size, hq_resize, out_dir[, max_pixels])``.
    Returns ``{"hq", "records": [...], "resized": (w, h) | None, "error": str | None}``.
    """
    from ..io.images import write_png
    from .datasets import degrade_offline

    path, deg, seed, copies, hq_size, hq_resize, out_dir, *cap = task
    path = Path(path)
    hq, result = load_hq(path, hq_size, hq_resize, *cap)
    if hq is None:
        return result
    for k in range(copies):
        lq, params = degrade_offline(hq, deg, seed, path.stem, k, copies)
        name = output_name(path.stem, k, copies)
        write_png(Path(out_dir) / name, lq)
        result["records"].append({"file": name, "hq": path.name, "seed": seed, "copy": k, "params": params.to_json()})
    return result


def degrade_files_batched(tasks: list[tuple], device: str, batch: int, threads: int = 0):
    """``facesr degrade --engine batched``: the same records as :func:`degrade_file`, applied ``batch``
    LQ images at a time on ``device``.  Yields one result dict per HQ file, as :func:`degrade_file`.

    ``tasks`` are :func:`degrade_file`'s tuples (one config, seed, copy count and folder for all);
    ``threads`` > 0 reads and writes images in that many threads (OpenCV releases the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import torch

    from ..devices import resolve_device
    from ..io.images import write_png
    from .batched_degradations import BatchedDegrader
    from .degradations import sample_params
    from .seeding import offline_rng

    if not tasks:
        return
    _, deg, seed, copies, hq_size, hq_resize, out_dir, *cap = tasks[0]
    degrader = BatchedDegrader(deg, seed, resolve_device(device, option="--device"), noise="record")
    pool = ThreadPoolExecutor(threads) if threads > 0 else None
    mapper = pool.map if pool else map
    try:
        step = max(1, batch // copies)
        for start in range(0, len(tasks), step):
            loaded = list(mapper(lambda t: load_hq(t[0], hq_size, hq_resize, *cap), tasks[start : start + step]))
            jobs = []  # (result, hq, stem, copy, record)
            for (hq, result), t in zip(loaded, tasks[start : start + step]):
                if hq is None:
                    continue
                stem = Path(t[0]).stem
                for k in range(copies):
                    rng, s = offline_rng(deg.rng, seed, stem, k, copies)
                    jobs.append((result, hq, stem, k, sample_params(deg, hq.shape[:2], rng, s)))
            if jobs:
                gt = torch.from_numpy(np.stack([j[1] for j in jobs])).permute(0, 3, 1, 2)
                lq_t = degrader.apply(gt.float(), [j[4] for j in jobs])
                lq = lq_t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                names = [output_name(stem, k, copies) for _, _, stem, k, _ in jobs]
                list(mapper(lambda a: write_png(Path(out_dir) / a[0], a[1]), zip(names, lq)))
                for (result, _, _, k, params), name in zip(jobs, names):
                    result["records"].append(
                        {
                            "file": name,
                            "hq": result["hq"],
                            "seed": seed,
                            "copy": k,
                            "params": params.to_json(),
                            "engine": "batched",
                        }
                    )
            yield from (result for _, result in loaded)
    finally:
        if pool:
            pool.shutdown()
