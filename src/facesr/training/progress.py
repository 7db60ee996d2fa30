"""Training progress on stderr (rank 0, unless quiet), on a terminal and in a log.

:func:`facesr.io.progress.progress` gives a tqdm bar on a terminal and, elsewhere (``nohup``, CI, a
script capturing stderr), plain lines at most every 30 s.  Either way the first iteration's time and
an ETA are printed as soon as it ends, so a slow run (seconds per iteration on a CPU) shows signs of
life from the start.  Every method is a no-op when disabled.
"""

from __future__ import annotations

from typing import IO

from ..io.progress import LogProgress, format_duration, progress


class Progress:
    """Progress over iterations ``start`` .. ``total`` (``enabled=False``: nothing is shown)."""

    def __init__(self, total: int, start: int, enabled: bool, file: IO[str] | None = None):
        self.bar = progress(total, "train", "it", initial=start, file=file) if enabled else None
        self.plain = isinstance(self.bar, LogProgress)  # plain lines (not a terminal)

    def note(self, msg: str) -> None:
        """One line of its own (above a tqdm bar)."""
        if self.bar is not None:
            self.bar.write(msg)

    def starting(self, msg: str) -> None:
        """What the run is about to do (plain lines only: a tqdm bar shows itself)."""
        if self.plain:
            self.note(msg)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def first_step(self, step_s: float, wait_s: float, remaining: int) -> None:
        """The first iteration's time (seconds, ``wait_s`` of them waiting for data) and the ETA it gives."""
        msg = f"first iteration: {step_s:.2f} s ({wait_s:.2f} s of it waiting for data)"
        if remaining > 0:
            msg += f"; at that pace the remaining {remaining} take about {format_duration(remaining * step_s)}"
        self.note(msg)

    def set_total(self, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            if hasattr(self.bar, "refresh"):
                self.bar.refresh()

    def show_loss(self, loss: float, lr: float, data_wait: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.4g}, lr {lr:.3g}, data wait {data_wait:.0%}")

    def validating(self, n_pairs: int, it: int) -> None:
        """Before validation (plain lines only), which can take a while on a CPU."""
        if self.plain:
            self.note(f"validating on {n_pairs} image pair(s) after iteration {it}")

    def show_val(self, rec: dict) -> None:
        self.note(
            f"[val] iter {rec['iter']}: " + ", ".join(f"{k} {v:.4f}" for k, v in rec.items() if isinstance(v, float))
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
