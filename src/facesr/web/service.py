"""What the routes of ``facesr serve`` share: the model, the job queue, the limits and whole-photo mode.

One :class:`WebService` per app, kept in ``app.state.service``; routes reach it through the
:func:`get_service` dependency.  Nothing here builds HTTP responses.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from dataclasses import dataclass

import numpy as np
from starlette.requests import Request

from ..faces.photo import DEFAULT_MAX_FACES, DEFAULT_MIN_FACE
from ..io.images import encode_png
from .images import (
    DEFAULT_MAX_PIXELS,
    FACE_NOTE_PIXELS,
    FACE_NOTE_TEMPLATE,
    FORMAT_NAMES,
    InputError,
    body_limit,
    decode_image,
    example_faces,
    face_note,
)
from .jobs import DEFAULT_FETCHED_GRACE_S, DEFAULT_KEEP_BYTES, DONE, Job, JobQueue, Progress, duration
from .models import Example, Health, Info, JobState
from .photo import (
    PHOTO_SUGGEST_SIDE,
    PHOTO_UPSCALE,
    SharedDetector,
    call_restore_photo,
    face_boxes,
    takes_detector,
    too_small_for_photo_mode,
)
from .responses import download_name
from .uploads import Upload


@dataclass(frozen=True)
class ServerConfig:
    """The options of :func:`facesr.web.app.create_app`.

    Attributes:
        max_pixels: most input pixels (width x height) accepted; the request body may be at most
            :func:`~facesr.web.images.body_limit` ``(max_pixels)`` bytes.
        max_queued: most jobs waiting behind the running one; more get HTTP 503.
        upload_timeout_s: seconds an upload may go without sending data before HTTP 408 (the whole
            upload may take at most ten times this).
        model_name: shown by ``/healthz``.
        examples: offer the example faces (made from the bundled face at first use, ~0.1 s).
        keep_finished, keep_seconds: how many finished jobs (with their results) are kept, and how long
            (seconds after they end).
        keep_bytes: most bytes of inputs and result PNGs kept in finished jobs (the oldest go first).
        fetched_grace_s: seconds a result stays after it was first fetched (the page fetches the result,
            its bicubic enlargement and the input at once); then its URLs answer 410.
        warmup: restore one 64 x 64 gray image at start, so the first user does not pay the model's
            start-up cost and the page can estimate the time left from the first job on.
        photo_upscale: output pixels per input pixel in whole-photo mode (1, 2 or 4).
        max_faces: most faces restored per photo in whole-photo mode (the largest; the others are left
            as they are, and the answer says how many).
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_queued: int = 8
    upload_timeout_s: float = 20.0
    model_name: str = "the shipped model"
    examples: bool = True
    keep_finished: int = 8
    keep_seconds: float = 600.0
    warmup: bool = False
    photo_upscale: int = PHOTO_UPSCALE
    max_faces: int = DEFAULT_MAX_FACES
    keep_bytes: int = DEFAULT_KEEP_BYTES
    fetched_grace_s: float = DEFAULT_FETCHED_GRACE_S

    def __post_init__(self):
        if int(self.max_pixels) < 1:
            raise ValueError(f"max_pixels must be at least 1, got {self.max_pixels}")
        if not self.upload_timeout_s > 0:
            raise ValueError(f"upload_timeout_s must be > 0, got {self.upload_timeout_s}")
        if int(self.max_faces) < 1:
            raise ValueError(f"max_faces must be at least 1, got {self.max_faces}")
        if not (self.keep_seconds >= 0 and self.fetched_grace_s >= 0 and self.keep_bytes >= 0):
            raise ValueError("keep_seconds, fetched_grace_s and keep_bytes must be >= 0")
        object.__setattr__(self, "max_pixels", int(self.max_pixels))

    @property
    def max_body(self) -> int:
        """Most request-body bytes: :func:`~facesr.web.images.body_limit` of ``max_pixels``."""
        return body_limit(self.max_pixels)


