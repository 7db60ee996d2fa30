"""Property-based fuzzing (Hypothesis) of image decoding and of ``facesr serve``'s upload path (issue 21.5).

* :func:`facesr.io.images.read_image` (the one decoder, here on bytes) and the web app's decoder on mutated
  PNG, JPEG, TIFF, GIF and WebP bytes, and on headers that lie about the size: a picture within the pixel
  cap, or one :class:`~facesr.errors.ImageError` line; never another exception; each within a time bound,
  and the whole run within a memory bound.
* ``POST /restore`` with random multipart forms (boundaries, field names, file names, part headers,
  truncations) around mutated pictures, and random ``Content-Type`` / ``Content-Length`` headers: a PNG,
  or one plain-text 4xx line; never a 500 or a traceback.
* Raw bytes on a socket to a live server: an HTTP answer that is not a 5xx, or the connection closed,
  within the header timeout.

CI runs ``FACESR_FUZZ_EXAMPLES`` examples per property (default 40); ``FACESR_FUZZ_EXAMPLES=2000 pytest
tests/test_fuzz_web.py`` runs a longer search (docs/robustness.md records what such runs found).
"""

from __future__ import annotations

import io
import resource
import socket
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import fuzz_settings
from facesr.errors import ImageError
from facesr.io.images import read_image

FUZZ = fuzz_settings()

#: Seconds one decode or one request may take (a bound, far above what a small picture needs).
TIME_BOUND_S = 10.0
#: Growth of the process's peak resident memory allowed over a whole property, in bytes.
MEMORY_BOUND = 512 * 2**20
MAX_PIXELS = 48 * 48
FORMATS = ["PNG", "JPEG", "TIFF", "GIF", "WEBP"]


def _encode(fmt: str, mode: str) -> bytes:
    rng = np.random.default_rng(len(fmt) + len(mode))
    img = Image.fromarray(rng.integers(0, 256, (10, 12, 4), dtype=np.uint8), "RGBA").convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    seeds = {}
    for fmt in FORMATS:
        for mode in ("RGB", "L", "RGBA", "P"):
            if fmt == "JPEG" and mode in ("RGBA", "P"):
                continue
            seeds[f"{fmt}-{mode}"] = _encode(fmt, mode)
    import cv2

    ok, png16 = cv2.imencode(".png", (np.arange(120, dtype=np.uint16).reshape(10, 12) * 500))
    seeds["PNG-16bit"] = png16.tobytes()
    return seeds


SEEDS = _seeds()


