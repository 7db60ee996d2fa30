"""``facesr train``: train a model from a YAML config (see :mod:`facesr.training.trainer`)."""
from __future__ import annotations

import sys
from pathlib import Path

from . import add_set


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", nargs="?", help="YAML preset (configs/*.yaml); omitted = built-in defaults")
    p.add_argument("--work-dir", help="output folder (default work_dirs/<config name>)")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CKPT",
                   help="resume from CKPT, or from the latest checkpoint in --work-dir when no path is given")
    p.add_argument("--init-from", metavar="WEIGHTS",
                   help="start from these weights only (facesr, MMagic or BasicSR file) with a fresh optimiser and "
                        "schedule; the lineage is recorded")
    p.add_argument("--init-ema", action="store_true", help="with --init-from: take the file's EMA weights")
    add_set(p)
    p.set_defaults(func=run)


def run(a) -> int:
    from ..config import load_config
    from ..errors import FacesrError
    from ..training.trainer import train

    if a.init_from and a.resume:
        raise FacesrError("--init-from starts a new run; it cannot be combined with --resume")
    cfg = load_config(a.config, a.overrides)
    work_dir = Path(a.work_dir or Path("work_dirs") / (Path(a.config).stem if a.config else cfg.name))
    resume = True if a.resume == "latest" else a.resume
    summary = train(cfg, work_dir, resume=resume, init_from=a.init_from, init_ema=a.init_ema)
    best = summary["best"]
    if summary.get("stopped_by_signal"):
        print(f"interrupted at iteration {summary['iter']}; resumable checkpoint {summary['last_checkpoint']} "
              f"(continue with: facesr train {a.config or ''} --work-dir {work_dir} --resume)", file=sys.stderr)
        return 130
    msg = f"done: {summary['iter']} iterations in {work_dir}"
    if best:
        msg += f"; best {best['metric']} {best['value']:.4f} at iter {best['iter']} -> {work_dir / 'best.safetensors'}"
    print(msg)
    return 0
