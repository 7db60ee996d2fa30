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
from .jobs import DONE, Job, JobQueue, Progress
from .models import Example, Health, Info, JobState
from .photo import (
    PHOTO_SUGGEST_SIDE,
    PHOTO_UPSCALE,
    SharedDetector,
    call_restore_photo,
    face_boxes,
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
        keep_finished, keep_seconds: how many finished jobs (with their results) are kept, and how long.
        warmup: restore one 64 x 64 gray image at start, so the first user does not pay the model's
            start-up cost and the page can estimate the time left from the first job on.
        photo_upscale: output pixels per input pixel in whole-photo mode (1, 2 or 4).
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

    def __post_init__(self):
        if int(self.max_pixels) < 1:
            raise ValueError(f"max_pixels must be at least 1, got {self.max_pixels}")
        if self.upload_timeout_s <= 0:
            raise ValueError(f"upload_timeout_s must be > 0, got {self.upload_timeout_s}")
        object.__setattr__(self, "max_pixels", int(self.max_pixels))

    @property
    def max_body(self) -> int:
        """Most request-body bytes: :func:`~facesr.web.images.body_limit` of ``max_pixels``."""
        return body_limit(self.max_pixels)


@functools.lru_cache(maxsize=1)
def example_pngs() -> tuple[tuple[str, str, bytes, int, int], ...]:
    """(id, title, PNG bytes, width, height) of each example face, made once per process."""
    return tuple((e["id"], e["title"], encode_png(e["image"]), e["image"].shape[1], e["image"].shape[0])
                 for e in example_faces())


class WebService:
    """The restorer and its job queue, with the limits of one server.

    ``photo_refusal``: (message, HTTP status) saying why whole-photo mode is off, or None when it is on.
    ``detector``: whole-photo mode's face detector (a :class:`SharedDetector`, loaded at its first job).
    """

    def __init__(self, restorer, config: ServerConfig, detector: SharedDetector,
                 photo_refusal: tuple[str, int] | None):
        self.restorer, self.config, self.detector, self.photo_refusal = restorer, config, detector, photo_refusal
        self.scale = int(restorer.scale)
        self.queue = JobQueue(self.run, max_queued=config.max_queued, keep_finished=config.keep_finished,
                              keep_seconds=config.keep_seconds)

    # ------------------------------------------------------------------ the worker's side

    def run(self, job: Job, progress: Progress) -> dict:
        """Restore one job (in the queue's worker thread): ``{"png", "size": (w, h), "scale", faces...}``."""
        if job.mode == "photo":
            out, faces, skipped, up = call_restore_photo(self.restorer.restore_photo, job.image, progress,
                                                         detector=self.detector, upscale=self.config.photo_upscale)
            result = {"scale": up}
            if faces is not None:
                result.update(faces=face_boxes(faces, skipped, up), faces_restored=len(faces),
                              faces_skipped=len(skipped))
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
        job = Job(image=image, name=upload.name, mode=upload.mode, unit="face" if photo else "tile",
                  note=None if photo else face_note(w, h))
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
            snap.update({k: job.result[k] for k in ("faces", "faces_restored", "faces_skipped") if k in job.result})
            snap.update({k: f"/jobs/{job.id}/{k}.png" for k in ("result", "bicubic", "input")})
        return JobState(**snap)

    def job(self, job_id: str) -> Job:
        """A waiting, running or recently finished job; InputError 404 when there is none."""
        job = self.queue.get(job_id)
        if job is None:
            raise InputError("There is no such job on the server (finished jobs are kept for a few minutes).", 404)
        return job

    def finished_job(self, job_id: str) -> Job:
        """A job that is done and still kept; InputError 404 (gone) or 409 (no result)."""
        job = self.queue.get(job_id)
        if job is None:
            raise InputError("This result is no longer on the server (results are kept for a few minutes). "
                             "Restore the picture again.", 404)
        if job.state != DONE:
            raise InputError(f"This job has no result: it is {job.state}.", 409)
        return job

    def health(self) -> Health:
        return Health(model=self.config.model_name, device=str(getattr(self.restorer, "device", "cpu")),
                      scale=self.scale, **self.queue.stats())

    def info(self) -> Info:
        c = self.config
        examples = [Example(id=i, title=t, url=f"/examples/{i}.png", width=w, height=h)
                    for i, t, _, w, h in (example_pngs() if c.examples else ())]
        return Info(scale=self.scale, max_pixels=c.max_pixels, max_side=math.isqrt(c.max_pixels),
                    max_upload_bytes=c.max_body, max_queued=self.queue.max_queued, face_note_pixels=FACE_NOTE_PIXELS,
                    face_note=FACE_NOTE_TEMPLATE, photo_mode=self.photo_refusal is None,
                    photo_scale=c.photo_upscale, photo_suggest_side=PHOTO_SUGGEST_SIDE, formats=FORMAT_NAMES,
                    examples=examples)

    def example_png(self, example_id: str) -> bytes | None:
        """The PNG bytes of an example face, or None (no such example, or examples are off)."""
        for i, _, png, _, _ in (example_pngs() if self.config.examples else ()):
            if i == example_id:
                return png
        return None


async def get_service(request: Request) -> WebService:
    """The dependency that gives a route its app's :class:`WebService` (async: FastAPI runs it on the loop)."""
    return request.app.state.service

