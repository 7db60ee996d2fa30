"""``facesr serve``: a small local web page that restores one face photo at a time.

``GET /`` returns a self-contained page (inline CSS and JavaScript, no external
resources): pick, drop or paste an image, press *Restore*, and see the input
(nearest neighbour x4), bicubic x4 and facesr x4 side by side, with a link to
download the restored PNG.  The page also works without JavaScript: its form
posts to ``/restore`` and the browser shows the PNG.

Endpoints
---------
``POST /restore``
    The image as the ``image`` field of a ``multipart/form-data`` body, or as a
    raw body (``Content-Type: image/...``, ``application/octet-stream`` or none).
    Returns the restored image as PNG (``image/png``): RGB, or RGBA when the
    input has transparency (alpha upscaled bicubically).  The pixels are exactly
    :meth:`facesr.inference.Restorer.restore` of the decoded input.
``POST /upscale?method=bicubic|nearest``
    Same input; returns the plain x4 upscale (``cv2.INTER_CUBIC``, as
    ``facesr compare`` draws it, or pixel replication) for the page's panels.

Inputs are decoded like :func:`facesr.imageio.read_any` (EXIF rotation applied,
gray expanded to RGB, 16-bit scaled to 8-bit, alpha kept).  Anything wrong with
the request (empty body, not an image, more than ``max_pixels`` input pixels,
a body larger than ``8 * max_pixels + 1 MiB`` bytes, a multipart form without
an ``image`` field) gives HTTP 400 with a one-line ``text/plain`` message;
an unexpected failure while restoring gives a one-line 500.  Tracebacks never
reach the client.

The model is loaded once, before the server starts listening.  Requests are
handled in threads (:class:`http.server.ThreadingHTTPServer`), but model calls
are serialised by a lock, so one restoration runs at a time.  The server binds
to 127.0.0.1 unless told otherwise; it has no authentication, so only bind to
another address on a network you trust.
"""
from __future__ import annotations

import io
import math
import socket
import socketserver
import sys
import threading
import time
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import collapse_rfc2231_value
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .imageio import ImageError, _pil_to_rgb, encode_png

DEFAULT_MAX_PIXELS = 1024 * 1024
FIELD = "image"
# Formats accepted from the network (PIL would otherwise also try exotic ones, some via external programs).
_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM", "AVIF")
_FORMAT_NAMES = "PNG, JPEG, WebP, BMP, TIFF or GIF"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


class BadRequest(Exception):
    """The client sent something we cannot use; the message (one line) goes back with HTTP 400."""


# ----------------------------------------------------------------------------- decoding

def _formats() -> list[str]:
    Image.init()
    return [f for f in _FORMATS if f in Image.ID]


def body_limit(max_pixels: int) -> int:
    """Largest request body accepted: 8 bytes per allowed pixel (16-bit RGBA, uncompressed) + 1 MiB."""
    return 8 * int(max_pixels) + (1 << 20)