#: The whole-photo fields of a done job's state, copied from its result.
FACE_FIELDS = ("faces", "faces_restored", "faces_skipped", "faces_over_cap", "faces_note")


def over_cap_words(restored: int, over: int) -> str | None:
    """The sentence for a photo whose smallest ``over`` faces were left out by the cap, or None (none were)."""
    if not over:
        return None
    return (
        f"This photo has more faces than this server restores in one photo: the {restored} largest were "
        f"restored and {over} smaller {'one was' if over == 1 else 'ones were'} left as they were."
    )


@functools.lru_cache(maxsize=1)
def example_pngs() -> tuple[tuple[str, str, bytes, int, int], ...]:
    """(id, title, PNG bytes, width, height) of each example face, made once per process."""
    return tuple(
        (e["id"], e["title"], encode_png(e["image"]), e["image"].shape[1], e["image"].shape[0]) for e in example_faces()
    )


class WebService:
    """The restorer and its job queue, with the limits of one server.

    ``photo_refusal``: (message, HTTP status) saying why whole-photo mode is off, or None when it is on.
    ``detector``: whole-photo mode's face detector (a :class:`SharedDetector`, loaded at its first job).
    """

    def __init__(self, restorer, config: ServerConfig, detector: SharedDetector, photo_refusal: tuple[str, int] | None):
        self.restorer, self.config, self.detector, self.photo_refusal = restorer, config, detector, photo_refusal
        self.scale = int(restorer.scale)
        self.queue = JobQueue(
            self.run,
            max_queued=config.max_queued,
            keep_finished=config.keep_finished,
            keep_seconds=config.keep_seconds,
            keep_bytes=config.keep_bytes,
            fetched_grace_s=config.fetched_grace_s,
        )

    # ------------------------------------------------------------------ the worker's side

    def run(self, job: Job, progress: Progress) -> dict:
        """Restore one job (in the queue's worker thread): ``{"png", "size": (w, h), "scale", faces...}``."""
        if job.mode == "photo":
            res = call_restore_photo(
                self.restorer.restore_photo,
                job.image,
                progress,
                detector=self.detector,
                upscale=self.config.photo_upscale,
                max_faces=self.config.max_faces,
            )
            out = res.image
            result: dict[str, object] = {"scale": res.upscale}
            if res.faces is not None and res.skipped is not None:
                over = res.over_cap or []
                result.update(
                    faces=face_boxes(res.faces, res.skipped, res.upscale, over_cap=over),
                    faces_restored=len(res.faces),
                    faces_skipped=len(res.skipped),
                    faces_over_cap=len(over),
                    faces_note=over_cap_words(len(res.faces), len(over)),
                )
        else:
            out = np.asarray(self.restorer.restore(job.image, progress=progress))
            result = {"scale": self.scale}
        return {**result, "png": encode_png(out), "size": (int(out.shape[1]), int(out.shape[0]))}

    def warm_up(self) -> None:
        """Restore a 64 x 64 gray image twice; the second run's speed seeds the time-left estimates."""
        probe = np.full((64, 64, 3), 128, np.uint8)
        self.restorer.restore(probe)  # first call: allocations, kernel selection
        t0 = time.perf_counter()
        self.restorer.restore(probe)
        self.queue.note_speed(time.perf_counter() - t0, 64 * 64)

    # ------------------------------------------------------------------ the routes' side

    async def submit(self, upload: Upload) -> Job:
        """Decode an upload (in a thread) and queue it; InputError / QueueFull when it cannot be taken."""
        if upload.mode == "photo" and self.photo_refusal:
            raise InputError(*self.photo_refusal)
        if not upload.data:
            raise InputError("No picture arrived: the upload was empty. Choose an image file and try again.")
        self.queue.check_room()  # refuse before spending time on decoding
        image = await asyncio.to_thread(decode_image, upload.data, self.config.max_pixels)
        h, w = image.shape[:2]
        photo = upload.mode == "photo"
        if photo and takes_detector(self.restorer.restore_photo):  # no face worth restoring fits: say so now
            refusal = too_small_for_photo_mode(image.shape, DEFAULT_MIN_FACE)
            if refusal is not None:
                raise refusal
        job = Job(
            image=image,
            name=upload.name,
            mode=upload.mode,
            unit="face" if photo else "tile",
            note=None if photo else face_note(w, h),
        )
        return self.queue.submit(job)

    def job_scale(self, job: Job) -> int:
        """Output pixels per input pixel of ``job`` (known for sure once it is done)."""
        if job.result:
            return int(job.result["scale"])
        return self.config.photo_upscale if job.mode == "photo" else self.scale

    def state(self, job: Job) -> JobState:
        """The job's state; the result's fields only once it is done."""
        snap = self.queue.snapshot(job)
        snap["download_name"] = download_name(job.name, self.job_scale(job))
        if job.state == DONE and job.result is not None:
            snap.update(output_size=list(job.result["size"]), scale=self.job_scale(job))
            snap.update({k: job.result[k] for k in FACE_FIELDS if k in job.result})
            snap.update({k: f"/jobs/{job.id}/{k}.png" for k in ("result", "bicubic", "input")})
        return JobState(**snap)

    def _missing(self, job_id: str) -> InputError:
        """410 for a job that was dropped (saying why), 404 for one that never was."""
        why = self.queue.gone(job_id)
        if why is not None:
            c = self.config
            return InputError(
                f"The result of this job is no longer on the server: it {why} (results are kept "
                f"{duration(c.fetched_grace_s)} after they are fetched and at most "
                f"{duration(c.keep_seconds)}). Restore the picture again.",
                410,
            )
        return InputError("There is no such job on the server.", 404)

    def job(self, job_id: str) -> Job:
        """A waiting, running or recently finished job; InputError 410 (dropped) or 404 (never was)."""
        job = self.queue.get(job_id)
        if job is None:
            raise self._missing(job_id)
        return job

    def finished_job(self, job_id: str) -> Job:
        """A job that is done and still kept; InputError 410 (dropped), 404 (never was) or 409 (no result).

        Its result counts as fetched from now on (:meth:`JobQueue.mark_fetched`)."""
        job = self.job(job_id)
        if job.state != DONE:
            raise InputError(f"This job has no result: it is {job.state}.", 409)
        self.queue.mark_fetched(job)
        return job

    def health(self) -> Health:
        return Health(
            model=self.config.model_name,
            device=str(getattr(self.restorer, "device", "cpu")),
            scale=self.scale,
            **self.queue.stats(),
        )

    def info(self) -> Info:
        c = self.config
        examples = [
            Example(id=i, title=t, url=f"/examples/{i}.png", width=w, height=h)
            for i, t, _, w, h in (example_pngs() if c.examples else ())
        ]
        return Info(
            scale=self.scale,
            max_pixels=c.max_pixels,
            max_side=math.isqrt(c.max_pixels),
            max_upload_bytes=c.max_body,
            max_queued=self.queue.max_queued,
            face_note_pixels=FACE_NOTE_PIXELS,
            face_note=FACE_NOTE_TEMPLATE,
            photo_mode=self.photo_refusal is None,
            photo_scale=c.photo_upscale,
            max_faces=c.max_faces,
            photo_suggest_side=PHOTO_SUGGEST_SIDE,
            formats=FORMAT_NAMES,
            examples=examples,
        )

    def example_png(self, example_id: str) -> bytes | None:
        """The PNG bytes of an example face, or None (no such example, or examples are off)."""
        for i, _, png, _, _ in example_pngs() if self.config.examples else ():
            if i == example_id:
                return png
        return None


async def get_service(request: Request) -> WebService:
    """The dependency that gives a route its app's :class:`WebService` (async: FastAPI runs it on the loop)."""
    return request.app.state.service
