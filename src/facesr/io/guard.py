"""One guard for everything a command writes, moves or deletes.

A :class:`WriteGuard` knows what must survive the command: its inputs (files and folders), every data
folder its config names, and run artefacts (weights, ``config.yaml``, logs, checkpoints).  It refuses,
with one :class:`~facesr.errors.FacesrError` line, to write a file that is one of them or lies inside an
input folder, and to move or delete a folder that is, contains, or lies inside one of them.
``--overwrite`` never lifts these refusals: it only allows replacing a command's own earlier outputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FacesrError

#: File names that make up a training run (``facesr train``'s work dir).
RUN_FILES = frozenset({"config.yaml", "log.jsonl", "log.discarded.jsonl", "best.json", "best.safetensors"})
#: Endings of model weights and checkpoints, whatever their folder.
WEIGHT_SUFFIXES = frozenset({".safetensors", ".pt", ".pth", ".ckpt", ".onnx"})


def _real(p: str | os.PathLike) -> Path:
    return Path(os.path.realpath(p))


def _inside(child: Path, parent: Path) -> bool:
    """True when ``child`` is ``parent`` or lies below it (both resolved)."""
    return child == parent or parent in child.parents


def is_run_artefact(path: str | os.PathLike) -> bool:
    """True for weights, checkpoints, and a run's config, logs and best-model record."""
    p = Path(path)
    return p.suffix.lower() in WEIGHT_SUFFIXES or p.name in RUN_FILES or p.parent.name == "checkpoints"


@dataclass
class WriteGuard:
    """What a command must not write over, move or delete; ``what`` names each entry in messages."""

    protected: list[tuple[Path, str]] = field(default_factory=list)

    def protect(self, paths: Iterable[str | os.PathLike | None], what: str) -> WriteGuard:
        """Add inputs or data folders (None entries are skipped); returns self for chaining."""
        for p in paths:
            if p is not None and str(p) != "":
                self.protected.append((_real(p), f"{what} {p}"))
        return self

    def check_file(self, path: str | os.PathLike, what: str = "output", own_artefacts: bool = False) -> Path:
        """Refuse to write file ``path`` over a protected file, inside a protected folder, or over a run
        artefact (unless ``own_artefacts``: the trainer writing its own run)."""
        target = _real(path)
        for p, name in self.protected:
            if target == p or (p.is_dir() and _inside(target, p)):
                raise FacesrError(f"{what} {path} would overwrite or write into {name}; choose another place")
        if not own_artefacts and target.exists() and is_run_artefact(target):
            raise FacesrError(
                f"{what} {path} is a training run's file (weights, config, log or checkpoint); "
                f"facesr never replaces one with another kind of output"
            )
        return Path(path)

    def check_tree(self, folder: str | os.PathLike, action: str = "move") -> Path:
        """Refuse to ``action`` (move, delete) ``folder`` when it is, contains or lies inside a protected path."""
        target = _real(folder)
        if target == target.parent or target == _real(Path.home()) or target == _real(os.getcwd()):
            raise FacesrError(f"refusing to {action} {folder}: it is the root, home or current folder")
        for p, name in self.protected:
            if _inside(p, target) or _inside(target, p):
                relation = "is" if p == target else ("holds" if _inside(p, target) else "lies inside")
                raise FacesrError(f"refusing to {action} {folder}: it {relation} {name}")
        return Path(folder)