def _too_large(w: int, h: int, max_pixels: int) -> BadRequest:
    return BadRequest(f"image too large: {w}x{h} is {w * h:,} pixels, this server takes at most "
                      f"{max_pixels:,} (--max-pixels)")


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode uploaded bytes to uint8 RGB HxWx3 (or RGBA HxWx4 when the image has transparency), 0-255.

    Follows :func:`facesr.imageio.read_any`: EXIF rotation applied, gray expanded to RGB,
    16-bit scaled to 8-bit (``round(v / 257)``).  The pixel count is checked from the
    header, before anything is decoded.  Raises :class:`BadRequest` with a one-line message.
    """
    if not data:
        raise BadRequest("empty image: the request carried no image data")
    try:
        im = Image.open(io.BytesIO(data), formats=_formats())
    except Image.DecompressionBombError as exc:
        raise BadRequest(f"image too large ({str(exc).splitlines()[0]}); this server takes at most "
                         f"{max_pixels:,} pixels (--max-pixels)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise BadRequest(f"not a readable image: the data is not a {_FORMAT_NAMES} file "
                         f"({len(data):,} bytes starting {data[:8]!r})") from None
    w, h = im.size
    if w * h > max_pixels:
        raise _too_large(w, h, max_pixels)
    if w < 1 or h < 1:
        raise BadRequest(f"empty image: {w}x{h} pixels")
    fmt = im.format or "image"
    try:
        if data[:8] == _PNG_SIG and len(data) > 24 and data[24] == 16:  # 16-bit PNG: PIL would truncate
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if img is None or img.dtype != np.uint16:
                raise ValueError("OpenCV could not decode it")
            img8 = np.clip(np.rint(img.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
            if img8.ndim == 2:
                return np.repeat(img8[..., None], 3, axis=2)
            rgb = img8[..., 2::-1] if img8.shape[2] >= 3 else np.repeat(img8[..., :1], 3, axis=2)
            if img8.shape[2] == 4:
                return np.ascontiguousarray(np.concatenate([rgb, img8[..., 3:4]], axis=2))
            return np.ascontiguousarray(rgb)
        with im:
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb, alpha = _pil_to_rgb(im)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadRequest(f"not a readable image: truncated or corrupt {fmt} ({msg})") from None
    if alpha is None:
        return rgb
    return np.ascontiguousarray(np.concatenate([rgb, alpha[..., None]], axis=2))


def upscale(img: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """Plain x``scale`` upscale of a uint8 HxWxC array: ``bicubic`` (cv2.INTER_CUBIC) or ``nearest`` (replication)."""
    if method == "nearest":
        return np.ascontiguousarray(np.repeat(np.repeat(img, scale, axis=0), scale, axis=1))
    if method == "bicubic":
        h, w = img.shape[:2]
        return cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
    raise BadRequest(f"unknown method {method!r}: use bicubic or nearest")


# ----------------------------------------------------------------------------- multipart

def _header_param(value: str, header: str, name: str) -> str | None:
    m = Message()
    m[header] = value
    v = m.get_param(name, header=header)
    return None if v is None else collapse_rfc2231_value(v)


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """Fields of a ``multipart/form-data`` body: {name: content bytes} (the first of each name)."""
    boundary = _header_param(content_type, "content-type", "boundary")
    if not boundary:
        raise BadRequest("multipart/form-data request without a boundary parameter")
    delim = b"--" + boundary.encode("latin-1", "replace")
    pos = body.find(delim)
    if pos < 0:
        raise BadRequest("malformed multipart body: the boundary never occurs")
    pos += len(delim)
    fields: dict[str, bytes] = {}
    while not body.startswith(b"--", pos):  # "--" after a delimiter closes the body
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise BadRequest("malformed multipart body: a boundary line does not end")
        start = eol + 2
        end = body.find(b"\r\n" + delim, start)
        if end < 0:
            raise BadRequest("malformed multipart body: no closing boundary (upload cut short?)")
        part = body[start:end]
        if part.startswith(b"\r\n"):
            head, content = b"", part[2:]
        else:
            split = part.find(b"\r\n\r\n")
            if split < 0:
                raise BadRequest("malformed multipart body: a part has no header end")
            head, content = part[:split + 2], part[split + 4:]
        headers = BytesHeaderParser().parsebytes(head + b"\r\n")
        name = headers.get_param("name", header="content-disposition")
        name = None if name is None else collapse_rfc2231_value(name)
        if name is not None and name not in fields:
            fields[name] = content
        pos = end + 2 + len(delim)
    return fields


# ----------------------------------------------------------------------------- the page

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>facesr: restore a face x4</title>
<style>
:root { color-scheme: light dark; --ink: #1e1e1e; --muted: #6e6e6e; --line: #d4d4d4; --bg: #f6f6f6;
        --card: #fff; --accent: #0a7d45; --err: #b00020; }
@media (prefers-color-scheme: dark) {
  :root { --ink: #e8e8e8; --muted: #a0a0a0; --line: #444; --bg: #161616; --card: #222; --accent: #2fb878;
          --err: #ff7a8a; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--bg); }
main { max-width: 1500px; margin: 0 auto; padding: 20px; }
h1 { font-size: 1.35em; margin: 0 0 4px; }
.sub { color: var(--muted); margin: 0 0 14px; }
#drop { position: relative; display: flex; flex-direction: column; align-items: center; justify-content: center;
        gap: 4px; min-height: 110px; padding: 16px; text-align: center; cursor: pointer;
        border: 2px dashed var(--line); border-radius: 10px; background: var(--card); }
#drop.over, #drop:focus-within { border-color: var(--accent); }
#drop input { position: absolute; width: 1px; height: 1px; opacity: 0; }
#fname { color: var(--muted); }
.row { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; margin: 12px 0 16px; }
button { font: inherit; font-weight: 600; padding: 8px 26px; border: 0; border-radius: 8px; color: #fff;
         background: var(--accent); cursor: pointer; }
button:disabled { opacity: .5; cursor: progress; }
a { color: var(--accent); font-weight: 600; }
#status.err { color: var(--err); font-weight: 600; }
.hidden { display: none !important; }
.panels { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 12px; }
.panels.actual { display: flex; overflow-x: auto; align-items: flex-start; }
figure { margin: 0; padding: 8px; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
figcaption { font-weight: 600; margin-bottom: 6px; }
figure img { display: block; width: 100%; height: auto; min-height: 40px;
             background: repeating-conic-gradient(#c8c8c8 0 25%, #f0f0f0 0 50%) 0 0 / 16px 16px; }
.actual figure img { width: auto; max-width: none; }
#nearest { image-rendering: pixelated; }
@media (max-width: 700px) { .panels { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<main>
<h1>facesr: restore a blurry face (&times;__SCALE__)</h1>
<p class="sub">Choose, drop or paste a small, blurry face photo (for example 128&times;128 pixels).
It is restored on this computer by the model loaded when the server started; the image goes nowhere else.
Up to __MAX_PIXELS__ input pixels (__MAX_SIDE__&times;__MAX_SIDE__).</p>
<form id="form" action="/restore" method="post" enctype="multipart/form-data">
  <label id="drop" for="file">
    <strong>Drop an image here, paste one, or click to choose a file</strong>
    <span id="fname">PNG, JPEG, WebP, BMP, TIFF or GIF</span>
    <input id="file" type="file" name="image" accept="image/*">
  </label>
  <div class="row">
    <button id="go" type="submit">Restore</button>
    <label><input id="actual" type="checkbox"> actual size (1:1 pixels)</label>
    <a id="download" class="hidden" href="#" download="restored.png">Download restored PNG</a>
    <span id="status" role="status" aria-live="polite"></span>
  </div>
</form>
<section id="panels" class="panels hidden">
  <figure><figcaption>Input (nearest &times;__SCALE__)</figcaption><img id="nearest" alt="input, enlarged by pixel replication"></figure>
  <figure><figcaption>Bicubic &times;__SCALE__</figcaption><img id="bicubic" alt="input, bicubic upscale"></figure>
  <figure><figcaption>facesr &times;__SCALE__</figcaption><img id="sr" alt="restored by facesr"></figure>
</section>
</main>
<script>
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var input = $("file"), drop = $("drop"), go = $("go"), status = $("status"), dl = $("download");
  var panels = $("panels"), file = null, urls = [], busy = false;

  function say(msg, isError) { status.textContent = msg; status.className = isError ? "err" : ""; }
  function pick(f) {
    if (!f) return;
    file = f;
    $("fname").textContent = (f.name || "pasted image") + " (" + Math.max(1, Math.round(f.size / 1024)) + " KB)";
    say("Ready: press Restore.");
  }
  input.addEventListener("change", function () { pick(input.files[0]); });
  ["dragenter", "dragover"].forEach(function (t) {
    drop.addEventListener(t, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (t) {
    drop.addEventListener(t, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) { if (e.dataTransfer.files.length) pick(e.dataTransfer.files[0]); });
  // a file dropped beside the drop zone must not make the browser leave the page
  window.addEventListener("dragover", function (e) { e.preventDefault(); });
  window.addEventListener("drop", function (e) { e.preventDefault(); });
  document.addEventListener("paste", function (e) {
    var items = (e.clipboardData && e.clipboardData.items) || [];
    for (var i = 0; i < items.length; i++) {
      if (items[i].kind === "file") { pick(items[i].getAsFile()); break; }
    }
  });
  $("actual").addEventListener("change", function (e) { panels.classList.toggle("actual", e.target.checked); });

  function post(url) {
    var fd = new FormData();
    fd.append("image", file, file.name || "image.png");
    return fetch(url, { method: "POST", body: fd }).then(function (r) {
      if (r.ok) return r.blob().then(function (b) { return { r: r, blob: b }; });
      return r.text().then(function (t) { throw new Error(t.trim() || r.status + " " + r.statusText); });
    }, function () { throw new Error("cannot reach the facesr server (is it still running?)"); });
  }
  function show(id, url) {
    return post(url).then(function (res) {
      var u = URL.createObjectURL(res.blob);
      urls.push(u);
      $(id).src = u;
      res.url = u;
      return res;
    });
  }

  $("form").addEventListener("submit", function (e) {
    e.preventDefault();
    if (busy) return;
    if (!file) { say("Choose an image first.", true); return; }
    busy = true;
    go.disabled = true;
    urls.forEach(function (u) { URL.revokeObjectURL(u); });
    urls = [];
    ["nearest", "bicubic", "sr"].forEach(function (id) { $(id).removeAttribute("src"); });
    dl.classList.add("hidden");
    say("Restoring\\u2026");
    var t0 = performance.now();
    var jobs = [show("nearest", "/upscale?method=nearest"), show("bicubic", "/upscale?method=bicubic"),
                show("sr", "/restore")];
    Promise.allSettled(jobs).then(function (done) {
      var failed = done.filter(function (d) { return d.status === "rejected"; });
      if (failed.length) {
        panels.classList.add("hidden");
        say(failed[0].reason.message, true);
        return;
      }
      panels.classList.remove("hidden");
      var sr = done[2].value, stem = (file.name || "image").replace(/\\.[^.]*$/, "");
      dl.href = sr.url;
      dl.download = stem + "_facesr_x__SCALE__.png";
      dl.classList.remove("hidden");
      say(sr.r.headers.get("X-Facesr-Input-Size") + " \\u2192 " + sr.r.headers.get("X-Facesr-Output-Size") +
          " in " + ((performance.now() - t0) / 1000).toFixed(2) + " s");
    }).finally(function () { busy = false; go.disabled = false; });
  });
})();
</script>
</body>
</html>
"""

