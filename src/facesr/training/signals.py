"""SIGINT/SIGTERM during training: the run stops within :data:`HARD_STOP_S` seconds at every stage.

Three layers, so that no stage can hold a signal back:

1. The Python handler (it runs in the main thread, between bytecodes) records the signal.  Inside an
   :meth:`StopFlag.interruptible` section -- work that changes no state worth keeping: building a
   batch, starting DataLoader workers, the forward and backward pass, scoring validation -- it raises
   :class:`StopRequested` at once; the loop then stops at the last completed iteration and writes its
   resumable checkpoint.  Elsewhere (the optimiser step, writing a checkpoint or the log) the work
   finishes and the loop stops at the next iteration boundary.
2. A watcher thread is woken by the signal itself (:func:`signal.set_wakeup_fd`), even while the main
   thread is inside one long torch operation, where no Python handler can run (torch releases the
   GIL there).  At a second signal, or when the run is still going ``grace_s`` seconds after the
   first, it stops the process hard: ``on_hard_stop`` removes temporary files and prints one line,
   then ``os._exit(130)``.
3. Every file is written to a temporary name and renamed, so a hard stop never leaves a
   half-written file under a final name (and ``on_hard_stop`` removes the temporary ones).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

#: Seconds from the first signal to the hard stop (the run is gone within about 2 s in all).
HARD_STOP_S = 1.0
#: Exit status of a run stopped by a signal (graceful or hard).
EXIT_STATUS = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def release_process_resources() -> None:
    """Run multiprocessing's exit finalizers (DataLoader queues release their named semaphores), for a
    process about to leave by ``os._exit``; else its resource tracker warns of leaked ones."""
    from multiprocessing import util

    run_finalizers = getattr(util, "_run_finalizers", None)
    if run_finalizers is not None:
        try:
            run_finalizers(0)
        except Exception:  # leaving anyway; the tracker cleans up what is left
            pass


class StopRequested(BaseException):
    """Raised by the signal handler inside an interruptible section.

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` in library code (DataLoader,
    evaluation) does not swallow it.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class StopFlag:
    """Within ``with StopFlag() as stop``: SIGINT/SIGTERM set ``stop.signum`` (see the module docstring).

    ``grace_s``: seconds to the hard stop (default :data:`HARD_STOP_S`); ``stage``: what the run is doing (for the hard-stop line); ``on_hard_stop(signum, why)``: called
    just before the hard stop; ``raise_in_sections``: False under DDP, where ranks stop together at
    sync points instead.  Outside the main thread no handler is installed.
    """

    def __init__(
        self,
        grace_s: float | None = None,
        on_hard_stop: Callable[[int, str], None] | None = None,
        raise_in_sections: bool = True,
    ):
        self.signum: int | None = None
        self.stage = "starting"
        self.grace_s = HARD_STOP_S if grace_s is None else grace_s
        self.on_hard_stop, self.raise_in_sections = on_hard_stop, raise_in_sections
        self._sections = 0
        self._raised = False
        self._signals = 0
        self._old: dict = {}
        self._old_wakeup: int | None = None
        self._wake: socket.socket | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is not threading.main_thread():
            return self
        for s in SIGNALS:
            self._old[s] = signal.signal(s, self._handle)
        listen, self._wake = socket.socketpair()
        self._wake.setblocking(False)
        self._old_wakeup = signal.set_wakeup_fd(self._wake.fileno(), warn_on_full_buffer=False)
        self._watcher = threading.Thread(target=self._watch, args=(listen,), name="facesr-stop-watch", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc) -> None:
        """Restore the handlers and end the helper threads before returning.

        The threads are joined, not left to die with the interpreter: a daemon thread that still holds
        this object (and through ``on_hard_stop`` the run's tensors) would free them during interpreter
        shutdown, and a thread ending inside torch's C++ then aborts the process ("terminate called
        without an active exception", exit 134) after a run that succeeded.
        """
        self._done.set()  # from here on, no hard stop
        for s, h in self._old.items():
            signal.signal(s, h)
        if self._wake is not None:
            signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup is not None else -1)
            self._wake.close()  # the watcher's recv returns b"" and it ends
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join()
            self._watcher = None
        self.on_hard_stop = None

    @contextmanager
    def interruptible(self, stage: str) -> Iterator[None]:
        """A section that keeps no state: a signal raises :class:`StopRequested` in it at once (also
        when one came before it began)."""
        self.stage = stage
        if self.signum is not None and self.raise_in_sections:
            raise StopRequested(self.signum)
        try:
            self._sections += 1
            yield
        finally:
            self._sections -= 1

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """The Python-level handler (main thread, between bytecodes)."""
        if self.signum is None:
            self.signum = signum
        if self._sections > 0 and self.raise_in_sections and not self._raised:
            self._raised = True  # once: the sections being left must not raise again
            raise StopRequested(signum)

    def _watch(self, listen: socket.socket) -> None:
        """Watcher thread: woken by every signal's byte on the wakeup socket."""
        with listen:
            while True:
                try:
                    data = listen.recv(64)
                except OSError:
                    return
                if not data:
                    return
                for signum in data:
                    if signum in SIGNALS and not self._done.is_set():
                        self._signalled(signum)

    def _signalled(self, signum: int) -> None:
        with self._lock:
            self._signals += 1
            first = self._signals == 1
        if self.signum is None:
            self.signum = signum
        if not first:
            self._hard_stop(signum, f"a second {signal.Signals(signum).name}")
            return
        timer = threading.Timer(self.grace_s, self._deadline, args=(signum,))
        timer.daemon = True
        with self._lock:
            if self._done.is_set():
                return
            self._timer = timer
            timer.start()

    def _deadline(self, signum: int) -> None:
        self._hard_stop(signum, f"still {self.stage} {self.grace_s:g} s later")

    def _hard_stop(self, signum: int, why: str) -> None:
        if self._done.is_set():
            return
        try:
            if self.on_hard_stop is not None:
                self.on_hard_stop(signum, why)
            release_process_resources()
        finally:
            os._exit(EXIT_STATUS)
