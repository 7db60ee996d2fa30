"""The routes of ``facesr serve``: the page, the API's information routes, and the jobs.

Each route reaches the app's :class:`~facesr.web.service.WebService` through a dependency; the route
docstrings are the API's documentation (served at ``/docs``, the document itself at ``/openapi.json``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import cv2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..io.images import encode_png
from .images import InputError
from .jobs import DONE, FAILED, Job
from .models import Health, Info, JobState, job_line
from .responses import (
    CLIENT_GONE,
    content_disposition,
    docs_page,
    download_name,
    error_answers,
    text,
)
from .service import WebService, get_service
from .uploads import UPLOAD_OPENAPI, Upload, read_upload

log = logging.getLogger("facesr.web")

STATIC_DIR = Path(__file__).with_name("static")
STREAM_POLL_S = 0.1  # how often the /jobs stream looks at its job
STREAM_HEARTBEAT_S = 1.0  # a line at least this often, so a vanished client is noticed
NO_STORE = {"Cache-Control": "no-store"}
KEPT = {"Cache-Control": "private, max-age=600"}  # the browser may keep what the server drops
PNG_ANSWER = {"content": {"image/png": {}}, "description": "a PNG image"}

Service = Annotated[WebService, Depends(get_service)]


async def _upload(
    request: Request,
    service: Service,
    mode: Annotated[str, Query(description="face (default) or photo; a form's mode field wins")] = "face",
    name: Annotated[str, Query(description="file name of a raw-body upload")] = "image",
) -> Upload:
    c = service.config
    return await read_upload(request, c.max_body, c.upload_timeout_s, mode, name)


async def _job(job_id: str, service: Service) -> Job:
    return service.job(job_id)


async def _finished(job_id: str, service: Service) -> Job:
    return service.finished_job(job_id)


UploadIn = Annotated[Upload, Depends(_upload)]
AnyJob = Annotated[Job, Depends(_job)]
FinishedJob = Annotated[Job, Depends(_finished)]

pages = APIRouter()
api = APIRouter(tags=["server"])
jobs = APIRouter(tags=["jobs"])
UPLOAD_ERRORS = error_answers(400, 408, 413, 503)
JOB_ERRORS = error_answers(404, 410)
RESULT_ERRORS = error_answers(404, 409, 410)


# ----------------------------------------------------------------------------- the page


@pages.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )


@pages.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    return Response(status_code=204)


@pages.get("/docs", include_in_schema=False)
async def docs(request: Request) -> Response:
    return docs_page(request.app.openapi_url, "facesr serve: HTTP API")


@pages.get("/examples/{example_id}.png", tags=["server"], response_class=Response, responses={200: PNG_ANSWER})
async def example(example_id: str, service: Service) -> Response:
    """An example face offered by the page (see ``/api/info``): a PNG."""
    png = service.example_png(example_id)
    if png is None:
        raise StarletteHTTPException(404)
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


# ----------------------------------------------------------------------------- information


@api.get("/healthz")
async def healthz(service: Service, response: Response) -> Health:
    """The server is up: the model, its device and scale, and how many jobs run and wait."""
    response.headers.update(NO_STORE)
    return service.health()


@api.get("/api/info")
async def info(service: Service) -> Info:
    """The limits (pixels, bytes, queue), whole-photo mode and the example faces, for the page."""
    return service.info()


# ----------------------------------------------------------------------------- jobs


async def wait_for(job: Job, request: Request, service: WebService) -> bool:
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
            service.queue.cancel(job, "client disconnected")
    return ended.done()


def restored_png(job: Job, service: WebService) -> Response:
    """The answer of ``POST /restore`` for a finished job: the PNG and its ``X-Facesr-*`` headers."""
    if job.state == FAILED:
        return text(job.error_status, job.error or "Restoring failed on the server.")
    if job.state != DONE:
        return text(503, "The server stopped before restoring this picture. Try again in a moment.")
    service.queue.mark_fetched(job)  # delivered with this answer: kept only a short while for /jobs/{id}/*.png
    (h, w), (ow, oh) = job.image.shape[:2], job.result["size"]
    headers = {
        **NO_STORE,
        "Content-Disposition": content_disposition("inline", download_name(job.name, service.job_scale(job))),
        "X-Facesr-Input-Size": f"{w}x{h}",
        "X-Facesr-Output-Size": f"{ow}x{oh}",
        "X-Facesr-Seconds": f"{(job.finished or 0) - (job.started or 0):.3f}",
        "X-Facesr-Waited": f"{(job.started or 0) - job.created:.3f}",
        "X-Facesr-Job": job.id,
    }
    if "faces_restored" in job.result:
        headers["X-Facesr-Faces"] = str(job.result["faces_restored"])
        headers["X-Facesr-Faces-Skipped"] = str(job.result["faces_skipped"])
        headers["X-Facesr-Faces-Over-Cap"] = str(job.result.get("faces_over_cap", 0))
    if job.note:
        headers["X-Facesr-Note"] = job.note.replace("×", "x").encode("ascii", "ignore").decode()
    return Response(job.result["png"], media_type="image/png", headers=headers)


@jobs.post(
    "/restore",
    response_class=Response,
    openapi_extra=UPLOAD_OPENAPI,
    responses={
        **UPLOAD_ERRORS,
        200: {
            **PNG_ANSWER,
            "description": "the restored image (RGBA when the input has transparency); headers "
            "X-Facesr-Input-Size / X-Facesr-Output-Size (WxH), X-Facesr-Seconds (model time), X-Facesr-Waited "
            "(seconds queued), X-Facesr-Job, X-Facesr-Note (inputs much larger than a face crop), and in whole-photo "
            "mode X-Facesr-Faces / X-Facesr-Faces-Skipped / X-Facesr-Faces-Over-Cap (skipped because the photo had more "
            "faces than the server's max_faces, see /api/info)",
        },
    },
)
async def restore(request: Request, service: Service, upload: UploadIn) -> Response:
    """Restore one picture and answer with the PNG, once its turn has come.

    The pixels are exactly ``Restorer.restore`` of the decoded input (EXIF rotation applied, 16-bit
    scaled to 8-bit).  In whole-photo mode (``mode=photo``, offered when ``/api/info`` says
    ``photo_mode``) the faces are found, restored one by one and pasted back over the photo enlarged
    x2 (bicubic); at most ``max_faces`` faces (``/api/info``), the largest, are restored.  A client
    that disconnects cancels its job (dropped if waiting, stopped at the next tile if running).
    """
    job = await service.submit(upload)
    if not await wait_for(job, request, service):
        return Response(status_code=CLIENT_GONE)
    return restored_png(job, service)


async def job_lines(job: Job, service: WebService):
    """The ``POST /jobs`` stream: a JSON line per change of the job, at least one a second; its end cancels."""
    last_key, last_sent = None, 0.0
    try:
        while True:
            ended = job.is_finished
            line = job_line(service.state(job))
            key = (line["state"], line["position"], line["done"], line["total"])
            now = time.monotonic()
            if key != last_key or now - last_sent >= STREAM_HEARTBEAT_S or ended:
                yield (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
                last_key, last_sent = key, now
            if ended:
                return
            await asyncio.sleep(STREAM_POLL_S)
    finally:  # the client closed the stream (or the server stops): nobody wants this job any more
        if not job.is_finished:
            service.queue.cancel(job, "client closed the stream")


@jobs.post(
    "/jobs",
    response_class=StreamingResponse,
    openapi_extra=UPLOAD_OPENAPI,
    responses={
        **UPLOAD_ERRORS,
        200: {
            "description": "a stream of JobState objects, one JSON line per change (at least one a second); the "
            "X-Facesr-Job header names the job",
            "content": {"application/x-ndjson": {"schema": {"$ref": "#/components/schemas/JobState"}}},
        },
    },
)
async def submit(service: Service, upload: UploadIn) -> StreamingResponse:
    """Queue a picture and stream its progress; the last line (state done) has the URLs of the results.

    Same input as ``POST /restore``.  Closing the stream cancels the job.  This is what the page uses.
    """
    job = await service.submit(upload)
    return StreamingResponse(
        job_lines(job, service), media_type="application/x-ndjson", headers={**NO_STORE, "X-Facesr-Job": job.id}
    )


@jobs.get("/jobs/{job_id}", response_model_exclude_unset=True, responses=JOB_ERRORS)
async def job_state(job: AnyJob, service: Service, response: Response) -> JobState:
    """The job's state (410 once it is no longer kept: see ``GET /jobs/{job_id}/result.png``)."""
    response.headers.update(NO_STORE)
    return service.state(job)


