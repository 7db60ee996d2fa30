"""``log.jsonl``: a run's record, one JSON object a line; this module is its only reader and writer.

Every record has ``iter`` (completed iterations when it was written) and ``kind``:

* ``train``: ``lr``, ``loss`` (mean over the log window), ``data_wait`` (fraction 0-1 of the
  window spent waiting for batches), ``it_per_s``, ``train_s`` (training seconds, see
  :mod:`facesr.training.clock`);
* ``val``: the validation metrics (``psnr``, ``ssim``, ``psnr_challenge``, ``*_ema``) and ``train_s``;
* ``plan``: a time-budget plan (``max_iters``, ...); ``crop``: a new patch size; ``init``: the
  weights an ``--init-from`` run started from.

Readers skip lines that are not such records (a killed process can leave half a line); a file that
is not UTF-8 text is not a log (one error line naming it).  A resumed run cuts the log back to its
checkpoint (:meth:`RunLog.truncate`); the cut lines go to ``log.discarded.jsonl``, never lost, and
the trainer says how many.  With tensorboard installed, numbers are mirrored to ``tb/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from ..errors import FacesrError
from ..io.files import atomic_write_bytes

LOG_NAME = "log.jsonl"
DISCARDED_NAME = "log.discarded.jsonl"


def parse_record(line: str) -> dict | None:
    """One log line as a record (a JSON object with an integer ``iter`` and a ``kind``), else None."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict) or "kind" not in rec or not isinstance(rec.get("iter"), int):
        return None
    return rec


class RunLog:
    """The ``log.jsonl`` of one run: ``RunLog(work_dir)`` (or ``RunLog.at(path)`` for the file itself)."""

    def __init__(self, work_dir: str | Path):
        self.path = Path(work_dir) / LOG_NAME
        self._file: TextIO | None = None
        self._tb: Any = None

    @classmethod
    def at(cls, run_dir_or_file: str | Path) -> RunLog:
        """The log of a work dir, or a ``log.jsonl`` named directly."""
        p = Path(run_dir_or_file)
        log = cls(p if p.is_dir() else p.parent)
        if not p.is_dir():
            log.path = p
        return log

    def exists(self) -> bool:
        return self.path.is_file()

    def text(self) -> str:
        """The whole file; one FacesrError line when it is not UTF-8 text (a facesr log is ASCII)."""
        try:
            return self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise FacesrError(f"{self.path}: not a facesr run log (byte {exc.start:,} is not UTF-8 text)") from None

    def records(self) -> list[dict]:
        """Every record, in file order (a missing file: none)."""
        if not self.exists():
            return []
        return [r for r in map(parse_record, self.text().splitlines()) if r is not None]

    def has_plan(self) -> bool:
        """True once a time-budget plan was logged (a resumed run keeps it, see :meth:`truncate`)."""
        return any(r["kind"] == "plan" for r in self.records())

    def truncate(self, start_iter: int) -> int:
        """Keep the records with ``iter <= start_iter`` and every ``plan`` record (the plan lives on in
        config.yaml); append the other lines to ``log.discarded.jsonl``.  Returns how many were cut."""
        if not self.exists():
            return 0
        keep: list[str] = []
        cut: list[str] = []
        for line in self.text().splitlines():
            rec = parse_record(line)
            ok = rec is not None and (rec["iter"] <= start_iter or rec["kind"] == "plan")
            (keep if ok else cut).append(line)
        if cut:
            with open(self.path.with_name(DISCARDED_NAME), "a", encoding="utf-8") as f:
                f.write("\n".join(cut) + "\n")
            atomic_write_bytes(self.path, ("\n".join(keep) + ("\n" if keep else "")).encode("utf-8"))
        return len(cut)

    def open(self, tensorboard: bool = True) -> RunLog:
        """Start appending (and, when ``tensorboard`` and it imports, mirroring numbers to ``tb/``)."""
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open across the run, closed by close()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.path.parent / "tb"))
            except Exception:
                self._tb = None
        return self

    def write(self, record: dict) -> None:
        """Append ``record`` (flushed at once); a log that was not opened (ranks > 0) ignores it."""
        if self._file is None:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("iter", "kind") and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{record['kind']}/{k}", v, record["iter"])

    def close(self) -> None:
        for f in (self._file, self._tb):
            if f is not None:
                f.close()
        self._file = self._tb = None
