"""Resumable training state: one ``.pt`` file per checkpoint, written atomically.

Contents (all loadable with ``torch.load(weights_only=True)``): format tag,
architecture, model and EMA weights, optimiser and grad-scaler state, the
number of completed iterations, the best metric so far, every RNG state
(torch CPU/CUDA, numpy global, Python ``random``) and the resolved config.
The data stream needs no state of its own: sample ``n`` is a pure function of
``(seed, n)``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, TrainingError

FORMAT = "facesr-train"


def rng_state() -> dict:
    np_state: Any = np.random.get_state()  # legacy=True: the 5-tuple (name, keys, pos, has_gauss, cached)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _payload_bytes(obj) -> int:
    """Bytes of the tensors in a (nested) checkpoint payload: a lower bound of its file size."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_payload_bytes(v) for v in obj)
    return 0


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def keep_note(last_good: Path | None) -> str:
    """``last good checkpoint iter_N.pt kept. Free some space and resume.`` (or, when none was written
    yet, start over), the end of a full-disk message."""
    if last_good:
        return f"last good checkpoint {Path(last_good).name} kept. Free some space and resume."
    return "no checkpoint written yet. Free some space and start over."


def check_free_space(folder: Path, need: int, what: str, last_good: Path | None) -> None:
    """TrainingError when ``folder``'s file system has less than ``need`` bytes free for ``what``."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < need:
        raise TrainingError(
            f"not enough free space in {folder}: {_mb(free)} free, {what} needs about "
            f"{_mb(need)}; {keep_note(last_good)}"
        )


def save_checkpoint(path: Path, payload: dict, last_good: Path | None = None) -> None:
    """``torch.save`` to a temporary name, fsync, then ``os.replace`` (atomic on POSIX).

    Free space is checked first against the size of the last checkpoint (or of the payload's
    tensors); a full disk -- before or during the write -- raises :class:`TrainingError` naming the
    folder and the space needed, with the partial file deleted and ``last_good`` untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    need = _payload_bytes(payload)
    if last_good is not None and Path(last_good).is_file():
        need = max(need, Path(last_good).stat().st_size)
    need = int(need * 1.05) + (1 << 20)
    keep = keep_note(last_good)
    check_free_space(path.parent, need, "a checkpoint", last_good)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        # torch reports a failed write as RuntimeError("[enforce fail at inline_container.cc] ... file write
        # failed") or, after a short write, "... inline_container.cc ... unexpected pos N vs M"
        if isinstance(exc, RuntimeError) and "write" not in str(exc) and "inline_container" not in str(exc):
            raise
        tmp.unlink(missing_ok=True)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "write failed"
        raise TrainingError(
            f"cannot write checkpoint {path.name} ({why}): {path.parent} needs about {_mb(need)} free; {keep}"
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)


def remove_partial_files(work_dir: Path) -> None:
    """Delete this process's temporary files in ``work_dir`` (after a hard stop): ``checkpoints/iter_*.pt.tmp``,
    ``best.safetensors.tmp`` and the ``.<name>.<pid>.tmp`` of :func:`facesr.io.files.atomic_write_bytes`."""
    work_dir = Path(work_dir)
    found = [
        *(work_dir / "checkpoints").glob("iter_*.pt.tmp"),
        work_dir / "best.safetensors.tmp",
        *work_dir.glob(f".*.{os.getpid()}.tmp"),
    ]
    for p in found:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            pass


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a facesr training checkpoint safely; refuse anything else with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint to resume from not found")
    import warnings

    from ..models.safe_pickle import load_failure_reason

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a facesr training checkpoint ({load_failure_reason(exc)})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a facesr training checkpoint (weights-only files cannot be resumed; "
            "predict and eval read them as they are)"
        )
    return obj


_ITER_RE = re.compile(r"^iter_(\d+)\.pt$")


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    if not ckpt_dir.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _ITER_RE.match(p.name))]
    return sorted(out)


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    cks = list_checkpoints(ckpt_dir)
    return cks[-1][1] if cks else None


def prune_checkpoints(ckpt_dir: Path, keep_last: int, protect: Path | None = None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints up to ``protect`` (the one just written).

    ``protect`` is never deleted, nor is any checkpoint of a later iteration (those are not this
    run's to prune).
    """
    cks = list_checkpoints(ckpt_dir)
    if protect is not None:
        m = _ITER_RE.match(Path(protect).name)
        if m:
            cks = [(i, p) for i, p in cks if i <= int(m.group(1))]
    for _, p in cks[:-keep_last] if keep_last > 0 else cks:
        if protect is None or p.resolve() != Path(protect).resolve():
            p.unlink(missing_ok=True)


class Checkpointer:
    """Writes ``ckpt_dir/iter_<it>.pt`` and prunes to ``keep_last``; remembers the last good one.

    ``last_saved``: the last good checkpoint so far (on resume: the one resumed from), named in the
    messages of a full disk or a non-finite loss and never deleted before a newer one is written.
    """

    def __init__(self, ckpt_dir: Path, keep_last: int, last_saved: Path | None = None):
        self.ckpt_dir, self.keep_last, self.last_saved = ckpt_dir, keep_last, last_saved

    def path(self, it: int) -> Path:
        return self.ckpt_dir / f"iter_{it}.pt"

    def save(self, it: int, payload: dict) -> Path:
        """Write ``payload`` as the checkpoint of iteration ``it`` (see :func:`save_checkpoint`)."""
        path = self.path(it)
        save_checkpoint(path, payload, last_good=self.last_saved)
        prune_checkpoints(self.ckpt_dir, self.keep_last, protect=path)
        self.last_saved = path
        return path
