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
                   help="continue the run in --work-dir from its latest checkpoint (or from CKPT) with the "
                        "configuration stored there; --set may change only " + ", ".join(_mutable()))
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a --work-dir that holds one: the old run is moved to "
                        "<work-dir>.old-<timestamp> (nothing is deleted)")
    p.add_argument("--init-from", metavar="WEIGHTS",
                   help="start from these weights only (facesr, MMagic or BasicSR file) with a fresh optimiser and "
                        "schedule; the lineage is recorded")
    p.add_argument("--init-ema", action="store_true", help="with --init-from: take the file's EMA weights")
    add_set(p)
    p.set_defaults(func=run)


def _mutable() -> tuple:
    from ..training.workdir import MUTABLE_KEYS
    return MUTABLE_KEYS


def _resume_config(a, work_dir: Path):
    """The configuration of a resumed run: the work dir's config.yaml (or the checkpoint's) plus ``--set``.

    A config file given as well must agree with the stored one (apart from the keys a run may change).
    """
    from ..config import config_from_dict, apply_overrides, load_config, read_yaml_file
    from ..errors import FacesrError
    from ..training.state import load_checkpoint
    from ..training.workdir import MUTABLE_KEYS, config_differences, format_differences, run_derived_keys

    stored_file = work_dir / "config.yaml"
    if stored_file.is_file():
        stored, source = read_yaml_file(stored_file), str(stored_file)
    elif a.resume != "latest":
        stored, source = load_checkpoint(a.resume).get("config"), a.resume
    else:
        raise FacesrError(f"--resume: no run to resume in {work_dir} (no config.yaml, no checkpoint found); "
                          "is --work-dir the run's folder?")
    if not isinstance(stored, dict):
        raise FacesrError(f"--resume: {source} holds no run configuration")
    if a.config:
        given = load_config(a.config).to_dict()
        base = config_from_dict(stored).to_dict()
        skip = set(MUTABLE_KEYS) | run_derived_keys(stored)
        diffs = {k: v for k, v in config_differences(base, given).items() if k not in skip}
        if diffs:
            raise FacesrError(f"{a.config} differs from the resumed run's own config ({Path(source).name}): "
                              f"{format_differences(diffs, 3)}; omit the config file to resume")
    import copy
    from ..config import validate, from_dict, Config
    cfg = validate(from_dict(Config, apply_overrides(copy.deepcopy(stored), a.overrides)))
    cfg.user_set = {o.split("=", 1)[0].strip() for o in a.overrides}
    return cfg


def _continue_command(work_dir: Path) -> str:
    import shlex
    return f"facesr train --work-dir {shlex.quote(str(work_dir))} --resume"


def run(a) -> int:
    from ..config import load_config
    from ..errors import FacesrError
    from ..training.trainer import train
    from ..training.workdir import WorkDirInUseError

    if a.init_from and a.resume:
        raise FacesrError("--init-from starts a new run; it cannot be combined with --resume")
    if a.overwrite and a.resume:
        raise FacesrError("--overwrite starts a new run; it cannot be combined with --resume")
    if a.resume:
        if not a.work_dir and not a.config and a.resume == "latest":
            raise FacesrError("--resume needs --work-dir (the folder of the run to continue)")
        work_dir = Path(a.work_dir or (Path(a.resume).parent.parent if a.resume != "latest"
                                       else Path("work_dirs") / Path(a.config).stem))
        cfg = _resume_config(a, work_dir)
    else:
        cfg = load_config(a.config, a.overrides)
        work_dir = Path(a.work_dir or Path("work_dirs") / (Path(a.config).stem if a.config else cfg.name))
    resume = True if a.resume == "latest" else a.resume
    try:
        summary = train(cfg, work_dir, resume=resume, init_from=a.init_from, init_ema=a.init_ema,
                        overwrite=a.overwrite)
    except WorkDirInUseError as exc:
        raise FacesrError(f"work dir {work_dir} already holds a run; continue it with --resume, or start over "
                          f"with --overwrite (the old run is moved to {work_dir.name}.old-<timestamp>)") from None
    best = summary["best"]
    if summary.get("stopped_by_signal"):
        print(f"interrupted at iteration {summary['iter']}; resumable checkpoint {summary['last_checkpoint']} "
              f"(continue with: {_continue_command(work_dir)})", file=sys.stderr)
        return 130
    msg = f"done: {summary['iter']} iterations in {work_dir}"
    if best:
        msg += f"; best {best['metric']} {best['value']:.4f} at iter {best['iter']} -> {work_dir / 'best.safetensors'}"
    print(msg)
    return 0
