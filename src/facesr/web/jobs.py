"""A job queue with honest state: one job runs at a time per model, the rest wait in order.

* :meth:`JobQueue.submit` refuses a job (:class:`QueueFull`) when ``max_queued``
  jobs are already waiting; the one running does not count.
* :meth:`JobQueue.cancel` drops a waiting job at once (it never runs and no
  longer counts towards the cap or anyone's position); a running job is told to
  stop and does so at its next progress call (the model runner calls it per
  tile), ending in state ``cancelled``.
* Each job records its position (jobs ahead of it), tiles done / total, its
  start and end time, and an estimate of the seconds left.
* Finished jobs (and their results) are kept so a client can fetch the result
  after the job told it that it is done, but not for long: at most
  ``keep_finished`` of them and ``keep_bytes`` of inputs and results together
  (fetched ones first, oldest first; the newest is always kept), each for ``keep_seconds``
  after it ended, or ``fetched_grace_s`` after its result was first fetched
  (:meth:`JobQueue.mark_fetched`), whichever comes first.  The ids of dropped
  jobs are remembered (:meth:`JobQueue.gone`), so a late request can be told
  the result is gone rather than that it never existed.

Nothing here knows about HTTP; :mod:`facesr.web.routes` maps it onto routes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import secrets
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import FacesrError, one_line

log = logging.getLogger("facesr.web")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL_STATES = (DONE, FAILED, CANCELLED)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (another C library, or not found)."""
    try:
        name = ctypes.util.find_library("c")
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand memory freed by the last job back to the OS (glibc keeps it in its arenas otherwise, so a
    server's resident size would stay at its largest job's peak).  Does nothing without glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def duration(seconds: float) -> str:
    """``seconds`` in words: "1 second", "45 seconds", "10 minutes" (from two minutes on)."""
    if seconds >= 120:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:g} second{'' if seconds == 1 else 's'}"


class QueueFull(FacesrError):
    """``max_queued`` jobs are already waiting (HTTP 503)."""


class Cancelled(Exception):
    """Raised inside a running job's progress callback once the job has been cancelled."""


Progress = Callable[[int, int], None]

#: Default cap on the bytes of inputs and results kept in finished jobs (256 MB).
DEFAULT_KEEP_BYTES = 256 * 10**6
#: Default seconds a result stays after its first fetch (the page fetches three images at once).
DEFAULT_FETCHED_GRACE_S = 60.0
#: How many ids of dropped jobs are remembered (to answer 410 rather than 404).
GONE_REMEMBERED = 4096
#: The idle worker drops due results at least this often (seconds).
EXPIRE_EVERY_S = 1.0


