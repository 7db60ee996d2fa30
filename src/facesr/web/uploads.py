"""Reading an upload: the request body with a byte cap and time limits, then the picture out of it.

The picture comes as the ``image`` field of a ``multipart/form-data`` form (parsed by Starlette's
public :meth:`Request.form`, fed the body already read here) or as the raw body.  Errors are
:class:`~facesr.web.images.InputError` with one line in plain words (400, 408, 413).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

from .images import InputError, too_many_bytes

FIELD = "image"
MODES = ("face", "photo")
MAX_FORM_FILES, MAX_FORM_FIELDS = 4, 16


class ClientGone(Exception):
    """The client closed the connection before its request was complete."""


@dataclass
class Upload:
    """What a client sent: the image file's bytes, its name and the mode asked for ("face" or "photo")."""

    data: bytes
    name: str
    mode: str


def declared_length(request: Request, max_body: int) -> int | None:
    """The Content-Length header in bytes (None without one); 400 when not a number, 413 over ``max_body``."""
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        declared = int(raw)
        if declared < 0:
            raise ValueError
    except ValueError:
        raise InputError("The request's Content-Length header is not a number.") from None
    if declared > max_body:
        raise too_many_bytes(declared, max_body)
    return declared


async def read_body(request: Request, max_body: int, timeout_s: float) -> bytes:
    """The request body, at most ``max_body`` bytes; 408 after ``timeout_s`` seconds without data
    (or ten times that in all), 413 past the cap, :class:`ClientGone` when the client hangs up."""
    declared_length(request, max_body)
    chunks, total = [], 0
    deadline = time.monotonic() + 10 * timeout_s
    stream = request.stream().__aiter__()
    while True:
        wait = min(timeout_s, deadline - time.monotonic())
        try:
            if wait <= 0:
                raise asyncio.TimeoutError
            chunk = await asyncio.wait_for(stream.__anext__(), wait)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise InputError(
                f"The upload stalled: no data arrived for {timeout_s:g} seconds (or it "
                f"took too long in all). Check the connection and try again.",
                408,
            ) from None
        except ClientDisconnect:
            raise ClientGone() from None
        total += len(chunk)
        if total > max_body:
            raise too_many_bytes(None, max_body)
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_form(request: Request, body: bytes) -> FormData:
    """The multipart form in ``body`` (already read and capped), parsed by Starlette's public ``Request.form``.

    ``request``'s own stream is spent, so a twin request that replays ``body`` is parsed instead.
    """
    replayed = False

    async def replay() -> dict:
        nonlocal replayed
        if replayed:  # never reached: the form parser stops at the end of the body
            return {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)
    except HTTPException:  # Starlette's answer to a malformed form (400)
        raise InputError(
            f"The form could not be read. Send the picture as the '{FIELD}' field of a multipart/form-data form."
        ) from None


async def picture_from_form(form: FormData, name: str, mode: str) -> Upload:
    """The ``image`` field (a file, or text taken as its UTF-8 bytes) and the ``mode`` field of a form."""
    try:
        item = form.get(FIELD)
        if item is None:
            raise InputError(f"The form has no '{FIELD}' field. Send the picture as the '{FIELD}' field.")
        mode = str(form.get("mode") or mode)
        if isinstance(item, UploadFile):
            return Upload(await item.read(), item.filename or name, mode)
        return Upload(str(item).encode("utf-8"), name, mode)
    finally:
        await form.close()


async def read_upload(
    request: Request, max_body: int, timeout_s: float, mode: str = "face", name: str = "image"
) -> Upload:
    """The picture of a multipart form or raw body; ``mode`` and ``name`` (query parameters) are defaults
    that the form's ``mode`` field and the file's name override.  400 for a mode other than face/photo."""
    body = await read_body(request, max_body, timeout_s)
    ctype = request.headers.get("content-type", "")
    main = ctype.split(";")[0].strip().lower()
    if main == "multipart/form-data":
        upload = await picture_from_form(await parse_form(request, body), name, mode)
    elif not main or main.startswith("image/") or main == "application/octet-stream":
        upload = Upload(body, name, mode)
    else:
        raise InputError(
            f"This server takes a picture as a multipart/form-data form (field '{FIELD}') or "
            f"as the raw request body with an image Content-Type, not {main}."
        )
    if upload.mode not in MODES:
        raise InputError("The mode must be 'face' or 'photo'.")
    return upload


#: The request body of ``POST /restore`` and ``POST /jobs``, for the OpenAPI document (the body is read by hand).
UPLOAD_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "the picture (PNG, JPEG, WebP, BMP, TIFF, GIF)",
                        },
                        "mode": {
                            "type": "string",
                            "enum": list(MODES),
                            "default": "face",
                            "description": "face: the picture is one face crop; photo: find and restore every face",
                        },
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
