"""``facesr degrade``: make LQ training/validation images from HQ faces with the course pipeline.

Every HQ image (read as uint8 RGB 0-255; grayscale expanded, alpha dropped,
16-bit reduced to 8-bit by OpenCV) is brought to ``data.hq_size`` (512 by
default; other sizes are area-resized with one warning, or refused with
``data.hq_resize: error``), then degraded ``--copies`` times with
:func:`facesr.data.datasets.degrade_offline` -- the very function the trainer
uses for ``data.val_hq_dir`` validation, so ``facesr degrade --seed S`` and
``data.val_seed: S`` give the same LQ.  Outputs are 8-bit RGB PNGs (0-255),
``<stem>.png`` for one copy or ``<stem>_<k>.png`` for several, plus
``params.jsonl`` with one JSON line per output (its sampled degradation).

Each image's randomness depends only on ``(seed, stem, copy)`` (``--rng
facesr``) or on ``seed + copy`` (``--rng mmagic``), never on processing order,
so the output is identical for any ``--workers``.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import warnings
from pathlib import Path

from .cli import UserError, report_skipped
from .config import load_config
from .imageio import ImageError, atomic_write_bytes, list_images


def output_name(stem: str, k: int, copies: int) -> str:
    """File name of copy ``k`` of ``stem``: ``<stem>.png`` (one copy) or ``<stem>_<k>.png``."""
    return f"{stem}.png" if copies == 1 else f"{stem}_{k}.png"


def _worker_init() -> None:
    # One OpenCV/torch thread per worker: N workers must not oversubscribe the cores.
    import cv2
    cv2.setNumThreads(1)
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:  # pragma: no cover - torch is a dependency
        pass


def _degrade_one(task: tuple) -> dict:
    """Degrade one HQ file ``copies`` times and write the PNGs.  Runs in a worker or in-process.

    Returns ``{"hq", "records": [...], "resized": (w, h) | None, "error": str | None}``.
    """
    from .data.datasets import degrade_offline, prepare_hq
    from .imageio import read_rgb, write_png

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
    except ImageError as exc:
        result["error"] = str(exc).splitlines()[0]
        return result
    for k in range(copies):
        lq, params = degrade_offline(hq, deg, seed, path.stem, k, copies)
        name = output_name(path.stem, k, copies)
        write_png(Path(out_dir) / name, lq)
        result["records"].append({"file": name, "hq": path.name, "seed": seed, "copy": k,
                                  "params": params.to_json()})
    return result


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def run_degrade(args) -> int:
    """Run ``facesr degrade``; returns the exit status (0 ok, 1 some HQ files were skipped)."""
    cfg = load_config(args.config, args.overrides)
    deg = cfg.degradation
    if args.rng:
        deg.rng = args.rng
    if args.copies < 1:
        raise UserError(f"--copies must be at least 1, got {args.copies}")
    if args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    hq_dir, out_dir = Path(args.hq_dir), Path(args.out_dir)
    files = list_images(hq_dir, "HQ folder")
    if _same_dir(hq_dir, out_dir) or hq_dir.resolve() == out_dir.resolve():
        raise UserError(f"{out_dir}: output folder is the HQ folder; choose another folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: output path exists and is not a folder")

    # Output names must be unique (a.png and a.jpg would both give a.png).
    by_stem: dict[str, list[str]] = {}
    for p in files:
        by_stem.setdefault(p.stem, []).append(p.name)
    dup = [" / ".join(v) for v in by_stem.values() if len(v) > 1]
    if dup:
        raise UserError(f"{hq_dir}: several HQ files share a name stem, outputs would clash: {', '.join(dup[:5])}"
                        f"{' ...' if len(dup) > 5 else ''}")
    names = [output_name(p.stem, k, args.copies) for p in files for k in range(args.copies)] + ["params.jsonl"]
    if not args.overwrite and out_dir.is_dir():
        clashes = [n for n in names if (out_dir / n).exists()]
        if clashes:
            raise UserError(f"{out_dir}: {len(clashes)} output(s) already exist ({', '.join(clashes[:5])}"
                            f"{' ...' if len(clashes) > 5 else ''}); pass --overwrite to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)

    tasks = [(str(p), deg, args.seed, args.copies, cfg.data.hq_size, cfg.data.hq_resize, str(out_dir)) for p in files]
    from tqdm import tqdm
    pbar = tqdm(total=len(tasks), unit="img", desc="degrade", file=sys.stderr, dynamic_ncols=True, disable=None)
    results: list[dict] = []
    warned = False

    def collect(r: dict) -> None:
        nonlocal warned
        results.append(r)
        if r["resized"] is not None and r["error"] is None and not warned:
            w, h = r["resized"]
            tqdm.write(f"facesr degrade: warning: {r['hq']} is {w}x{h}, area-resizing HQ images to "
                       f"{cfg.data.hq_size}x{cfg.data.hq_size} (further such images are resized silently)",
                       file=sys.stderr)
            warned = True
        pbar.update(1)

    try:
        if args.workers == 0 or len(tasks) == 1:
            for t in tasks:
                collect(_degrade_one(t))
        else:
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)  # never fork: a forked OpenCV can deadlock
            if method == "forkserver":
                # Import the heavy modules (torch, OpenCV) once in the server, not in every worker.
                ctx.set_forkserver_preload(["facesr.degrade_cmd", "facesr.data.datasets"])
            with ctx.Pool(min(args.workers, len(tasks)), initializer=_worker_init) as pool:
                for r in pool.imap(_degrade_one, tasks, chunksize=1):
                    collect(r)
    finally:
        pbar.close()

    lines = [json.dumps(rec) for r in results for rec in r["records"]]
    atomic_write_bytes(out_dir / "params.jsonl", ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    skipped = [r for r in results if r["error"] is not None]
    n_out = len(lines)
    n_resized = sum(1 for r in results if r["resized"] is not None and r["error"] is None)
    msg = f"wrote {n_out} LQ image(s) from {len(results) - len(skipped)} HQ image(s) to {out_dir}"
    if n_resized:
        msg += f" ({n_resized} HQ image(s) area-resized to {cfg.data.hq_size}x{cfg.data.hq_size})"
    print(msg)
    return report_skipped("degrade", "HQ file(s) that could not be used", [r["error"] for r in skipped])
