"""Running the app on uvicorn with every connection bounded in number, header size and time.

uvicorn (0.55 here) bounds a request's body only through the app and has no timeout for request
*headers*: a client that sends ``POST / HTTP/1.1\\r\\nX-A: `` and then nothing holds its connection
forever, and so do thousands of them.  :func:`uvicorn_config` runs the app on
:class:`BoundedH11Protocol`, uvicorn's own h11 protocol with two additions:

* a header timeout: from the moment a connection opens (or a keep-alive connection starts a new
  request) the client has ``header_timeout_s`` seconds to send the complete request headers; after
  that it gets ``408`` and the connection is closed;
* a connection cap: a connection beyond ``max_connections`` open at once gets ``503`` (with
  ``Retry-After``) and is closed before anything is read;
* a send timeout: a client that stops reading an answer (the kernel's and asyncio's buffers full, so
  the transport asked uvicorn to pause writing) and does not read again for ``send_timeout_s`` seconds
  has its connection aborted, its buffered bytes dropped (uvicorn itself would wait forever).

The rest comes from uvicorn's settings: ``h11_max_incomplete_event_size`` caps the header bytes
(more is answered 400), ``limit_concurrency`` answers 503 past the cap as a backstop, and
``timeout_keep_alive`` closes idle keep-alive connections.  Uploads are bounded by the app
(:mod:`facesr.web.uploads`: a byte cap, and 408 when the body stalls).

:class:`StoppingServer` stops the jobs as soon as SIGTERM or SIGINT arrives, so requests waiting for
a job are answered (503) at once and uvicorn's graceful shutdown does not wait for a forward pass.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

#: Seconds a client has to send its complete request headers.
DEFAULT_HEADER_TIMEOUT_S = 10.0
#: Most connections open at once; more are answered 503 at once.
DEFAULT_MAX_CONNECTIONS = 64
#: Most bytes of a request line and headers (h11's own default, made explicit).
MAX_HEADER_BYTES = 16 * 1024
#: Seconds a client may leave an answer unread (the transport's buffer full) before it is cut off.
DEFAULT_SEND_TIMEOUT_S = 30.0
#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_S = 5
RETRY_AFTER_S = 30


def _plain(status: str, message: str, extra: str = "") -> bytes:
    """A complete ``HTTP/1.1`` answer with a one-line ``text/plain`` body, that closes the connection."""
    body = (message + "\n").encode("utf-8")
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
        f"cache-control: no-store\r\nconnection: close\r\n{extra}\r\n"
    ).encode("ascii") + body


TOO_SLOW = _plain("408 Request Timeout", "The request's headers did not arrive in time; the connection is closed.")
TOO_MANY = _plain(
    "503 Service Unavailable",
    "The server has too many connections open. Try again in a moment.",
    f"retry-after: {RETRY_AFTER_S}\r\n",
)


@dataclass(frozen=True)
class ConnectionLimits:
    """Bounds of each connection: ``header_timeout_s`` seconds (> 0) to send complete headers, at most
    ``max_connections`` (>= 1) open at once, ``max_header_bytes`` of headers, ``keep_alive_s`` idle seconds,
    ``send_timeout_s`` seconds (> 0) that an answer may sit unread."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_header_bytes: int = MAX_HEADER_BYTES
    keep_alive_s: int = KEEP_ALIVE_S
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S

    def __post_init__(self):
        if not self.header_timeout_s > 0:
            raise ValueError(f"header_timeout_s must be > 0, got {self.header_timeout_s}")
        if not self.send_timeout_s > 0:
            raise ValueError(f"send_timeout_s must be > 0, got {self.send_timeout_s}")
        if int(self.max_connections) < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections}")


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a connection cap (see the module docstring).

    The limits are class attributes; :func:`protocol_class` makes a subclass per server.
    """

    limits = ConnectionLimits()
    _header_timer: asyncio.TimerHandle | None = None
    _send_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(TOO_MANY)
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # a keep-alive connection starts its next request
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are complete (or the request was refused)
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        self._disarm_send_timer()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The transport's buffer is full (the client is not reading): start the send timeout."""
        super().pause_writing()
        self._disarm_send_timer()
        self._send_timer = self.loop.call_later(self.limits.send_timeout_s, self._not_reading)

    def resume_writing(self) -> None:
        """The client read enough for the buffer to drain: no timeout while it keeps reading."""
        self._disarm_send_timer()
        super().resume_writing()

    def _disarm_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _not_reading(self) -> None:
        """Abort (not close: close would wait for the unread bytes) a connection whose client stopped reading."""
        self._send_timer = None
        if not self.transport.is_closing():
            self.logger.warning(
                "a client left an answer unread for %g s; connection aborted", self.limits.send_timeout_s
            )
        self.transport.abort()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._refuse(TOO_SLOW)

    def _refuse(self, answer: bytes) -> None:
        """Send a complete error answer (only ever before a request was read) and close."""
        self._disarm_header_timer()
        try:
            self.transport.write(answer)
        finally:
            self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[BoundedH11Protocol]:
    """A :class:`BoundedH11Protocol` subclass with these limits (uvicorn takes a class, not an instance)."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {"limits": limits})


def uvicorn_config(app, limits: ConnectionLimits | None = None, **options) -> uvicorn.Config:
    """A ``uvicorn.Config`` for ``app`` on :class:`BoundedH11Protocol` with ``limits``.

    ``options`` go to ``uvicorn.Config`` (e.g. ``log_level``); the protocol and the limits cannot be
    overridden there.
    """
    limits = limits or ConnectionLimits()
    settings = {"lifespan": "on", "timeout_graceful_shutdown": 3, **options}
    return uvicorn.Config(
        app,
        http=protocol_class(limits),
        ws="none",
        h11_max_incomplete_event_size=limits.max_header_bytes,
        limit_concurrency=limits.max_connections + 1,
        timeout_keep_alive=limits.keep_alive_s,
        **settings,
    )


class StoppingServer(uvicorn.Server):
    """``uvicorn.Server`` that calls ``on_stop`` (in a thread) when the first SIGTERM or SIGINT arrives.

    :func:`server_for` passes the app's ``queue.close``: waiting jobs end at once, the running one
    stops at its next tile or within :data:`facesr.web.app.STOP_GRACE_S`, so the requests waiting for
    them are answered before uvicorn's graceful shutdown would give up on them.
    """

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None] | None = None):
        super().__init__(config)
        self.on_stop = on_stop

    def handle_exit(self, sig, frame) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if first and self.on_stop is not None:  # not in the signal handler itself: close() may wait
            threading.Thread(target=self.on_stop, name="facesr-stop", daemon=True).start()


def server_for(app, limits: ConnectionLimits | None = None, **options) -> StoppingServer:
    """A :class:`StoppingServer` for an app of :func:`facesr.web.app.create_app` (see :func:`uvicorn_config`)."""
    from .app import STOP_GRACE_S

    queue = app.state.service.queue
    return StoppingServer(uvicorn_config(app, limits, **options), lambda: queue.close(STOP_GRACE_S))