@jobs.delete("/jobs/{job_id}", response_model_exclude_unset=True, responses=JOB_ERRORS)
async def cancel_job(job: AnyJob, service: Service, response: Response) -> JobState:
    """Cancel the job: a waiting one is dropped, a running one stops at its next tile.  Answers its state."""
    service.queue.cancel(job, "cancelled by the user")
    response.headers.update(NO_STORE)
    return service.state(job)


@jobs.post(
    "/jobs/{job_id}/cancel",
    response_model=JobState,
    response_model_exclude_unset=True,
    deprecated=True,
    responses=JOB_ERRORS,
)
async def cancel_job_post(job_id: str, service: Service, response: Response) -> JobState | Response:
    """Deprecated: use ``DELETE /jobs/{job_id}``, which this does.  Every answer has ``Deprecation: true``
    and a ``Link`` to the job's URL (``rel="successor-version"``)."""
    log.warning("POST /jobs/{id}/cancel is deprecated (job %r); use DELETE /jobs/{id}", job_id[:64])
    deprecation = {"Deprecation": "true", "Link": f'</jobs/{quote(job_id)}>; rel="successor-version"'}
    try:
        job = service.job(job_id)
    except InputError as exc:
        return text(exc.status, str(exc), deprecation)
    response.headers.update(deprecation)
    return await cancel_job(job, service, response)


