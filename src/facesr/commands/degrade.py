"""``facesr degrade``: make LQ training/validation images from HQ faces with the course pipeline.

The work is :mod:`facesr.data.degrade_folder`: every HQ image is brought to
``data.hq_size`` (512 by default; other sizes are area-resized with one warning, or
refused with ``data.hq_resize: error``), then degraded ``--copies`` times with
:func:`facesr.data.datasets.degrade_offline` -- the very function the trainer uses for
``data.val_hq_dir`` validation, so ``facesr degrade --seed S`` and ``data.val_seed: S``
give the same LQ.  Outputs are 8-bit RGB PNGs (0-255), ``<stem>.png`` for one copy or
``<stem>_<k>.png`` for several, plus ``params.jsonl`` with one JSON line per output
(its sampled degradation).  The output is identical for any ``--workers``.

``--engine batched`` applies the same records with the batched torch engine, ``--batch``
images at a time on ``--device`` (a GPU, typically): same files and ``params.jsonl``
(each line marked ``"engine": "batched"``), LQ within the engine's approximations.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

from . import add_max_pixels_option, add_set, max_pixels_arg, report_skipped


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("degrade", help="make LQ images from HQ faces with the course pipeline")
    p.add_argument("hq_dir")
    p.add_argument("out_dir")
    p.add_argument("--config", help="YAML whose 'degradation' section to use (default: the course pipeline)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--copies", type=int, default=1, help="LQ versions per HQ image, named <stem>_<k>.png")
    p.add_argument("--workers", type=int, default=0, help="worker processes (output does not depend on it)")
    p.add_argument(
        "--rng",
        choices=["facesr", "mmagic"],
        help="facesr: per-image private RNG; mmagic: MMagic's global "
        "RNG draw order, seeded with --seed before every image (bit-exact with MMagic)",
    )
    p.add_argument(
        "--engine",
        choices=["exact", "batched"],
        default="exact",
        help="exact (default): OpenCV, bit-exact MMagic LQ; batched: the same records applied in "
        "batches with torch on --device (same LQ statistics; see docs/performance.md)",
    )
    p.add_argument("--device", default=None, help="--engine batched: auto (default), cpu, cuda or cuda:N")
    p.add_argument("--batch", type=int, default=None, help="--engine batched: LQ images per batch (default 16)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_set(p)
    add_max_pixels_option(p)
    p.set_defaults(func=run)


def _degrade_all(tasks: list[tuple], args, collect) -> None:
    """Degrade every task in the engine and worker count asked for; ``collect`` gets each result in order."""
    from ..data.degrade_folder import degrade_file, worker_init

    if args.engine == "batched":
        from ..data.degrade_folder import degrade_files_batched

        for r in degrade_files_batched(tasks, args.device or "auto", args.batch or 16, args.workers):
            collect(r)
    elif args.workers == 0 or len(tasks) == 1:
        for t in tasks:
            collect(degrade_file(t))
    else:
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)  # never fork: a forked OpenCV can deadlock
        if method == "forkserver":
            # Import the heavy modules (torch, OpenCV) once in the server, not in every worker.
            ctx.set_forkserver_preload(["facesr.data.degrade_folder", "facesr.data.datasets"])
        with ctx.Pool(min(args.workers, len(tasks)), initializer=worker_init) as pool:
            for r in pool.imap(degrade_file, tasks, chunksize=1):
                collect(r)


def _mtimes(out_dir: Path, names: list[str]) -> dict[str, int]:
    """Modification times (ns) of the outputs already there, to tell them from the ones a run writes."""
    found = {}
    for n in names:
        try:
            found[n] = (out_dir / n).stat().st_mtime_ns
        except OSError:
            pass
    return found


def _remove_unrecorded(
    out_dir: Path, tasks: list[tuple], results: list[dict], copies: int, before: dict[str, int]
) -> None:
    """After a run stopped early: delete the LQ files this run wrote whose results never came back (a
    worker or a batch ahead of the collected ones), so that every LQ file left has its params.jsonl record."""
    from ..data.degrade_folder import output_name

    done = {r["hq"] for r in results}
    for t in tasks:
        hq = Path(t[0])
        if hq.name in done:
            continue
        for k in range(copies):
            name = output_name(hq.stem, k, copies)
            try:
                if (out_dir / name).stat().st_mtime_ns != before.get(name):
                    (out_dir / name).unlink()
            except OSError:
                pass


def run(args) -> int:
    """Run ``facesr degrade``; returns the exit status (0 ok, 1 some HQ files were skipped)."""
    args.max_pixels = max_pixels_arg(args)  # pixels from here on; checked before anything is written
    from ..config import load_config
    from ..data.degrade_folder import output_name
    from ..errors import FacesrError
    from ..io.files import atomic_write_bytes, first, list_images, same_dir

    cfg = load_config(args.config, args.overrides)
    deg = cfg.degradation
    if args.rng:
        deg.rng = args.rng
    if args.copies < 1:
        raise FacesrError(f"--copies must be at least 1, got {args.copies}")
    if args.workers < 0:
        raise FacesrError(f"--workers must be >= 0, got {args.workers}")
    if args.engine == "exact" and (args.device is not None or args.batch is not None):
        raise FacesrError("--device and --batch apply to --engine batched only")
    if args.batch is not None and args.batch < 1:
        raise FacesrError(f"--batch must be at least 1, got {args.batch}")
    hq_dir, out_dir = Path(args.hq_dir), Path(args.out_dir)
    files = list_images(hq_dir, "HQ folder")
    if same_dir(hq_dir, out_dir):
        raise FacesrError(f"{out_dir}: output folder is the HQ folder; choose another folder")
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise FacesrError(f"{out_dir}: output path exists and is not a folder")

    # Output names must be unique (a.png and a.jpg would both give a.png).
    by_stem: dict[str, list[str]] = {}
    for p in files:
        by_stem.setdefault(p.stem, []).append(p.name)
    dup = [" / ".join(v) for v in by_stem.values() if len(v) > 1]
    if dup:
        raise FacesrError(f"{hq_dir}: several HQ files share a name stem, outputs would clash: {first(dup)}")
    names = [output_name(p.stem, k, args.copies) for p in files for k in range(args.copies)] + ["params.jsonl"]
    if not args.overwrite and out_dir.is_dir():
        clashes = [n for n in names if os.path.lexists(out_dir / n)]
        if clashes:
            raise FacesrError(
                f"{out_dir}: {len(clashes)} output(s) already exist ({first(clashes)}); "
                f"pass --overwrite to replace them"
            )
    out_dir.mkdir(parents=True, exist_ok=True)

    cap = args.max_pixels
    tasks = [
        (str(p), deg, args.seed, args.copies, cfg.data.hq_size, cfg.data.hq_resize, str(out_dir), cap) for p in files
    ]
    from ..io.progress import progress

    pbar = progress(len(tasks), "facesr degrade", "img")
    results: list[dict] = []
    warned = False

    def collect(r: dict) -> None:
        nonlocal warned
        results.append(r)
        if r["resized"] is not None and r["error"] is None and not warned:
            w, h = r["resized"]
            pbar.write(
                f"facesr degrade: warning: {r['hq']} is {w}x{h}, area-resizing HQ images to "
                f"{cfg.data.hq_size}x{cfg.data.hq_size} (further such images are resized silently)"
            )
            warned = True
        pbar.update(1)

    before = _mtimes(out_dir, names)
    try:
        _degrade_all(tasks, args, collect)
    except BaseException:
        _remove_unrecorded(out_dir, tasks, results, args.copies, before)
        raise
    finally:
        pbar.close()
        # Written even when the run stops early, so every LQ file on disk has its record.
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
