"""The web app of ``facesr serve``: FastAPI routes over one :class:`~facesr.web.jobs.JobQueue`.

HTTP API
--------
``POST /restore``
    The image as the ``image`` field of a ``multipart/form-data`` body, or as the
    raw body (``Content-Type: image/...``, ``application/octet-stream`` or none).
    Waits its turn, then returns the restored image as PNG (RGB, or RGBA when the
    input has transparency).  The pixels are exactly ``Restorer.restore`` of the
    decoded input.  Headers: ``X-Facesr-Input-Size`` / ``X-Facesr-Output-Size``
    (``WxH``), ``X-Facesr-Seconds`` (model time), ``X-Facesr-Waited`` (seconds in
    the queue), ``X-Facesr-Note`` (only for inputs much larger than a face crop).
    A client that disconnects before its answer cancels its job (dropped if
    still waiting, stopped at the next tile if running).
    Whole-photo mode (``mode=photo`` as a form field or query parameter, offered when
    ``/api/info`` says ``photo_mode``): the faces are found, restored one by one and pasted
    back over the photo enlarged x2 (bicubic); headers ``X-Facesr-Faces`` (faces restored)
    and ``X-Facesr-Faces-Skipped`` (found but too small) are added.
``POST /jobs``
    Same input; answers at once with a stream of JSON lines
    (``application/x-ndjson``), one per change of the job and at least one a
    second: ``{"id", "state": queued|running|done|failed|cancelled, "position":
    jobs ahead, "done"/"total": tiles or faces, "unit": "tile"|"face", "elapsed_s", "eta_s",
    "input_size": [w, h], "mode", "download_name", "note", "error"}``; the last one (state done)
    adds ``"result"``, ``"bicubic"``, ``"input"`` (URLs of the PNGs), ``"output_size"`` and
    ``"scale"`` (output pixels per input pixel), and in whole-photo mode ``"faces"`` (see
    :func:`facesr.web.photo.face_boxes`: boxes in output pixels), ``"faces_restored"`` and
    ``"faces_skipped"``.  Closing the stream cancels the job.  This is what the page uses.
``GET /jobs/{id}``, ``DELETE /jobs/{id}`` (or ``POST /jobs/{id}/cancel``)
    The job's state as one JSON object; DELETE cancels it.
``GET /jobs/{id}/result.png``, ``/bicubic.png``, ``/input.png``
    A finished job's restored image, its bicubic upscale to the same size (cv2.INTER_CUBIC) and
    the decoded input, kept for 10 minutes (the last 8 jobs).
``GET /healthz``
    ``{"status": "ok", "model", "device", "scale", "running", "queued", "max_queued"}``.
``GET /api/info``
    Limits and examples for the page.  ``GET /`` is the page; ``/static/*`` its files.

Errors are ``text/plain``, one line in plain words: 400 bad input (not an image,
empty, no ``image`` field), 413 too large (body over the byte cap, or more than
``max_pixels`` pixels, read from the header before decoding), 408 the upload
stalled (no data for ``upload_timeout_s`` seconds), 503 queue full (``max_queued``
jobs already waiting; ``Retry-After`` set) or whole-photo mode asked of a server
without the face detector, 404/405 wrong address or method, 500
an unexpected failure (details only in the server log).
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import re
import time
import unicodedata
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles

from ..io.images import encode_png
from .images import (DEFAULT_MAX_PIXELS, FACE_NOTE_PIXELS, FACE_NOTE_TEMPLATE, FORMAT_NAMES, InputError,
                     body_limit, decode_image, example_faces, face_note, too_many_bytes)
from .jobs import DONE, FAILED, Job, JobQueue, QueueFull
from .photo import (NO_DETECTOR, NO_PHOTO_MODE, PHOTO_SUGGEST_SIDE, PHOTO_UPSCALE, SharedDetector, call_restore_photo,
                    default_detector_missing, face_boxes)

log = logging.getLogger("facesr.web")

STATIC_DIR = Path(__file__).with_name("static")
FIELD = "image"
MODES = ("face", "photo")
CSP = ("default-src 'none'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
STREAM_POLL_S = 0.1       # how often the /jobs stream looks at its job
STREAM_HEARTBEAT_S = 1.0  # a line at least this often, so a vanished client is noticed
RETRY_AFTER_S = 30


class ClientGone(Exception):
    """The client closed the connection before its request was complete."""


# ----------------------------------------------------------------------------- helpers

def download_name(name: str, scale: int) -> str:
    """``<stem>_facesr_x<scale>.png`` for an uploaded file name (any path stripped, odd characters dropped)."""
    base = re.split(r"[\\/]", str(name or ""))[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
    stem = "".join(c for c in unicodedata.normalize("NFC", stem)
                   if unicodedata.category(c)[0] in "LN" or c in "-_ ()").strip()[:80]
    return f"{stem or 'image'}_facesr_x{scale}.png"


def _content_disposition(kind: str, filename: str) -> str:
    ascii_name = filename.encode("ascii", "ignore").decode() or "image.png"
    ascii_name = ascii_name.replace('"', "")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def _text(status: int, message: str, headers: dict | None = None) -> PlainTextResponse:
    line = " ".join(str(message).split()) or "error"
    return PlainTextResponse(line + "\n", status, headers={"Cache-Control": "no-store", **(headers or {})})


@functools.lru_cache(maxsize=1)
def _example_pngs() -> tuple[tuple[str, str, bytes, int, int], ...]:
    return tuple((e["id"], e["title"], encode_png(e["image"]), e["image"].shape[1], e["image"].shape[0])
                 for e in example_faces())


class _SecurityHeaders:
    """Pure ASGI middleware adding nosniff / no-referrer to every response (and CSP to HTML)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ----------------------------------------------------------------------------- the app

