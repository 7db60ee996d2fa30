"""How ``facesr serve`` answers: plain-text errors, file names, security headers and the /docs page's policy.

Errors are ``text/plain``, one line in plain words, never a traceback: 400 bad input (including a
photo the face detector cannot search), 404 wrong address, 405 wrong method, 408 stalled upload, 409
a job without a result, 410 a result no longer kept, 413 over the cap, 503 queue full (with
``Retry-After``), too many connections, or whole-photo mode unavailable, 500 an unexpected failure
(details only in the server log).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import unicodedata
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .images import InputError
from .jobs import QueueFull
from .uploads import ClientGone

log = logging.getLogger("facesr.web")

#: The Content-Security-Policy of every answer but /docs: nothing but this server's own files.
CSP = (
    "default-src 'none'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
RETRY_AFTER_S = 30
#: The 499 status of an answer nobody receives (the client hung up); it only shows in logs.
CLIENT_GONE = 499
#: What each plain-text error answer means, for the OpenAPI document (see :func:`error_answers`).
ERROR_MEANINGS = {
    400: "bad input: not a readable image, empty, no 'image' field, unknown mode",
    404: "no such job: it never existed",
    408: "the upload stalled",
    409: "the job has no result: it is not done (queued, running, failed or cancelled)",
    410: "the job's result is gone: fetched more than a minute ago, ended too long ago, or made room for newer ones",
    413: "over the cap: more bytes, or more pixels (read from the header), than the server takes",
    503: "the queue is full (Retry-After is set), or whole-photo mode is not available",
}


def error_answers(*codes: int) -> dict:
    """The OpenAPI ``responses`` entries of these plain-text errors."""
    return {
        code: {"description": ERROR_MEANINGS[code], "content": {"text/plain": {"schema": {"type": "string"}}}}
        for code in codes
    }


def download_name(name: str, scale: int) -> str:
    """``<stem>_facesr_x<scale>.png`` for an uploaded file name (any path stripped, odd characters dropped)."""
    base = re.split(r"[\\/]", str(name or ""))[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
    stem = "".join(
        c for c in unicodedata.normalize("NFC", stem) if unicodedata.category(c)[0] in "LN" or c in "-_ ()"
    ).strip()[:80]
    return f"{stem or 'image'}_facesr_x{scale}.png"


def content_disposition(kind: str, filename: str) -> str:
    """A Content-Disposition value (``inline`` or ``attachment``) with an ASCII and a UTF-8 file name."""
    ascii_name = filename.encode("ascii", "ignore").decode() or "image.png"
    ascii_name = ascii_name.replace('"', "")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def text(status: int, message: str, headers: dict | None = None) -> PlainTextResponse:
    """A one-line ``text/plain`` answer (whitespace folded), never cached."""
    line = " ".join(str(message).split()) or "error"
    return PlainTextResponse(line + "\n", status, headers={"Cache-Control": "no-store", **(headers or {})})


class SecurityHeaders:
    """Pure ASGI middleware adding nosniff / no-referrer to every response, and :data:`CSP` unless it has one."""

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


def docs_page(openapi_url: str, title: str) -> HTMLResponse:
    """FastAPI's Swagger UI page with a Content-Security-Policy made for it.

    Swagger UI comes from its CDN (cdn.jsdelivr.net; the page stays blank offline) and starts from one
    inline script, allowed by its hash; its inline styles need ``'unsafe-inline'`` for styles only.
    """
    page = get_swagger_ui_html(openapi_url=openapi_url, title=title, swagger_favicon_url="/favicon.ico")
    html = bytes(page.body).decode("utf-8")
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    )
    cdn = "https://cdn.jsdelivr.net"
    csp = (
        f"default-src 'none'; script-src 'self' {cdn} {hashes}; style-src 'self' {cdn} 'unsafe-inline'; "
        f"img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})


# ----------------------------------------------------------------------------- error handlers


async def _input_error(request: Request, exc: InputError) -> Response:
    return text(exc.status, str(exc))


async def _queue_full(request: Request, exc: QueueFull) -> Response:
    return text(503, str(exc), {"Retry-After": str(RETRY_AFTER_S)})


async def _client_gone(request: Request, exc: ClientGone) -> Response:
    return Response(status_code=CLIENT_GONE)  # nobody is listening; for the log only


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    path = request.url.path
    if exc.status_code == 404:
        return text(404, f"There is nothing at {path}. Open / for the restore page; images go to POST /restore.")
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow")
        return text(405, f"{path} does not take {request.method} requests.", {"Allow": allow} if allow else None)
    return text(exc.status_code, str(exc.detail))


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    # Every parameter is a plain string, so this should not happen; if it does, it is bad input.
    errors = exc.errors()
    where = ".".join(str(x) for x in errors[0].get("loc", ())) if errors else "the request"
    return text(400, f"The request is not valid ({where}).")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return text(500, "Something went wrong on the server. The server's log has the details.")


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error as one line of plain text (see the module docstring)."""
    app.add_exception_handler(InputError, _input_error)  # type: ignore[arg-type]
    app.add_exception_handler(QueueFull, _queue_full)  # type: ignore[arg-type]
    app.add_exception_handler(ClientGone, _client_gone)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


def openapi_without_422(app: FastAPI) -> dict:
    """The app's OpenAPI document, without FastAPI's automatic 422 answers (they never happen here: errors
    are plain text, 400 for bad input).  Built once, on the first request for it."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            doc.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = doc
    return app.openapi_schema