@dataclass(eq=False)
class Job:
    """One restoration.  ``image`` is the decoded input (uint8 HxWx3 or HxWx4, 0-255).

    Times are :func:`time.monotonic` seconds.  ``done`` / ``total`` count units (``unit``): tiles (an
    image small enough to run in one pass is one tile) or, in whole-photo mode, faces;
    ``total`` is 0 until the job starts (and, for a photo, until its faces are found).
    ``result`` is whatever the queue's run function returned.
    """

    image: np.ndarray
    name: str = "image"
    mode: str = "face"
    id: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    state: str = QUEUED
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    done: int = 0
    total: int = 0
    result: Any = None
    error: str | None = None
    cancel_reason: str | None = None
    note: str | None = None
    unit: str = "tile"
    error_status: int = 500
    fetched: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _end: threading.Event = field(default_factory=threading.Event, repr=False)
    _callbacks: list = field(default_factory=list, repr=False)
    _cb_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def pixels(self) -> int:
        return int(self.image.shape[0] * self.image.shape[1])

    @property
    def kept_bytes(self) -> int:
        """Bytes this job holds once finished: its decoded input and its result's PNG."""
        png = self.result.get("png", b"") if isinstance(self.result, dict) else b""
        return int(self.image.nbytes) + len(png)

    @property
    def is_finished(self) -> bool:
        return self._end.is_set()

    @property
    def cancel_requested(self) -> bool:
        """True once :meth:`JobQueue.cancel` was called for this job (it may still be stopping)."""
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is finished (done, failed or cancelled); False on timeout (seconds)."""
        return self._end.wait(timeout)

    def add_done_callback(self, fn: Callable[[Job], None]) -> None:
        """Call ``fn(job)`` once the job is finished (at once, in this thread, if it already is)."""
        with self._cb_lock:
            if not self._end.is_set():
                self._callbacks.append(fn)
                return
        fn(self)


class JobQueue:
    """Run jobs one at a time in a worker thread, in submission order.

    Args:
        run: ``run(job, progress) -> result``, called in the worker thread.  It must call
            ``progress(done, total)`` now and then (the :class:`~facesr.inference.Restorer`
            does, per tile); that call raises :class:`Cancelled` once the job is cancelled.
            Any other exception fails the job; its one-line message goes to ``job.error``
            only if it is a :class:`~facesr.errors.FacesrError`, otherwise a generic line does
            and the traceback goes to the log.
        max_queued: most jobs waiting (not counting the running one); more raise :class:`QueueFull`.
        keep_finished: most finished jobs kept for lookup (the oldest fetched ones are dropped first).
        keep_seconds: finished jobs are dropped this many seconds after they end.
        keep_bytes: most bytes of inputs and result PNGs kept in finished jobs (the oldest fetched ones
            are dropped first, then the oldest; never the newest finished job).
        fetched_grace_s: a job whose result was fetched (:meth:`mark_fetched`) is dropped this many
            seconds later (so the page can still fetch its other images).
    """

    def __init__(
        self,
        run: Callable[[Job, Progress], Any],
        max_queued: int = 8,
        keep_finished: int = 16,
        keep_seconds: float = 600.0,
        keep_bytes: int = DEFAULT_KEEP_BYTES,
        fetched_grace_s: float = DEFAULT_FETCHED_GRACE_S,
    ):
        if int(max_queued) < 0:
            raise ValueError(f"max_queued must be >= 0, got {max_queued}")
        self._run = run
        self.max_queued = int(max_queued)
        self.keep_finished, self.keep_seconds = int(keep_finished), float(keep_seconds)
        self.keep_bytes, self.fetched_grace_s = int(keep_bytes), float(fetched_grace_s)
        self._gone: OrderedDict[str, str] = OrderedDict()  # id -> why it was dropped (bounded)
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._finished: OrderedDict[str, Job] = OrderedDict()
        self._closed = False
        self._seconds_per_pixel: float | None = None  # running estimate for time-left, from finished jobs
        self._thread = threading.Thread(target=self._worker, name="facesr-jobs", daemon=True)
        self._thread.start()

    # --------------------------------------------------------------- public

    def check_room(self) -> None:
        """Raise :class:`QueueFull` if a job submitted now would be refused (so callers can refuse early)."""
        with self._cond:
            if self._closed:
                raise QueueFull("The server is shutting down. Try again in a moment.")
            if len(self._waiting) >= self.max_queued:
                n = len(self._waiting)
                waiting = "1 picture is" if n == 1 else f"{n} pictures are"
                raise QueueFull(f"The server is busy: {waiting} already waiting. Try again in a minute.")

    def submit(self, job: Job) -> Job:
        """Queue ``job``; raises :class:`QueueFull` when ``max_queued`` jobs already wait."""
        with self._cond:
            self.check_room()
            self._waiting.append(job)
            self._cond.notify_all()
        return job

    def cancel(self, job: Job, reason: str = "cancelled") -> bool:
        """Cancel ``job``: a waiting one is dropped now, a running one stops at its next tile.

        Returns True if the job was still waiting or running.  ``reason`` goes to the log.
        """
        with self._cond:
            if job.is_finished:
                return False
            job.cancel_reason = job.cancel_reason or reason
            job._cancel.set()
            if job.state == QUEUED:
                try:
                    self._waiting.remove(job)
                except ValueError:  # the worker has just taken it; it will see the flag
                    return True
                self._finish(job, CANCELLED)
                log.info("job %s cancelled while waiting (%s)", job.id, reason)
            return True

    def mark_fetched(self, job: Job) -> None:
        """Note that ``job``'s result was fetched: it is dropped ``fetched_grace_s`` seconds from the first call."""
        with self._cond:
            if job.fetched is None:
                job.fetched = time.monotonic()

    def gone(self, job_id: str) -> str | None:
        """Why the job ``job_id`` is no longer kept (a phrase, e.g. "was fetched"), or None if it never was."""
        with self._cond:
            self._expire()
            return self._gone.get(job_id)

    def kept(self) -> tuple[int, int]:
        """(finished jobs kept, bytes they hold) after dropping what is due."""
        with self._cond:
            self._expire()
            return len(self._finished), sum(j.kept_bytes for j in self._finished.values())

    def get(self, job_id: str) -> Job | None:
        """A waiting, running or recently finished job by id, else None."""
        with self._cond:
            self._expire()
            if self._running is not None and self._running.id == job_id:
                return self._running
            for j in self._waiting:
                if j.id == job_id:
                    return j
            return self._finished.get(job_id)

    @property
    def running(self) -> Job | None:
        """The job the worker is running now, if any."""
        with self._cond:
            return self._running

    def position(self, job: Job) -> int:
        """How many jobs will run before ``job``: 0 when it runs (or ended) or is next with nothing running."""
        with self._cond:
            if job.state != QUEUED:
                return 0
            try:
                ahead = self._waiting.index(job)
            except ValueError:
                return 0
            return ahead + (1 if self._running is not None else 0)

    def snapshot(self, job: Job) -> dict:
        """The job's state as plain data (JSON-ready); the fields are those of :class:`facesr.web.models.JobState`."""
        now = time.monotonic()
        with self._cond:
            position = self.position(job)
            elapsed = None
            if job.started is not None:
                elapsed = (job.finished or now) - job.started
            eta = self._eta(job, now) if job.state == RUNNING else None
            h, w = job.image.shape[:2]
            return {
                "id": job.id,
                "state": job.state,
                "position": position,
                "done": job.done,
                "total": job.total,
                "unit": job.unit,
                "elapsed_s": None if elapsed is None else round(elapsed, 2),
                "waited_s": round((job.started or job.finished or now) - job.created, 2),
                "eta_s": None if eta is None else round(eta, 1),
                "input_size": [w, h],
                "name": job.name,
                "mode": job.mode,
                "note": job.note,
                "error": job.error if job.state == FAILED else None,
            }

    def note_speed(self, seconds: float, pixels: int) -> None:
        """Record that ``pixels`` input pixels took ``seconds`` (e.g. a warm-up run), for time-left estimates."""
        if seconds > 0 and pixels > 0:
            with self._cond:
                self._seconds_per_pixel = seconds / pixels

    def stats(self) -> dict:
        """``{"running": 0 or 1, "queued": n, "max_queued": cap}``."""
        with self._cond:
            return {
                "running": int(self._running is not None),
                "queued": len(self._waiting),
                "max_queued": self.max_queued,
            }

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything and stop the worker; only the first call does anything.

        Waiting jobs end (cancelled) at once.  The running job gets ``timeout`` seconds to stop at its
        next tile; if it has not by then (a long forward pass), it is marked cancelled anyway, so whoever
        waits for it gets an answer now, and the worker thread (a daemon) is left to finish the pass.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            jobs = list(self._waiting) + ([self._running] if self._running else [])
        for j in jobs:
            self.cancel(j, "server stopping")
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._cond:
            job = self._running
            if job is not None and not job.is_finished:
                log.info("job %s: still in a forward pass %g s after the stop; answered as cancelled", job.id, timeout)
                self._finish(job, CANCELLED)

    # --------------------------------------------------------------- internals

    def _eta(self, job: Job, now: float) -> float | None:
        elapsed = now - (job.started or now)
        if job.total > 1 and job.done > 0:
            return elapsed / job.done * (job.total - job.done)
        if self._seconds_per_pixel is not None:
            return max(0.0, self._seconds_per_pixel * job.pixels - elapsed)
        return None

    def _finish(self, job: Job, state: str) -> None:  # under the lock
        job.state = state
        job.finished = time.monotonic()
        if state != DONE:
            job.result = None
        self._finished[job.id] = job
        self._expire()
        with job._cb_lock:
            job._end.set()
            callbacks, job._callbacks = job._callbacks, []
        self._cond.notify_all()
        for fn in callbacks:
            try:
                fn(job)
            except Exception:  # a callback's failure must not stop the worker
                log.exception("job %s: done-callback failed", job.id)

    def _expire(self) -> None:  # under the lock
        """Drop finished jobs past their time, then (fetched first, oldest first) while over the count or byte cap."""
        now = time.monotonic()
        for job in list(self._finished.values()):
            if job.fetched is not None and now - job.fetched > self.fetched_grace_s:
                self._drop(job, f"was fetched more than {duration(self.fetched_grace_s)} ago")
            elif job.finished is not None and now - job.finished > self.keep_seconds:
                self._drop(job, f"ended more than {duration(self.keep_seconds)} ago")
        held = sum(j.kept_bytes for j in self._finished.values())
        while len(self._finished) > self.keep_finished or (held > self.keep_bytes and len(self._finished) > 1):
            kept = list(self._finished.values())
            # the oldest already fetched goes first, so a result nobody has fetched yet stays longest
            victim = next((j for j in kept[:-1] if j.fetched is not None), kept[0])
            held -= victim.kept_bytes
            self._drop(victim, "made room for newer results")

    def _drop(self, job: Job, why: str) -> None:  # under the lock
        del self._finished[job.id]
        self._gone[job.id] = why
        while len(self._gone) > GONE_REMEMBERED:
            self._gone.popitem(last=False)
        log.debug("job %s dropped: %s", job.id, why)

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait(EXPIRE_EVERY_S)
                    self._expire()  # results are dropped on time even when no request comes
                if self._closed and not self._waiting:
                    return
                job = self._waiting.popleft()
                self._running = job
                job.state = RUNNING
                job.started = time.monotonic()

            def progress(done: int, total: int, job=job) -> None:
                job.done, job.total = int(done), int(total)
                if job._cancel.is_set():
                    raise Cancelled()

            state, result = DONE, None
            try:
                progress(0, 0)  # cancelled between being taken and starting: do no work at all
                result = self._run(job, progress)
                if job._cancel.is_set():  # asked to stop after the last tile: honour it
                    raise Cancelled()
            except Cancelled:
                state = CANCELLED
            except FacesrError as exc:
                state, job.error = FAILED, one_line(exc)
                job.error_status = int(getattr(exc, "status", 400))
            except Exception as exc:
                state = FAILED
                job.error = (
                    f"Restoring this picture failed on the server ({type(exc).__name__}). "
                    f"The server's log has the details."
                )
                log.error("job %s failed: %s\n%s", job.id, one_line(exc), traceback.format_exc())
            with self._cond:
                self._running = None
                if job.is_finished:  # abandoned by close() while it ran: already answered as cancelled
                    continue
                job.result = result
                self._finish(job, state)
                if state == DONE and job.pixels > 0 and job.finished is not None:
                    spp = (job.finished - (job.started or job.finished)) / job.pixels
                    old = self._seconds_per_pixel
                    self._seconds_per_pixel = spp if old is None else 0.5 * old + 0.5 * spp
            del result
            release_freed_memory()
            dt = (job.finished or 0) - (job.started or 0)
            h, w = job.image.shape[:2]
            if state == CANCELLED:
                log.info(
                    "job %s: %dx%d cancelled after %d of %d %ss (%s)",
                    job.id,
                    w,
                    h,
                    job.done,
                    job.total,
                    job.unit,
                    job.cancel_reason,
                )
            elif state == DONE:
                log.info(
                    "job %s: %dx%d restored in %.2f s (%d %s%s)",
                    job.id,
                    w,
                    h,
                    dt,
                    job.total,
                    job.unit,
                    "" if job.total == 1 else "s",
                )
