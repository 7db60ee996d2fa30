"""Training time: wall-clock seconds of the loop *without* validation and checkpoint writing.

``train_s`` in log records, a checkpoint's ``elapsed_s`` and the time budget all read this clock,
so runs of models with different validation costs get the same training time under one budget.
It continues across resumes (``prior_s``: the training seconds of the runs before).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class TrainClock:
    """Seconds of training so far; time spent inside :meth:`paused` is not counted."""

    def __init__(self, prior_s: float = 0.0):
        self.prior_s = float(prior_s)
        self.start()

    def start(self) -> None:
        """Start counting now (this run's part; ``prior_s`` stays)."""
        self.paused_s = 0.0
        self.t_start = time.perf_counter()

    def train_s(self) -> float:
        """Training seconds of this run and of the runs it resumes (validation and checkpoints excluded)."""
        return self.prior_s + time.perf_counter() - self.t_start - self.paused_s

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent in this block (validating, checkpointing) is not training time."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.paused_s += time.perf_counter() - t


class TimedInterval:
    """``train.val_interval_min``: due every ``every_min`` minutes of training time (None: never).

    Counted from the start of the whole run, so a resumed run keeps the rhythm.
    """

    def __init__(self, every_min: float | None, prior_s: float = 0.0):
        self.every_s = every_min * 60 if every_min else None
        self.next_s = (prior_s // self.every_s + 1) * self.every_s if self.every_s else None

    def due(self, clock: TrainClock) -> bool:
        return self.next_s is not None and clock.train_s() >= self.next_s

    def advance(self, clock: TrainClock) -> None:
        """After running: the next time lies ahead of the clock."""
        if self.next_s is not None and self.every_s is not None:
            while self.next_s <= clock.train_s():
                self.next_s += self.every_s
