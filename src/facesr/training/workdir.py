"""A work dir belongs to one run: claiming it, and which config keys a resumed run may change.

* A new run refuses a non-empty work dir (:class:`WorkDirInUseError`) unless asked to move
  the old run aside (to ``<dir>.old-<timestamp>``; nothing is ever deleted).
* A resumed run takes its configuration from the work dir's ``config.yaml`` (or, without
  one, from the checkpoint); only the keys in :data:`MUTABLE_KEYS` may change mid-run
  (merged in :func:`facesr.training.resume.resumed_config`).
* ``log.jsonl`` is cut back to the resumed iteration (records from after the checkpoint
  were written by the interrupted process and are written again); the cut lines are
  appended to ``log.discarded.jsonl``, not lost (:meth:`facesr.training.runlog.RunLog.truncate`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..errors import FacesrError
from ..io.guard import WriteGuard

#: Keys a resumed run may change (everything else is the run's identity).
MUTABLE_KEYS = (
    "train.max_iters",
    "train.val_interval",
    "train.val_interval_min",
    "train.ckpt_interval",
    "train.log_interval",
    "data.num_workers",
)


class WorkDirInUseError(FacesrError):
    """A new run was started in a work dir that already holds files; ``work_dir`` names it."""

    def __init__(self, message: str, work_dir: Path):
        super().__init__(message)
        self.work_dir = work_dir


def dir_is_empty(work_dir: Path) -> bool:
    return not work_dir.exists() or (work_dir.is_dir() and not any(work_dir.iterdir()))


def check_new_run(work_dir: Path, overwrite: bool, guard: WriteGuard | None = None) -> None:
    """Refuse to start a new run in a work dir holding anything, unless ``overwrite`` (then it is moved aside later).

    ``guard`` (the run's inputs and data folders): the work dir may not lie inside one of them, and
    with ``overwrite`` a work dir that is, holds or lies inside one is never moved (nor the current,
    home or root folder).
    """
    if work_dir.exists() and not work_dir.is_dir():
        raise FacesrError(f"work dir {work_dir} exists and is not a folder")
    if guard is not None:
        if overwrite and not dir_is_empty(work_dir):
            guard.check_tree(work_dir, "move")
        else:
            guard.check_file(work_dir, "work dir", own_artefacts=True)
    if overwrite or dir_is_empty(work_dir):
        return
    held = sorted(p.name + ("/" if p.is_dir() else "") for p in work_dir.iterdir())
    shown = ", ".join(held[:4]) + (" ..." if len(held) > 4 else "")
    raise WorkDirInUseError(
        f"work dir {work_dir} already holds a run ({shown}); resume it, or move it aside to start over", work_dir
    )


def move_aside(work_dir: Path, guard: WriteGuard | None = None) -> Path | None:
    """Rename a non-empty ``work_dir`` to ``<dir>.old-<timestamp>`` (unique); return the new name.

    ``guard``: refuse (one line) when the folder is, holds or lies inside one of its protected paths.
    """
    if dir_is_empty(work_dir):
        return None
    (guard or WriteGuard()).check_tree(work_dir, "move")
    real = Path(os.path.realpath(work_dir))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = real.with_name(f"{real.name}.old-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = real.with_name(f"{real.name}.old-{stamp}-{n}")
    os.rename(real, target)
    return target


#: What a run writes into its work dir before its first iteration (removed again when that fails).
FIRST_FILES = ("config.yaml", "log.jsonl")


def discard_unstarted(work_dir: Path, remove_dir: bool = True) -> None:
    """Remove what a new run wrote before failing at its first iteration (config.yaml, a log of no
    iterations, tb/), and, with ``remove_dir`` (the run made it), the work dir itself when that leaves
    it empty, so that the rerun is not refused.  Anything else in it is left alone."""
    from .runlog import RunLog

    try:
        if any(r["kind"] not in ("init", "crop") for r in RunLog(work_dir).records()):
            return
    except FacesrError:
        return
    for name in FIRST_FILES:
        (work_dir / name).unlink(missing_ok=True)
    tb = work_dir / "tb"
    if tb.is_dir() and all(p.is_file() and p.name.startswith("events.out.tfevents.") for p in tb.iterdir()):
        shutil.rmtree(tb, ignore_errors=True)
    for folder in (work_dir / "checkpoints", work_dir) if remove_dir else (work_dir / "checkpoints",):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(_flatten(v, key))
            else:
                out[key] = v
    return out


def config_differences(old: dict, new: dict) -> dict[str, tuple]:
    """``{dotted key: (old value, new value)}`` for every leaf that differs."""
    a, b = _flatten(old), _flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def run_derived_keys(stored: dict) -> set[str]:
    """Keys the run itself rewrote in its config.yaml (a time-budget plan; the built-in data fallback)."""
    keys = set()
    if (stored.get("train") or {}).get("time_budget_min"):
        keys |= {"train.max_iters", "sched.periods"}
    data = stored.get("data") or {}
    if data.get("fallback_to_builtin"):
        from ..assets import builtin_faces_dir

        folder = str(builtin_faces_dir())
        keys |= {f"data.{k}" for k in ("train_hq_dir", "val_hq_dir") if data.get(k) == folder}
    return keys


def format_differences(diffs: dict[str, tuple], limit: int = 4) -> str:
    def short(v) -> str:
        r = repr(v)
        return r if len(r) <= 40 else "..." + r[-37:]

    items = [f"{k} {short(a)} -> {short(b)}" for k, (a, b) in diffs.items()]
    return "; ".join(items[:limit]) + (f" ... ({len(items)} in all)" if len(items) > limit else "")