def create_app(restorer, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_queued: int = 8,
               upload_timeout_s: float = 20.0, model_name: str = "the shipped model", examples: bool = True,
               keep_finished: int = 8, keep_seconds: float = 600.0, warmup: bool = False, detector=None,
               photo_upscale: int = PHOTO_UPSCALE) -> FastAPI:
    """Build the FastAPI app around one model.

    Args:
        restorer: a :class:`facesr.inference.Restorer` (anything with ``scale`` and
            ``restore(image, progress=None)``).  If it has ``restore_photo`` and a face detector
            is at hand, jobs may ask for ``mode=photo`` (whole-photo restoration); otherwise that
            mode is refused in plain words (and ``/api/info`` says ``"photo_mode": false``).
        max_pixels: most input pixels (width x height) accepted; the request body may be at
            most :func:`~facesr.web.images.body_limit` ``(max_pixels)`` bytes.
        max_queued: most jobs waiting behind the running one; more get HTTP 503.
        upload_timeout_s: seconds an upload may go without sending data before HTTP 408 (the
            whole upload may take at most ten times this).
        model_name: shown by ``/healthz``.
        examples: offer the example faces (made from the bundled face at first use, ~0.1 s).
        keep_finished, keep_seconds: how many finished jobs (with their results) are kept, and how long.
        warmup: restore one 64 x 64 gray image now, so the first user does not pay the model's start-up
            cost and the page can estimate the time left from the first job on.
        detector: the face detector of whole-photo mode (callable ``rgb -> list[facesr.faces.Face]``);
            None = dlib's HOG detector from the ``faces`` extra, loaded at the first whole-photo job
            (whole-photo mode is off when that extra is missing).
        photo_upscale: output pixels per input pixel in whole-photo mode (1, 2 or 4).
    """
    if int(max_pixels) < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    if upload_timeout_s <= 0:
        raise ValueError(f"upload_timeout_s must be > 0, got {upload_timeout_s}")
    max_pixels = int(max_pixels)
    scale = int(restorer.scale)
    max_body = body_limit(max_pixels)
    photo_refusal = None  # why whole-photo mode is off (shown to users who ask for it), None when on
    if not callable(getattr(restorer, "restore_photo", None)):
        photo_refusal = (NO_PHOTO_MODE, 400)
    elif detector is None:
        missing = default_detector_missing()
        if missing:
            log.warning("whole-photo mode is off: %s", missing)
            photo_refusal = (NO_DETECTOR, 503)
    photo_mode = photo_refusal is None
    faces_detector = SharedDetector(detector)

    def run(job: Job, progress):
        if job.mode == "photo":
            out, faces, skipped, up = call_restore_photo(restorer.restore_photo, job.image, progress,
                                                         detector=faces_detector, upscale=photo_upscale)
            result = {"scale": up}
            if faces is not None:
                result.update(faces=face_boxes(faces, skipped, up), faces_restored=len(faces),
                              faces_skipped=len(skipped))
        else:
            out = np.asarray(restorer.restore(job.image, progress=progress))
            result = {"scale": scale}
        return {**result, "png": encode_png(out), "size": (int(out.shape[1]), int(out.shape[0]))}

    def job_scale(job: Job) -> int:
        return int(job.result["scale"]) if job.result else (photo_upscale if job.mode == "photo" else scale)

    queue = JobQueue(run, max_queued=max_queued, keep_finished=keep_finished, keep_seconds=keep_seconds)
    if warmup:
        probe = np.full((64, 64, 3), 128, np.uint8)
        restorer.restore(probe)  # first call: allocations, kernel selection
        t0 = time.perf_counter()
        restorer.restore(probe)
        queue.note_speed(time.perf_counter() - t0, 64 * 64)

    @asynccontextmanager
    async def lifespan(app):
        yield
        queue.close()

    app = FastAPI(title="facesr", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.queue = queue
    app.state.restorer = restorer
    app.state.detector = faces_detector  # whole-photo mode's detector (loaded at its first job)
    app.add_middleware(_SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ------------------------------------------------------------------ errors

    @app.exception_handler(InputError)
    async def _input_error(request, exc: InputError):
        return _text(exc.status, str(exc))

    @app.exception_handler(QueueFull)
    async def _queue_full(request, exc: QueueFull):
        return _text(503, str(exc), {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(ClientGone)
    async def _client_gone(request, exc):
        return Response(status_code=499)  # nobody is listening; for the log only

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        path = request.url.path
        if exc.status_code == 404:
            return _text(404, f"There is nothing at {path}. Open / for the restore page; images go to POST /restore.")
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow")
            return _text(405, f"{path} does not take {request.method} requests.", {"Allow": allow} if allow else None)
        return _text(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _text(500, "Something went wrong on the server. The server's log has the details.")

    # ------------------------------------------------------------------ input

    async def read_body(request: Request) -> bytes:
        """The request body, at most ``max_body`` bytes, with an idle and a total time limit."""
        raw = request.headers.get("content-length")
        if raw is not None:
            try:
                declared = int(raw)
                if declared < 0:
                    raise ValueError
            except ValueError:
                raise InputError("The request's Content-Length header is not a number.") from None
            if declared > max_body:
                raise too_many_bytes(declared, max_body)
        chunks, total = [], 0
        deadline = time.monotonic() + 10 * upload_timeout_s
        stream = request.stream().__aiter__()
        while True:
            wait = min(upload_timeout_s, deadline - time.monotonic())
            try:
                if wait <= 0:
                    raise asyncio.TimeoutError
                chunk = await asyncio.wait_for(stream.__anext__(), wait)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise InputError(f"The upload stalled: no data arrived for {upload_timeout_s:g} seconds (or it "
                                 f"took too long in all). Check the connection and try again.", 408) from None
            except ClientDisconnect:
                raise ClientGone() from None
            total += len(chunk)
            if total > max_body:
                raise too_many_bytes(None, max_body)
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_input(request: Request) -> tuple[bytes, str, str]:
        """(image bytes, file name, mode) from a multipart form or a raw body."""
        body = await read_body(request)
        ctype = request.headers.get("content-type", "")
        main = ctype.split(";")[0].strip().lower()
        mode = request.query_params.get("mode", "face")
        name = request.query_params.get("name", "image")
        if main == "multipart/form-data":
            async def once():
                yield body

            try:
                form = await MultiPartParser(Headers({"content-type": ctype}), once(), max_files=4,
                                             max_fields=16).parse()
            except MultiPartException:
                raise InputError(f"The form could not be read. Send the picture as the '{FIELD}' field of a "
                                 f"multipart/form-data form.") from None
            try:
                item = form.get(FIELD)
                if item is None:
                    raise InputError(f"The form has no '{FIELD}' field. Send the picture as the '{FIELD}' field.")
                mode = str(form.get("mode") or mode)
                if isinstance(item, UploadFile):
                    name = item.filename or name
                    data = await item.read()
                else:
                    data = str(item).encode("utf-8")
            finally:
                await form.close()
        elif not main or main.startswith("image/") or main == "application/octet-stream":
            data = body
        else:
            raise InputError(f"This server takes a picture as a multipart/form-data form (field '{FIELD}') or "
                             f"as the raw request body with an image Content-Type, not {main}.")
        if mode not in MODES:
            raise InputError("The mode must be 'face' or 'photo'.")
        if mode == "photo" and photo_refusal:
            raise InputError(*photo_refusal)
        if not data:
            raise InputError("No picture arrived: the upload was empty. Choose an image file and try again.")
        return data, name, mode

    async def new_job(request: Request) -> Job:
        data, name, mode = await read_input(request)
        queue.check_room()  # refuse before spending time on decoding
        image = await asyncio.to_thread(decode_image, data, max_pixels)
        h, w = image.shape[:2]
        job = Job(image=image, name=name, mode=mode, unit="face" if mode == "photo" else "tile",
                  note=face_note(w, h) if mode == "face" else None)
        return queue.submit(job)

    def job_json(job: Job) -> dict:
        snap = queue.snapshot(job)
        snap["download_name"] = download_name(job.name, job_scale(job))
        if job.state == DONE and job.result is not None:
            snap["output_size"] = list(job.result["size"])
            snap["scale"] = job_scale(job)
            for k in ("faces", "faces_restored", "faces_skipped"):
                if k in job.result:
                    snap[k] = job.result[k]
            for k, f in (("result", "result"), ("bicubic", "bicubic"), ("input", "input")):
                snap[k] = f"/jobs/{job.id}/{f}.png"
        return snap

    async def wait_for(job: Job, request: Request) -> bool:
        """Wait until ``job`` ends (True) or the client disconnects (False; the job is then cancelled)."""
        loop = asyncio.get_running_loop()
        ended = loop.create_future()

        def wake(_job):
            loop.call_soon_threadsafe(lambda: ended.done() or ended.set_result(True))

        async def disconnected():
            while (await request.receive())["type"] != "http.disconnect":
                pass

        job.add_done_callback(wake)
        gone = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({ended, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not ended.done():
                queue.cancel(job, "client disconnected")
        return ended.done()

    def finished_job(job_id: str) -> Job:
        job = queue.get(job_id)
        if job is None:
            raise InputError("This result is no longer on the server (results are kept for a few minutes). "
                             "Restore the picture again.", 404)
        if job.state != DONE:
            raise InputError(f"This job has no result: it is {job.state}.", 409)
        return job

    # ------------------------------------------------------------------ routes

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)

    @app.get("/healthz")
    async def healthz():
        return JSONResponse({"status": "ok", "model": model_name, "device": str(getattr(restorer, "device", "cpu")),
                             "scale": scale, **queue.stats()}, headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    async def info():
        side = math.isqrt(max_pixels)
        ex = [{"id": i, "title": t, "url": f"/examples/{i}.png", "width": w, "height": h}
              for i, t, _, w, h in (_example_pngs() if examples else ())]
        return {"scale": scale, "max_pixels": max_pixels, "max_side": side, "max_upload_bytes": max_body,
                "max_queued": queue.max_queued, "face_note_pixels": FACE_NOTE_PIXELS, "face_note": FACE_NOTE_TEMPLATE,
                "photo_mode": photo_mode, "photo_scale": photo_upscale, "photo_suggest_side": PHOTO_SUGGEST_SIDE,
                "formats": FORMAT_NAMES, "examples": ex}

    @app.get("/examples/{example_id}.png")
    async def example(example_id: str):
        for i, _, png, _, _ in (_example_pngs() if examples else ()):
            if i == example_id:
                return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})
        raise StarletteHTTPException(404)

    @app.post("/restore")
    async def restore(request: Request):
        job = await new_job(request)
        if not await wait_for(job, request):
            return Response(status_code=499)
        if job.state == FAILED:
            return _text(500, job.error or "Restoring failed on the server.")
        if job.state != DONE:
            return _text(503, "The server stopped before restoring this picture. Try again in a moment.")
        w, h = job.image.shape[1], job.image.shape[0]
        ow, oh = job.result["size"]
        headers = {
            "Cache-Control": "no-store",
            "Content-Disposition": _content_disposition("inline", download_name(job.name, job_scale(job))),
            "X-Facesr-Input-Size": f"{w}x{h}", "X-Facesr-Output-Size": f"{ow}x{oh}",
            "X-Facesr-Seconds": f"{(job.finished or 0) - (job.started or 0):.3f}",
            "X-Facesr-Waited": f"{(job.started or 0) - job.created:.3f}",
            "X-Facesr-Job": job.id,
        }
        if "faces_restored" in job.result:
            headers["X-Facesr-Faces"] = str(job.result["faces_restored"])
            headers["X-Facesr-Faces-Skipped"] = str(job.result["faces_skipped"])
        if job.note:
            headers["X-Facesr-Note"] = job.note.replace("×", "x").encode("ascii", "ignore").decode()
        return Response(job.result["png"], media_type="image/png", headers=headers)

    @app.post("/jobs")
    async def submit(request: Request):
        job = await new_job(request)

        async def lines():
            last_key, last_sent = None, 0.0
            try:
                while True:
                    ended = job.is_finished
                    snap = job_json(job)
                    key = (snap["state"], snap["position"], snap["done"], snap["total"])
                    now = time.monotonic()
                    if key != last_key or now - last_sent >= STREAM_HEARTBEAT_S or ended:
                        yield (json.dumps(snap, ensure_ascii=False) + "\n").encode("utf-8")
                        last_key, last_sent = key, now
                    if ended:
                        return
                    await asyncio.sleep(STREAM_POLL_S)
            finally:  # the client closed the stream (or the server stops): nobody wants this job any more
                if not job.is_finished:
                    queue.cancel(job, "client closed the stream")

        return StreamingResponse(lines(), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-store", "X-Facesr-Job": job.id})

    def _job_or_404(job_id: str) -> Job:
        job = queue.get(job_id)
        if job is None:
            raise InputError("There is no such job on the server (finished jobs are kept for a few minutes).", 404)
        return job

    @app.get("/jobs/{job_id}")
    async def job_status(job_id: str):
        return JSONResponse(job_json(_job_or_404(job_id)), headers={"Cache-Control": "no-store"})

    @app.delete("/jobs/{job_id}")
    async def job_cancel(job_id: str):
        job = _job_or_404(job_id)
        queue.cancel(job, "cancelled by the user")
        return JSONResponse(job_json(job), headers={"Cache-Control": "no-store"})

    @app.post("/jobs/{job_id}/cancel")
    async def job_cancel_post(job_id: str):
        return await job_cancel(job_id)

    @app.get("/jobs/{job_id}/result.png")
    async def job_result(job_id: str, request: Request):
        job = finished_job(job_id)
        kind = "attachment" if request.query_params.get("download") else "inline"
        return Response(job.result["png"], media_type="image/png", headers={
            "Cache-Control": "private, max-age=600",
            "Content-Disposition": _content_disposition(kind, download_name(job.name, job_scale(job)))})

    @app.get("/jobs/{job_id}/bicubic.png")
    async def job_bicubic(job_id: str):
        job = finished_job(job_id)
        ow, oh = job.result["size"]  # the plain enlargement to the restored image's size, for the slider
        png = await asyncio.to_thread(
            lambda: encode_png(cv2.resize(job.image, (ow, oh), interpolation=cv2.INTER_CUBIC)))
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})

    @app.get("/jobs/{job_id}/input.png")
    async def job_input(job_id: str):
        job = finished_job(job_id)
        png = await asyncio.to_thread(encode_png, job.image)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})

    return app
