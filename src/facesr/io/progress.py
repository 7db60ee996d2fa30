"""Progress of long work, on a terminal and in a log.

:func:`progress` returns a tqdm bar when stderr is a terminal.  Elsewhere (``nohup``, CI, a script that
captures stderr) tqdm would stay silent, so it returns a :class:`LogProgress` instead: a plain line
(done/total, rate, ETA) every ``interval`` seconds of work (so short work stays quiet), and a last line
when long work ends.  ``quiet`` silences both.  Both take ``update(n)``, ``write(msg)``, ``close()`` and
``with``.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

#: Seconds between two plain progress lines when stderr is not a terminal.
LOG_INTERVAL_S = 30.0


def _duration(seconds: float) -> str:
    """``75 -> '1 min 15 s'``, ``3 -> '3 s'``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


#: ``75 -> '1 min 15 s'``: a duration in seconds as the progress lines write it.
format_duration = _duration


class LogProgress:
    """tqdm's small interface, printing one plain line at most every ``interval`` seconds."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        file: IO[str] | None = None,
        interval: float = LOG_INTERVAL_S,
        initial: int = 0,
        clock=time.monotonic,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file if file is not None else sys.stderr
        self.interval, self.clock = interval, clock
        self.n = self.start_n = initial
        self.t0 = self.clock()
        self.last: float | None = None
        self.printed_n: int | None = None
        self.closed = False
        self.postfix = ""

    def line(self) -> str:
        """``desc: 120/400 img (30%), 9.8 img/s, ETA 28 s`` (parts that are unknown left out)."""
        elapsed = max(self.clock() - self.t0, 1e-9)
        rate = (self.n - self.start_n) / elapsed
        done = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        if self.total:
            done += f" ({100 * self.n / self.total:.0f}%)"
        parts = [done]
        if self.n > self.start_n:
            parts.append(f"{rate:.3g} {self.unit}/s" if rate >= 1 else f"{1 / rate:.3g} s/{self.unit}")
            if self.total and self.n < self.total:
                parts.append(f"ETA {_duration((self.total - self.n) / rate)}")
        parts.append(f"elapsed {_duration(elapsed)}")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: " + ", ".join(parts)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - (self.t0 if self.last is None else self.last) >= self.interval:
            self.last, self.printed_n = now, self.n
            self.write(self.line())

    def write(self, msg: str) -> None:
        print(msg, file=self.file, flush=True)

    def set_postfix_str(self, s: str) -> None:
        """tqdm's postfix: appended to the next lines (e.g. the latest loss)."""
        self.postfix = s

    def close(self) -> None:
        """Print the final state (once), unless the last line already showed it."""
        if not self.closed and self.printed_n is not None and self.n != self.printed_n:
            self.write(self.line())
        self.closed = True

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Silent:
    """No output (``quiet``, or ranks other than 0)."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def write(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress(
    total: int | None,
    desc: str,
    unit: str = "it",
    *,
    quiet: bool = False,
    initial: int = 0,
    file: IO[str] | None = None,
    interval: float = LOG_INTERVAL_S,
) -> Any:
    """A progress reporter for ``total`` units of work: tqdm on a terminal, plain lines in a log.

    ``quiet`` gives one that prints only what is passed to ``write`` (warnings and notes still show).
    """
    stream = file if file is not None else sys.stderr
    if quiet:
        return _Silent()
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream, dynamic_ncols=True)
    return LogProgress(total, desc, unit, stream, interval, initial)


class heartbeat:
    """A sign of life during one long call that reports no progress of its own (e.g. int8 quantization).

    Off a terminal, a thread prints ``desc: still working, elapsed 1 min 00 s`` every ``interval`` seconds
    until the block ends; on a terminal the call's own output (or a spinner-less wait) is left alone.
    """

    def __init__(self, desc: str, interval: float = LOG_INTERVAL_S, file: IO[str] | None = None):
        import threading

        self.desc, self.interval = desc, interval
        self.file = file if file is not None else sys.stderr
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.wait(self.interval):
            print(f"{self.desc}: still working, elapsed {_duration(time.monotonic() - t0)}", file=self.file, flush=True)

    def __enter__(self) -> heartbeat:
        isatty = getattr(self.file, "isatty", None)
        if not (isatty is not None and isatty()):
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
