"""The web app of ``facesr serve``: :func:`create_app` builds FastAPI routes over one job queue.

The HTTP API documents itself: open ``/docs`` on a running server (the OpenAPI document is at
``/openapi.json``).  In short: ``POST /restore`` answers with the restored PNG, ``POST /jobs`` streams
the job's progress as JSON lines (what the page uses), ``GET``/``DELETE /jobs/{id}`` read or cancel a
job, ``GET /healthz`` and ``/api/info`` describe the server.  Errors are one line of plain text
(:mod:`facesr.web.responses`).  Modules: :mod:`.routes`, :mod:`.service`, :mod:`.uploads`, :mod:`.models`.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from .. import __version__
from .photo import (
    NO_DETECTOR,
    NO_PHOTO_MODE,
    SharedDetector,
    default_detector_missing,
)
from .responses import (  # noqa: F401  (download_name re-exported)
    SecurityHeaders,
    add_error_handlers,
    download_name,
    openapi_without_422,
)
from .routes import ROUTERS, STATIC_DIR
from .service import ServerConfig, WebService

log = logging.getLogger("facesr.web")


def photo_refusal(restorer, detector) -> tuple[str, int] | None:
    """Why whole-photo mode is off, as (message for users, HTTP status), or None when it is on."""
    if not callable(getattr(restorer, "restore_photo", None)):
        return NO_PHOTO_MODE, 400
    missing = default_detector_missing() if detector is None else None
    if missing:
        log.warning("whole-photo mode is off: %s", missing)
        return NO_DETECTOR, 503
    return None


#: Seconds a running job gets to stop at its next tile when the server stops (then it is answered as cancelled).
STOP_GRACE_S = 0.5


@asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    app.state.service.queue.close(STOP_GRACE_S)  # at once if facesr.web.server already stopped the jobs


def create_app(restorer, *, detector=None, **options: Any) -> FastAPI:
    """Build the FastAPI app around one model.

    ``restorer``: a :class:`facesr.inference.Restorer` (anything with ``scale`` and ``restore(image,
    progress=None)``); with ``restore_photo`` and a face detector, jobs may ask for ``mode=photo``.
    ``detector``: whole-photo mode's face detector (``rgb -> list[facesr.faces.Face]``); None = dlib's
    HOG detector of the ``faces`` extra, loaded at the first whole-photo job.  ``options``: the fields of
    :class:`~facesr.web.service.ServerConfig` (``max_pixels``, ``max_queued``, ``max_faces``, ...); an
    unknown one is a TypeError.
    """
    config = ServerConfig(**options)
    service = WebService(restorer, config, SharedDetector(detector), photo_refusal(restorer, detector))
    if config.warmup:
        service.warm_up()
    app = FastAPI(
        title="facesr serve",
        version=__version__,
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
        description="Blind face super-resolution x4: upload a face crop (or a whole photo), get it "
        "restored. Errors are one line of plain text.",
    )
    app.state.service = service
    app.state.queue, app.state.restorer, app.state.detector = service.queue, restorer, service.detector
    app.openapi = lambda: openapi_without_422(app)  # type: ignore[method-assign]
    add_error_handlers(app)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app