CSP = ("default-src 'none'; img-src 'self' blob: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def render_page(max_pixels: int, scale: int = 4) -> str:
    """The HTML of ``GET /``."""
    return (PAGE.replace("__MAX_PIXELS__", f"{max_pixels:,}").replace("__MAX_SIDE__", str(math.isqrt(max_pixels)))
            .replace("__SCALE__", str(scale)))


# ----------------------------------------------------------------------------- HTTP

class Handler(BaseHTTPRequestHandler):
    server: "FacesrServer"
    server_version = "facesr"
    sys_version = ""
    timeout = 60  # seconds a client may stall mid-request
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    # --------------------------------------------------------------- plumbing

    def log_request(self, code="-", size="-"):  # logged once per response by _send, with details
        pass

    def log_message(self, format, *args):
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} [{self.log_date_time_string()}] {format % args}\n")

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None, note: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.log_message('"%s" %d %d%s', self.requestline, status, len(body), f" {note}" if note else "")

    def _text(self, status: int, msg: str, headers: dict | None = None) -> None:
        line = " ".join(str(msg).split()) or "error"  # one line, whatever the message held
        self._send(status, (line + "\n").encode("utf-8"), "text/plain; charset=utf-8", headers, note=line)

    def _read_body(self) -> bytes:
        limit = body_limit(self.server.max_pixels)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length")
        if raw is None:
            self.close_connection = True
            return b""
        try:
            n = int(raw)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise BadRequest(f"bad Content-Length header {raw!r}") from None
        if n > limit:
            self._discard(n)
            raise BadRequest(f"request too large: {n:,} bytes, this server takes at most {limit:,} "
                             f"(--max-pixels {self.server.max_pixels:,})")
        data = self.rfile.read(n)
        if len(data) < n:
            self.close_connection = True
            raise BadRequest(f"request body ended after {len(data):,} of {n:,} bytes")
        return data

    def _read_chunked(self, limit: int) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise BadRequest("malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > limit:
                self.close_connection = True
                raise BadRequest(f"request too large: more than {limit:,} bytes, this server takes at most "
                                 f"{limit:,} (--max-pixels {self.server.max_pixels:,})")
            chunk = self.rfile.read(size)
            self.rfile.readline(16)
            if len(chunk) < size:
                self.close_connection = True
                raise BadRequest("request body ended in the middle of a chunk")
            chunks.append(chunk)

    def _discard(self, n: int) -> None:
        """Read and drop an oversized body (up to a bound), so the client gets our 400 rather than a reset."""
        self.close_connection = True
        left = n if n <= 4 * body_limit(self.server.max_pixels) else 0
        while left > 0:
            got = self.rfile.read(min(left, 1 << 20))
            if not got:
                break
            left -= len(got)

    def _image_bytes(self) -> bytes:
        raw_type = self.headers.get("Content-Type", "")
        body = self._read_body()
        if not body:
            raise BadRequest(f"empty request body: send the image as the '{FIELD}' field of a multipart/form-data "
                             f"form, or as the raw body with Content-Type image/...")
        ctype = raw_type.split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            fields = parse_multipart(body, raw_type)
            if FIELD not in fields:
                got = ", ".join(repr(k) for k in fields) or "none"
                raise BadRequest(f"the form has no '{FIELD}' field (fields sent: {got})")
            return fields[FIELD]
        if not ctype or ctype.startswith("image/") or ctype == "application/octet-stream":
            return body
        raise BadRequest(f"unsupported Content-Type {ctype}: send multipart/form-data with an '{FIELD}' field, "
                         f"or the raw image with Content-Type image/...")

    # --------------------------------------------------------------- routes

    def do_GET(self):
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            body = render_page(self.server.max_pixels, self.server.restorer.scale).encode("utf-8")
            self._send(200, body, "text/html; charset=utf-8", {"Content-Security-Policy": CSP})
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        elif path in ("/restore", "/upscale"):
            self._text(405, f"{path} takes POST with an image", {"Allow": "POST"})
        else:
            self._text(404, f"no page {path}; open / for the restore page")

    do_HEAD = do_GET

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path not in ("/restore", "/upscale"):
            try:
                self._read_body()  # consume it (bounded), so the client reads our answer
            except BadRequest:
                pass
            self._text(404, f"no endpoint {url.path}; POST images to /restore")
            return
        t0 = time.perf_counter()
        server = self.server
        try:
            img = decode_image(self._image_bytes(), server.max_pixels)
            if url.path == "/restore":
                with server.model_lock:
                    out = server.restorer.restore(img)
            else:
                method = (parse_qs(url.query).get("method") or ["bicubic"])[0]
                out = upscale(img, server.restorer.scale, method)
            png = encode_png(out)
        except (BadRequest, ImageError) as exc:
            self._text(400, str(exc))
            return
        except Exception as exc:  # a model or device failure: one line to the client and the log
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._text(500, f"restoration failed: {type(exc).__name__}: {msg}")
            return
        h, w = img.shape[:2]
        dt = time.perf_counter() - t0
        self._send(200, png, "image/png", {
            "Content-Disposition": f'inline; filename="facesr_x{server.restorer.scale}.png"',
            "X-Facesr-Input-Size": f"{w}x{h}",
            "X-Facesr-Output-Size": f"{out.shape[1]}x{out.shape[0]}",
            "X-Facesr-Seconds": f"{dt:.3f}",
        }, note=f"{w}x{h} -> {out.shape[1]}x{out.shape[0]} in {dt:.2f} s")


class FacesrServer(ThreadingHTTPServer):
    """A :class:`ThreadingHTTPServer` holding one :class:`~facesr.inference.Restorer` and the lock around it."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], restorer, max_pixels: int = DEFAULT_MAX_PIXELS,
                 quiet: bool = False):
        if int(max_pixels) < 1:
            raise ValueError(f"--max-pixels must be at least 1, got {max_pixels}")
        self.restorer = restorer
        self.max_pixels = int(max_pixels)
        self.quiet = bool(quiet)
        self.model_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def server_bind(self):
        # HTTPServer.server_bind would look the host name up (socket.getfqdn), which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):  # the browser went away; not our bug
            if not self.quiet:
                sys.stderr.write(f"{client_address[0]}: connection dropped ({type(exc).__name__})\n")
            return
        super().handle_error(request, client_address)


def make_server(restorer, host: str = "127.0.0.1", port: int = 8000, max_pixels: int = DEFAULT_MAX_PIXELS,
                *, quiet: bool = False) -> FacesrServer:
    """Bind (not yet serve) the facesr web server; call ``serve_forever()`` on the result.

    ``port=0`` picks a free port (read it from ``server.server_address[1]`` or ``server.url``).
    ``quiet`` silences the per-request log on stderr.  Raises OSError when the address cannot be bound.
    """
    return FacesrServer((host, int(port)), restorer, max_pixels, quiet=quiet)


# ----------------------------------------------------------------------------- CLI

def run_serve(a) -> int:
    """``facesr serve [--host H] [--port P] [--checkpoint C] [--device D] [--max-pixels N]``."""
    from .cli import UserError
    from .inference import Restorer, resolve_device
    from .models.weights import CheckpointError

    if a.max_pixels < 1:
        raise UserError(f"--max-pixels must be at least 1, got {a.max_pixels}")
    if not 0 <= a.port <= 65535:
        raise UserError(f"--port must be 0 to 65535, got {a.port}")
    try:
        device = resolve_device(a.device)
        restorer = Restorer.from_checkpoint(a.checkpoint, device=device)
    except CheckpointError:
        raise
    except ValueError as exc:  # unknown device or architecture
        raise UserError(str(exc)) from None
    try:
        server = make_server(restorer, a.host, a.port, a.max_pixels)
    except OSError as exc:
        raise UserError(f"cannot listen on {a.host}:{a.port} ({exc.strerror or exc})") from None
    try:
        model = a.checkpoint or "the shipped model"
        print(f"facesr serve: {model} on {restorer.device}; open {server.url} in a browser (Ctrl-C stops)",
              flush=True)
        if a.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"facesr serve: warning: listening on {a.host}, so other machines can reach this page "
                  f"(it has no password)", file=sys.stderr)
        server.serve_forever()
    except KeyboardInterrupt:
        print("facesr serve: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
