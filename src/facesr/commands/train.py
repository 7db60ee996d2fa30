"""``facesr train``: train a model from a YAML config (see :mod:`facesr.training.trainer`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import add_set


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", nargs="?", help="YAML preset (configs/*.yaml); omitted = built-in defaults")
    p.add_argument("--work-dir", help="output folder (default work_dirs/<config name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="CKPT",
        help="continue the run in --work-dir from its latest checkpoint (or from CKPT) with the "
        "configuration stored there; --set may change only " + ", ".join(_mutable()),
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in a --work-dir that holds one: the old run is moved to "
        "<work-dir>.old-<timestamp> (nothing is deleted; never a folder that is, holds or lies "
        "inside a data folder of the config or another input)",
    )
    p.add_argument(
        "--init-from",
        metavar="WEIGHTS",
        help="start from these weights only (facesr, MMagic or BasicSR file) with a fresh optimiser and "
        "schedule; the lineage is recorded",
    )
    p.add_argument("--init-ema", action="store_true", help="with --init-from: take the file's EMA weights")
    add_set(p)
    p.set_defaults(func=run)


def _mutable() -> tuple:
    from ..training.workdir import MUTABLE_KEYS

    return MUTABLE_KEYS


def _check_resume_config_file(a, work_dir: Path, resume) -> None:
    """With ``--resume``, a config file given as well must agree with the run's own (apart from the keys
    a resume may change); the run itself takes its configuration from the work dir."""
    from ..config import load_config
    from ..training.resume import check_config_agrees, stored_config

    stored, source = stored_config(work_dir, resume)
    check_config_agrees(stored, source, load_config(a.config), a.config)


def _continue_command(work_dir: Path) -> str:
    import shlex

    return f"facesr train --work-dir {shlex.quote(str(work_dir))} --resume"


def _leave_now(status: int) -> None:
    """End the process at once after a signal: every file is written and closed, while the interpreter's
    normal teardown (thousands of torch modules) takes 2-3 s, past the 2 s a signal is promised.

    multiprocessing's exit finalizers still run (DataLoader queues release their semaphores; else its
    resource tracker warns of leaked ones).
    """
    from ..training.signals import release_process_resources

    release_process_resources()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run(a) -> int:
    from ..config import load_config
    from ..errors import FacesrError
    from ..training.signals import EXIT_STATUS
    from ..training.trainer import train
    from ..training.workdir import WorkDirInUseError

    if a.init_from and a.resume:
        raise FacesrError("--init-from starts a new run; it cannot be combined with --resume")
    if a.overwrite and a.resume:
        raise FacesrError("--overwrite starts a new run; it cannot be combined with --resume")
    if a.resume:
        if not a.work_dir and not a.config and a.resume == "latest":
            raise FacesrError("--resume needs --work-dir (the folder of the run to continue)")
        work_dir = Path(
            a.work_dir
            or (Path(a.resume).parent.parent if a.resume != "latest" else Path("work_dirs") / Path(a.config).stem)
        )
        resume = True if a.resume == "latest" else a.resume
        if a.config:
            _check_resume_config_file(a, work_dir, resume)
        cfg, overrides = None, a.overrides  # the run's own config.yaml, with --set merged by the trainer
    else:
        cfg, overrides, resume = load_config(a.config, a.overrides), (), None
        work_dir = Path(a.work_dir or Path("work_dirs") / (Path(a.config).stem if a.config else cfg.name))
    try:
        summary = train(
            cfg,
            work_dir,
            resume=resume,
            init_from=a.init_from,
            init_ema=a.init_ema,
            overwrite=a.overwrite,
            overrides=overrides,
            protect=[a.config] if a.config else [],
        )
    except WorkDirInUseError:
        raise FacesrError(
            f"work dir {work_dir} already holds a run; continue it with --resume, or start over "
            f"with --overwrite (the old run is moved to {work_dir.name}.old-<timestamp>)"
        ) from None
    best = summary["best"]
    if summary.get("stopped_by_signal"):
        if summary["last_checkpoint"]:
            print(
                f"interrupted at iteration {summary['iter']}; resumable checkpoint {summary['last_checkpoint']} "
                f"(continue with: {_continue_command(work_dir)})",
                file=sys.stderr,
            )
        elif summary["iter"] == 0:
            print("interrupted before the first iteration finished; nothing kept", file=sys.stderr)
        else:
            print(
                f"interrupted at iteration {summary['iter']}, before the first checkpoint; start over with --overwrite",
                file=sys.stderr,
            )
        _leave_now(EXIT_STATUS)
    msg = f"done: {summary['iter']} iterations in {work_dir}"
    if best:
        msg += f"; best {best['metric']} {best['value']:.4f} at iter {best['iter']} -> {work_dir / 'best.safetensors'}"
    print(msg)
    return 0