@jobs.get("/jobs/{job_id}/result.png", response_class=Response, responses={**RESULT_ERRORS, 200: PNG_ANSWER})
async def job_result(
    job: FinishedJob,
    service: Service,
    download: Annotated[str | None, Query(description="any value: save as a file")] = None,
) -> Response:
    """The restored image of a finished job (409 while it is not done).

    A result is kept until a minute after it is first fetched (any of its three images), ten minutes
    at most, and while newer results leave room (the server's defaults); then its URLs answer 410."""
    name = download_name(job.name, service.job_scale(job))
    return Response(
        job.result["png"],
        media_type="image/png",
        headers={**KEPT, "Content-Disposition": content_disposition("attachment" if download else "inline", name)},
    )


@jobs.get("/jobs/{job_id}/bicubic.png", response_class=Response, responses={**RESULT_ERRORS, 200: PNG_ANSWER})
async def job_bicubic(job: FinishedJob) -> Response:
    """The input enlarged to the result's size by bicubic interpolation (cv2.INTER_CUBIC), for comparison."""
    ow, oh = job.result["size"]
    png = await asyncio.to_thread(lambda: encode_png(cv2.resize(job.image, (ow, oh), interpolation=cv2.INTER_CUBIC)))
    return Response(png, media_type="image/png", headers=KEPT)


@jobs.get("/jobs/{job_id}/input.png", response_class=Response, responses={**RESULT_ERRORS, 200: PNG_ANSWER})
async def job_input(job: FinishedJob) -> Response:
    """The decoded input of a finished job, as PNG."""
    png = await asyncio.to_thread(encode_png, job.image)
    return Response(png, media_type="image/png", headers=KEPT)


ROUTERS = (pages, api, jobs)
