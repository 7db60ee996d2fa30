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
"""
from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import ImageError, one_line


def output_name(stem: str, k: int, copies: int) -> str:
    """File name of copy ``k`` of ``stem``: ``<stem>.png`` (one copy) or ``<stem>_<k>.png``."""
    return f"{stem}.png" if copies == 1 else f"{stem}_{k}.png"


def worker_init() -> None:
    """Pool initializer: one OpenCV/torch thread per worker, so N workers do not oversubscribe the cores."""
    import cv2
    cv2.setNumThreads(1)
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:  # pragma: no cover - torch is a dependency
        pass


def degrade_file(task: tuple) -> dict:
    """Degrade one HQ file ``copies`` times and write the PNGs.  Runs in a worker or in-process.

    ``task`` = ``(path, DegradationCfg, seed, copies, hq_size, hq_resize, out_dir)``.
    Returns ``{"hq", "records": [...], "resized": (w, h) | None, "error": str | None}``.
    """
    from ..io.images import read_rgb, write_png
    from .datasets import degrade_offline, prepare_hq

    path, deg, seed, copies, hq_size, hq_resize, out_dir = task
    path = Path(path)
    result = {"hq": path.name, "records": [], "resized": None, "error": None}
    try:
        img = read_rgb(path)
        if img.shape[:2] != (hq_size, hq_size):
            result["resized"] = (int(img.shape[1]), int(img.shape[0]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the main process warns once for the whole run
            hq = prepare_hq(img, hq_size, hq_resize, str(path))
    except (ImageError, ValueError, MemoryError) as exc:
        result["error"] = one_line(exc) if isinstance(exc, ImageError) else f"{path}: {one_line(exc)}"
        return result
    for k in range(copies):
        lq, params = degrade_offline(hq, deg, seed, path.stem, k, copies)
        name = output_name(path.stem, k, copies)
        write_png(Path(out_dir) / name, lq)
        result["records"].append({"file": name, "hq": path.name, "seed": seed, "copy": k,
                                  "params": params.to_json()})
    return result