def _png_with_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR (with a correct CRC) claims ``width`` x ``height``."""
    raw = SEEDS["PNG-RGB"]
    ihdr = struct.pack(">II", width, height) + raw[24:29]
    chunk = b"IHDR" + ihdr
    return raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]


def _gif_with_size(width: int, height: int) -> bytes:
    raw = bytearray(SEEDS["GIF-RGB"])
    raw[6:10] = struct.pack("<HH", width, height)
    return bytes(raw)


def _mutate(data: bytes, edits, cut, insert) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        b[pos % len(b)] = val
    if insert is not None:
        pos, blob = insert
        b[pos % (len(b) + 1) : pos % (len(b) + 1)] = blob
    return bytes(b[:cut] if cut is not None else b)


mutated_pictures = st.builds(
    _mutate,
    st.sampled_from(sorted(SEEDS)).map(SEEDS.__getitem__),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=8),
    st.one_of(st.none(), st.integers(0, 2048)),
    st.one_of(st.none(), st.tuples(st.integers(0, 1 << 16), st.binary(max_size=64))),
)
lying_headers = st.one_of(
    st.builds(_png_with_size, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
    st.builds(_gif_with_size, st.integers(0, 65535), st.integers(0, 65535)),
)
pictures = st.one_of(mutated_pictures, lying_headers, st.binary(max_size=256))


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


@pytest.fixture(scope="module")
def memory_bound():
    start = _peak_rss()
    yield
    grown = _peak_rss() - start
    assert grown < MEMORY_BOUND, f"peak memory grew by {grown / 2**20:.0f} MiB while fuzzing"


def _decodes_or_one_line(data: bytes, **kw) -> None:
    t0 = time.perf_counter()
    try:
        rgb, alpha = read_image(data, MAX_PIXELS, **kw)
    except ImageError as exc:
        text = str(exc).strip()
        assert text and "\n" not in text, f"not one line: {exc!r}"
        assert "unreadable" not in text or "over the cap" not in text
    else:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert 0 < rgb.shape[0] * rgb.shape[1] <= MAX_PIXELS
        assert alpha is None or (alpha.dtype == np.uint8 and alpha.shape == rgb.shape[:2])
    assert time.perf_counter() - t0 < TIME_BOUND_S


def test_the_seeds_decode():
    for name, data in SEEDS.items():
        rgb, _ = read_image(data, MAX_PIXELS, name=name)
        assert rgb.shape == (10, 12, 3), name


@FUZZ
@given(data=pictures)
def test_read_image_on_mutated_bytes_is_a_picture_or_one_line(data, memory_bound):
    _decodes_or_one_line(data)
    _decodes_or_one_line(data, formats=("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"), name="upload")


@FUZZ
@given(width=st.integers(49, 2**31 - 1), height=st.integers(49, 2**31 - 1))
def test_a_header_over_the_cap_is_refused_before_decoding(width, height):
    from facesr.io.images import ImageTooLargeError

    t0 = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="over the cap"):
        read_image(_png_with_size(width, height), MAX_PIXELS)
    assert time.perf_counter() - t0 < TIME_BOUND_S


# ----------------------------------------------------------------------------- the web API

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("multipart", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("httpx", reason="httpx (the test client's transport) is not installed")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

import faces_synth as S
from facesr.web.app import create_app
from web_support import GatedRestorer, LiveServer

ALLOWED = {200, 400, 408, 413}


@pytest.fixture(scope="module")
def client():
    app = create_app(
        GatedRestorer(seed=0), max_pixels=MAX_PIXELS, examples=False, detector=S.FakeDetector([]), upload_timeout_s=2.0
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _answer_is_clean(res) -> None:
    assert res.status_code in ALLOWED, (res.status_code, res.text[:300])
    if res.status_code == 200:
        assert res.headers["content-type"] == "image/png" and res.content[:8] == b"\x89PNG\r\n\x1a\n"
        return
    assert res.headers["content-type"].startswith("text/plain")
    text = res.text
    assert text.endswith("\n") and "\n" not in text.rstrip("\n") and "Traceback" not in text, text


boundaries = st.one_of(
    st.text(st.sampled_from("abcXYZ0123456789'()+_,-./:=? "), min_size=1, max_size=70).filter(lambda b: b.strip()),
    st.text(max_size=20),
    st.just("facesrFuzz"),
)
names = st.one_of(st.sampled_from(["image", "mode", "file", "IMAGE", "image ", ""]), st.text(max_size=12))
values = st.one_of(pictures, st.sampled_from([b"face", b"photo", b"sketch", b""]), st.binary(max_size=64))


@st.composite
def forms(draw):
    """(body, content type) of a multipart form, well-formed or not."""
    boundary = draw(boundaries)
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(names)
        header = f'Content-Disposition: form-data; name="{name}"'
        if draw(st.booleans()):
            header += f'; filename="{draw(st.text(max_size=16))}"'
        if draw(st.booleans()):
            header += f"\r\nContent-Type: {draw(st.sampled_from(['image/png', 'text/plain', '', 'x/y; a=b']))}"
        if draw(st.booleans()):
            header += f"\r\n{draw(st.text(max_size=20))}"
        parts.append(
            b"--"
            + boundary.encode("utf-8", "replace")
            + b"\r\n"
            + header.encode("utf-8", "replace")
            + b"\r\n\r\n"
            + draw(values)
            + b"\r\n"
        )
    body = b"".join(parts)
    if draw(st.booleans()):
        body += b"--" + boundary.encode("utf-8", "replace") + b"--\r\n"
    cut = draw(st.one_of(st.none(), st.integers(0, max(0, len(body)))))
    body = body[:cut] if cut is not None else body
    quoted = draw(st.booleans())
    ctype = f"multipart/form-data; boundary={chr(34) + boundary + chr(34) if quoted else boundary}"
    ctype = draw(
        st.one_of(
            st.just(ctype),
            st.sampled_from(
                [
                    "multipart/form-data",
                    "multipart/form-data; boundary=",
                    "multipart/mixed; boundary=x",
                    "image/png",
                    "application/octet-stream",
                    "text/plain",
                    "",
                    "multipart/form-data; boundary=a; boundary=b",
                ]
            ),
        )
    )
    return body, ctype


def _post(client, body: bytes, headers, query: str = ""):
    t0 = time.perf_counter()
    res = client.post("/restore" + query, content=body, headers=headers)
    assert time.perf_counter() - t0 < TIME_BOUND_S
    return res


@FUZZ
@given(form=forms(), query=st.sampled_from(["", "?mode=photo", "?mode=x", "?name=%00%ff", "?mode=face&mode=photo"]))
def test_random_multipart_forms_get_a_png_or_one_4xx_line(client, form, query, memory_bound):
    body, ctype = form
    _answer_is_clean(_post(client, body, {b"content-type": ctype.encode("utf-8", "replace")}, query))


@FUZZ
@given(
    data=pictures,
    ctype=st.sampled_from(["image/png", "image/jpeg", "application/octet-stream", "image/x"]),
    length=st.one_of(st.none(), st.sampled_from(["-1", "abc", "1e3", "99999999999999999999", "0", " 5"])),
)
def test_mutated_pictures_as_raw_bodies_get_a_png_or_one_4xx_line(client, data, ctype, length, memory_bound):
    headers = {"content-type": ctype}
    if length is not None:
        headers["content-length"] = length
    try:
        res = _post(client, data, headers)
    except Exception as exc:  # the client itself refuses some lying lengths before sending anything
        assert length is not None, exc
        return
    _answer_is_clean(res)


# ----------------------------------------------------------------------------- raw bytes on a socket


@pytest.fixture(scope="module")
def live():
    from facesr.web.server import ConnectionLimits

    app = create_app(GatedRestorer(seed=0), max_pixels=MAX_PIXELS, examples=False, upload_timeout_s=1.0)
    with LiveServer(app, ConnectionLimits(header_timeout_s=0.5)) as srv:
        yield srv


request_lines = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda m, t, v, h: m + b" " + t + b" " + v + b"\r\n" + h,
        st.sampled_from([b"GET", b"POST", b"DELETE", b"PUT", b"BREW", b"", b"G\x00T"]),
        st.sampled_from([b"/", b"/restore", b"/jobs/x", b"*", b"http://x/", b"/%00", b"/" + b"a" * 300]),
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1\r\nHost: x", b""]),
        st.binary(max_size=120),
    ),
)


@settings(FUZZ, max_examples=max(5, FUZZ.max_examples // 4))
@given(data=request_lines)
def test_raw_bytes_get_an_answer_or_a_close_never_a_5xx(live, data):
    s = socket.create_connection(("127.0.0.1", live.port), timeout=5)
    s.settimeout(0.1)
    got, deadline = b"", time.monotonic() + 0.5 + 3.0  # the header timeout, and slack for a busy machine
    try:
        s.sendall(data)
        while time.monotonic() < deadline and b"\r\n" not in got:
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        else:
            assert b"\r\n" in got, "the connection stayed open past the header timeout without an answer"
    finally:
        s.close()
    if got:
        assert got.startswith(b"HTTP/1.1 "), got[:100]
        status = int(got[9:12])
        assert status < 500 or status == 503, got[:200]
