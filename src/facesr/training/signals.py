"""SIGINT/SIGTERM during training: finish the iteration, write a resumable checkpoint, exit."""
from __future__ import annotations

import signal
from types import FrameType


class StopFlag:
    """Within ``with StopFlag() as stop``, SIGINT/SIGTERM set ``stop.signum``; the loop checkpoints and
    exits at the next iteration boundary.  A second signal raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self) -> StopFlag:  # noqa: PYI034 - typing.Self needs Python 3.11
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # second signal: give up immediately
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
