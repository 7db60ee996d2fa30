"""``facesr serve``: a local web page (and HTTP API) that restores face crops and, with the faces extra, whole photos.

The app itself is :mod:`facesr.web.app` (FastAPI, run by uvicorn; its API is described at
``/docs``); it needs the ``web`` extra (``pip install -e ".[web]"``).  The model is loaded once, before the
server starts listening.  The server binds to 127.0.0.1 unless told otherwise; it
has no authentication, so only bind to another address on a network you trust.
"""

from __future__ import annotations

import math
import sys

from . import add_max_pixels_option, add_model_options, max_pixels_arg

#: Default cap on input pixels (a pixel count, as facesr.web.images.DEFAULT_MAX_PIXELS): 1024 x 1024.
DEFAULT_MAX_PIXELS = 1024 * 1024
#: Defaults of the other caps (facesr.faces.photo.DEFAULT_MAX_FACES, facesr.web.server's limits), spelled out
#: so that building the parser does not import FastAPI or the face pipeline.
DEFAULT_MAX_FACES = 32
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_SEND_TIMEOUT_S = 30.0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="a local web page: upload a blurry face, compare it restored x4 with bicubic (also an HTTP API)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    add_model_options(p, ema=False)
    add_max_pixels_option(
        p, DEFAULT_MAX_PIXELS / 1e6, "1.048576 = 1024x1024; the request body is capped at 8 bytes per pixel + 1 MiB"
    )
    p.add_argument(
        "--max-faces",
        type=int,
        default=DEFAULT_MAX_FACES,
        metavar="N",
        help=f"whole-photo mode restores at most the N largest faces of a photo, and says how many "
        f"it left out (default {DEFAULT_MAX_FACES})",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"most connections open at once; more get HTTP 503 (default {DEFAULT_MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT_S,
        metavar="SECONDS",
        help=f"HTTP 408 and the connection closed when a request's headers take longer "
        f"(default {DEFAULT_HEADER_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--send-timeout",
        type=float,
        default=DEFAULT_SEND_TIMEOUT_S,
        metavar="SECONDS",
        help=f"a connection whose client stops reading an answer for this long is cut off "
        f"(default {DEFAULT_SEND_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=8,
        metavar="N",
        help="most requests waiting behind the running one; more get HTTP 503 (default 8)",
    )
    p.add_argument("--upload-timeout", type=float, default=20.0, metavar="S", help="408 after S s without upload data")
    p.add_argument("--quiet", action="store_true", help="do not log each job on stderr")
    p.set_defaults(func=run)


def _check(args) -> None:
    from ..errors import FacesrError

    args.max_pixels = max_pixels_arg(args)
    if args.max_pixels < 1:
        raise FacesrError("--max-pixels: a server needs a cap of at least one pixel (0 = no cap is refused)")
    if args.max_faces < 1:
        raise FacesrError(f"--max-faces must be at least 1, got {args.max_faces}")
    if args.max_connections < 1:
        raise FacesrError(f"--max-connections must be at least 1, got {args.max_connections}")
    if not (math.isfinite(args.header_timeout) and args.header_timeout > 0):
        raise FacesrError(f"--header-timeout must be more than 0 seconds, got {args.header_timeout:g}")
    if not (math.isfinite(args.send_timeout) and args.send_timeout > 0):
        raise FacesrError(f"--send-timeout must be more than 0 seconds, got {args.send_timeout:g}")
    if args.max_queue < 0:
        raise FacesrError(f"--max-queue must be at least 0, got {args.max_queue}")
    if not (math.isfinite(args.upload_timeout) and args.upload_timeout > 0):
        raise FacesrError(f"--upload-timeout must be more than 0 seconds, got {args.upload_timeout:g}")
    if not 0 <= args.port <= 65535:
        raise FacesrError(f"--port must be 0 to 65535, got {args.port}")


def _bind(host: str, port: int):
    """A listening socket on (host, port); FacesrError in one line when that is impossible."""
    import socket

    from ..errors import FacesrError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError as exc:
        raise FacesrError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def _import_multipart() -> None:
    """Import python-multipart (which parses uploaded forms) under its new name, else its old one."""
    try:
        import python_multipart  # noqa: F401
    except ImportError:
        import multipart  # noqa: F401  (python-multipart before 0.0.13)


def run(args) -> int:
    """Load the model, bind the socket, serve until Ctrl-C.  Returns the exit status."""
    from ..errors import MissingExtraError

    _check(args)
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401  (checked here: the web extra)

        _import_multipart()
    except ImportError:
        raise MissingExtraError("web", "facesr serve") from None
    import logging

    from ..web.app import create_app
    from ..web.server import ConnectionLimits, server_for
    from . import load_restorer

    restorer = load_restorer(args)
    model = args.checkpoint or "the shipped model"
    app = create_app(
        restorer,
        max_pixels=args.max_pixels,
        max_queued=args.max_queue,
        upload_timeout_s=args.upload_timeout,
        model_name=model,
        warmup=True,
        max_faces=args.max_faces,
    )
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    log = logging.getLogger("facesr.web")
    handler = None
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("facesr serve: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    level = log.level
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)

    limits = ConnectionLimits(
        header_timeout_s=args.header_timeout,
        max_connections=args.max_connections,
        send_timeout_s=args.send_timeout,
    )
    server = server_for(app, limits, log_level="warning", access_log=False)
    print(
        f"facesr serve: {model} on {restorer.device} ({restorer.precision}); open {url} in a browser "
        f"(the HTTP API is described at {url}docs; Ctrl-C stops)",
        flush=True,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"facesr serve: warning: listening on {args.host}, so other machines can reach this page "
            f"(it has no password)",
            file=sys.stderr,
        )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if handler is not None:  # leave logging as it was (run() may be called in a process that goes on)
            log.removeHandler(handler)
            log.propagate = True
        log.setLevel(level)
    print("facesr serve: stopped", file=sys.stderr)
    return 0
