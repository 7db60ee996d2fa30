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
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, one_line

FORMAT = "facesr-train"


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
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


def save_checkpoint(path: Path, payload: dict) -> None:
    """``torch.save`` to a temporary name, fsync, then ``os.replace`` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a facesr training checkpoint safely; refuse anything else with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint to resume from not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a facesr training checkpoint ({type(exc).__name__}: {one_line(exc, 200)})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a facesr training checkpoint (weights-only files cannot be resumed; "
                              "predict and eval read them as they are)")
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


def prune_checkpoints(ckpt_dir: Path, keep_last: int) -> None:
    for _, p in list_checkpoints(ckpt_dir)[:-keep_last]:
        p.unlink(missing_ok=True)
