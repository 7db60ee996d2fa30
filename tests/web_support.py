"""Helpers shared by the web tests: a tiny model whose jobs can be held at a gate, and a live server.

Slow jobs are made deterministic rather than slow: :class:`GatedRestorer` stops every
restoration at ``gate_at_tile`` tiles until the test opens :attr:`GatedRestorer.gate`,
then checks for cancellation before going on, exactly where a real job would.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
import urllib.request

import numpy as np
import torch
from PIL import Image

from facesr.inference import Restorer
from facesr.models import build_model

GATE_TIMEOUT_S = 20.0


class GatedRestorer(Restorer):
    """A :class:`Restorer` on a tiny MSRResNet (8 channels, 1 block) that records its work.

    ``calls``: input images, in the order their restoration started.  ``completed``: inputs
    whose restoration finished.  ``passes``: tiles (or whole images) run in all.  While
    ``gate`` is clear, a restoration waits once it has done ``gate_at_tile`` tiles.
    ``started`` is set whenever a restoration begins.
    """

    def __init__(self, seed: int = 0, **kw):
        torch.manual_seed(seed)
        super().__init__(build_model("msrresnet", mid_channels=8, num_blocks=1), device="cpu", **kw)
        self.calls: list[np.ndarray] = []
        self.completed: list[np.ndarray] = []
        self.passes = 0
        self.gate = threading.Event()
        self.gate.set()
        self.gate_at_tile = 0
        self.started = threading.Event()

    def restore(self, image, progress=None):
        self.calls.append(np.array(image, copy=True))
        self.started.set()

        def step(done: int, total: int) -> None:
            if done > 0:
                self.passes += 1
            if progress is not None:
                progress(done, total)  # raises once the job is cancelled
            if done == self.gate_at_tile and not self.gate.is_set():
                if not self.gate.wait(GATE_TIMEOUT_S):
                    raise RuntimeError("test gate never opened")
                if progress is not None:
                    progress(done, total)  # cancelled while held?

        out = super().restore(image, progress=step)
        self.completed.append(np.array(image, copy=True))
        return out

    def reference(self, image):
        """What an ungated restoration of ``image`` gives (no records kept)."""
        return Restorer.restore(self, image)

    def reset(self) -> None:
        self.calls.clear()
        self.completed.clear()
        self.passes = 0
        self.gate.set()
        self.gate_at_tile = 0
        self.started.clear()


def face_png(size: int = 32, seed: int = 0, channels: int = 3) -> tuple[np.ndarray, bytes]:
    """A small test picture cut from the bundled public-domain face (uint8 RGB, ``size`` x ``size``) and its PNG."""
    import cv2

    from facesr.assets import sample_face_path
    from facesr.io.images import read_rgb

    face = read_rgb(sample_face_path())
    rng = np.random.default_rng(seed)
    y, x = rng.integers(0, 128, 2)
    crop = face[y : y + 384, x : x + 384]
    img = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    if channels == 4:
        img = np.concatenate([img, rng.integers(0, 256, (size, size, 1), dtype=np.uint8)], axis=2)
    return img, png_bytes(img)


def aligned_face() -> np.ndarray:
    """The bundled portrait warped onto the FFHQ template by dlib's own landmarks (512 x 512; needs dlib).

    dlib's HOG detector finds faces made from it reliably, as in tests/test_faces_detect.py."""
    global _ALIGNED
    if _ALIGNED is None:
        import faces_synth as S
        from facesr.faces import align, load_detector

        (f,) = load_detector("hog", upsample=0)(S.hq_face())  # a 300-pixel face: no need to search at 2x
        _ALIGNED = align.crop_face(S.hq_face(), align.estimate_alignment(f.landmarks), 512)
    return _ALIGNED


_ALIGNED = None


def has_face_detector() -> bool:
    """True when the ``faces`` extra (dlib and its landmark model) is installed."""
    from facesr.web.photo import default_detector_missing

    return default_detector_missing() is None


def group_photo(hq: np.ndarray | None = None):
    """A synthetic 320 x 240 group photo (uint8 RGB) of the bundled face: two faces the detector can find
    and restore, and one too small to restore (narrower than 32 pixels); and the exact faces, as
    ``faces_synth.make_photo`` gives them (see tests/faces_synth.py)."""
    import faces_synth as S

    lq, _, faces = S.make_photo(
        [(1.0, 5.0, (90.0, 130.0)), (0.9, -6.0, (230.0, 110.0)), (0.3, 0.0, (290.0, 205.0))], hq=hq
    )
    return lq, faces


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.asarray(im).copy()


def multipart(
    fields: dict[str, tuple[str, bytes] | str], boundary: str = "facesrTestBoundary7MA4YWxk"
) -> tuple[bytes, str]:
    """A multipart/form-data body: {field: (filename, content) or plain text}; returns (body, content type)."""
    out = b""
    for name, value in fields.items():
        if isinstance(value, str):
            out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode()
            continue
        filename, data = value
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: image/png\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


class LiveServer:
    """The app on uvicorn in a background thread, on 127.0.0.1 and a free port, with the connection
    bounds of ``facesr serve`` (:func:`facesr.web.server.uvicorn_config`; ``limits`` default to its own)."""

    def __init__(self, app, limits=None):
        import uvicorn

        from facesr.web.server import uvicorn_config

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn_config(app, limits, log_level="error", timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    # ------------------------------------------------------------------ small clients

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def health(self) -> dict:
        return self.get_json("/healthz")

    def wait_until(self, cond, timeout: float = 10.0, what: str = "condition") -> None:
        """Poll ``cond(health)`` until it is true (every 10 ms, at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            if cond(h):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last health {h}")
            time.sleep(0.01)

    def post(self, path: str, body: bytes, headers: dict, timeout: float = 30.0) -> tuple[int, dict, bytes]:
        """One POST on a fresh connection: (status, lower-cased headers, body)."""
        return self.request("POST", path, body, headers, timeout)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict | None = None, timeout: float = 30.0
    ) -> tuple[int, dict, bytes]:
        """One request on a fresh connection: (status, lower-cased headers, body)."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def raw(self, data: bytes) -> socket.socket:
        """A connected socket that has sent ``data`` (the caller reads or closes it)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(data)
        return s


def raw_post(path: str, body: bytes, ctype: str, length: int | None = None) -> bytes:
    """The bytes of a POST request (headers and ``body``); ``length`` overrides Content-Length."""
    n = len(body) if length is None else length
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {n}\r\n\r\n"
    ).encode() + body


@contextlib.contextmanager
def thread_results(fn, args_list):
    """Run ``fn(*args)`` for each args in threads; yields the list their results land in (joined on exit)."""
    results = [None] * len(args_list)

    def go(i, args):
        try:
            results[i] = fn(*args)
        except Exception as exc:  # reported by the test through the results list
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i, a), daemon=True) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    try:
        yield results
    finally:
        for t in threads:
            t.join(30)
