"""The bounds of ``facesr serve`` (issue 21.4): faces per photo, header timeout, connection cap, results
evicted after they are fetched or after a time, clean answers when the face pipeline fails, and
``--max-pixels`` in megapixels (issue 23.3).

Real sockets on 127.0.0.1 for the connection bounds (a test client has no connection); the tiny
model of web_support for everything else.
"""

from __future__ import annotations

import gc
import io
import json
import socket
import time
import warnings
import weakref

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("uvicorn", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("multipart", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("httpx", reason="httpx (the test client's transport) is not installed")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from PIL import Image

import faces_synth as S
from facesr import cli
from facesr.faces.photo import DEFAULT_MAX_FACES
from facesr.inference import Restorer
from facesr.web import app as webapp
from facesr.web.server import ConnectionLimits
from web_support import GatedRestorer, LiveServer, decode_png, face_png, has_face_detector, multipart, png_bytes

BAD_WORDS = ("Traceback", "b'", "\\x", "--max", "Error:", "PIL", "dlib", "stride", "numpy")


@pytest.fixture(scope="module")
def restorer():
    return GatedRestorer(seed=0)


def _one_line(res, status: int, *words: str) -> str:
    assert res.status_code == status, (res.status_code, res.text)
    assert res.headers["content-type"].startswith("text/plain")
    text = res.text
    assert text.endswith("\n") and "\n" not in text.rstrip("\n"), text
    for bad in BAD_WORDS:
        assert bad not in text, text
    for w in words:
        assert w in text, text
    return text


def _photo(client, data: bytes, path: str = "/restore"):
    body, ctype = multipart({"image": ("photo.png", data), "mode": "photo"})
    return client.post(path, content=body, headers={"content-type": ctype})


def _png(mode: str, size=(1, 1)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, "PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- faces per photo


def crowd():
    return S.crowd_photo()


def test_whole_photo_restores_only_the_largest_faces_and_says_so(restorer):
    lq, faces = crowd()
    sizes = [f.size for f in faces]
    assert min(sizes) >= 32  # all would be restored without the cap
    app = webapp.create_app(restorer, max_pixels=400 * 200, examples=False, detector=S.FakeDetector(faces), max_faces=2)
    with TestClient(app) as c:
        assert c.get("/api/info").json()["max_faces"] == 2
        body, ctype = multipart({"image": ("crowd.png", png_bytes(lq)), "mode": "photo"})
        lines = [
            json.loads(ln)
            for ln in c.post("/jobs", content=body, headers={"content-type": ctype}).text.splitlines()
            if ln.strip()
        ]
        final = lines[-1]
        assert final["state"] == "done" and (final["done"], final["total"]) == (2, 2), final
        assert (final["faces_restored"], final["faces_skipped"], final["faces_over_cap"]) == (2, 3, 3)
        assert "2 largest were restored and 3 smaller ones were left" in final["faces_note"]
        restored = [f["size"] for f in final["faces"] if f["restored"]]
        assert sorted(restored) == sorted(round(s, 1) for s in sorted(sizes)[-2:])
        assert [f["skipped"] for f in final["faces"] if not f["restored"]] == ["cap"] * 3
        want = Restorer.restore_photo(restorer, lq, detector=S.FakeDetector(faces), upscale=2, max_faces=2).image
        np.testing.assert_array_equal(decode_png(c.get(final["result"]).content), want)
        res = _photo(c, png_bytes(lq))
        assert res.status_code == 200
        assert (
            res.headers["x-facesr-faces"],
            res.headers["x-facesr-faces-skipped"],
            res.headers["x-facesr-faces-over-cap"],
        ) == ("2", "3", "3")
    with TestClient(webapp.create_app(restorer, examples=False, detector=S.FakeDetector(faces))) as c:
        assert c.get("/api/info").json()["max_faces"] == DEFAULT_MAX_FACES
        res = _photo(c, png_bytes(lq))
        assert res.headers["x-facesr-faces"] == "5" and res.headers["x-facesr-faces-over-cap"] == "0"


# ----------------------------------------------------------------------------- the face pipeline fails cleanly


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_tiny_photo_in_whole_photo_mode_is_a_clean_400(restorer, mode):
    class Crashing(S.FakeDetector):  # what dlib did on a 1x1 picture: a RuntimeError from deep inside
        def __call__(self, rgb):
            raise RuntimeError("The stride of the 2nd dimension of the numpy array must be 3")

    for det in (Crashing([]), None):
        if det is None and not has_face_detector():
            continue
        with TestClient(webapp.create_app(restorer, examples=False, detector=det)) as c:
            _one_line(_photo(c, _png(mode)), 400, "1 × 1", "too small for whole-photo mode", "face mode")
            body, ctype = multipart({"image": ("tiny.png", _png(mode)), "mode": "photo"})
            _one_line(c.post("/jobs", content=body, headers={"content-type": ctype}), 400, "too small")
            assert c.post("/restore", files={"image": ("t.png", _png(mode), "image/png")}).status_code == 200


def test_a_detector_crash_is_a_400_that_names_the_detector(restorer, caplog):
    class Crashing(S.FakeDetector):
        def __call__(self, rgb):
            raise RuntimeError("The stride of the 2nd dimension of the numpy array must be 3")

    lq, _ = crowd()
    with TestClient(webapp.create_app(restorer, examples=False, max_pixels=400 * 200, detector=Crashing([]))) as c:
        _one_line(_photo(c, png_bytes(lq)), 400, "face detector could not search this 400 × 200 picture")
        body, ctype = multipart({"image": ("p.png", png_bytes(lq)), "mode": "photo"})
        final = json.loads(c.post("/jobs", content=body, headers={"content-type": ctype}).text.splitlines()[-1])
        assert final["state"] == "failed" and "face detector" in final["error"]
    assert "stride" in caplog.text  # the details go to the server's log


def test_an_unexpected_failure_is_a_500_line_naming_the_kind(caplog):
    class Broken(GatedRestorer):
        def restore(self, image, progress=None):
            raise MemoryError("out of memory in a tile")

    with TestClient(webapp.create_app(Broken(), examples=False)) as c:
        text = _one_line(
            c.post("/restore", files={"image": ("f.png", face_png(16)[1], "image/png")}),
            500,
            "failed on the server",
            "MemoryError",
            "log",
        )
        assert "out of memory" not in text
    assert "out of memory in a tile" in caplog.text


# ----------------------------------------------------------------------------- results are not kept for ever


def _done(c, data: bytes) -> dict:
    res = c.post("/jobs", files={"image": ("f.png", data, "image/png")})
    final = json.loads(res.text.splitlines()[-1])
    assert final["state"] == "done", final
    return final


def test_a_fetched_result_stays_for_a_grace_window_then_answers_410(restorer):
    app = webapp.create_app(restorer, examples=False, fetched_grace_s=0.5)
    with TestClient(app) as c:
        final = _done(c, face_png(16)[1])
        time.sleep(0.7)  # not fetched yet: still kept
        for key in ("result", "bicubic", "input", "result"):  # what the page fetches, and once more
            assert c.get(final[key]).status_code == 200
        assert c.get(f"/jobs/{final['id']}").status_code == 200
        time.sleep(0.7)
        for key in ("result", "bicubic", "input"):
            _one_line(c.get(final[key]), 410, "no longer on the server", "fetched", "Restore the picture again")
        _one_line(c.get(f"/jobs/{final['id']}"), 410, "no longer on the server")
        _one_line(c.get("/jobs/never-was/result.png"), 404, "no such job")
        # POST /restore delivers its result in the answer: the job counts as fetched at once
        res = c.post("/restore", files={"image": ("f.png", face_png(16)[1], "image/png")})
        job_id = res.headers["x-facesr-job"]
        assert c.get(f"/jobs/{job_id}/bicubic.png").status_code == 200
        time.sleep(0.7)
        assert c.get(f"/jobs/{job_id}/bicubic.png").status_code == 410


def test_results_are_bounded_in_count_and_bytes_and_dropped_on_time(restorer):
    _, one = face_png(24)
    probe = webapp.create_app(restorer, examples=False)
    with TestClient(probe) as c:
        _done(c, one)
        _, per_job = probe.state.queue.kept()
    app = webapp.create_app(restorer, examples=False, keep_bytes=int(2.5 * per_job), keep_seconds=1.0)
    with TestClient(app) as c:
        ids = [_done(c, one)["id"] for _ in range(4)]
        assert app.state.queue.kept() == (2, 2 * per_job)  # the byte cap keeps the two newest
        for old in ids[:2]:
            _one_line(c.get(f"/jobs/{old}/result.png"), 410, "made room for newer results")
        assert c.get(f"/jobs/{ids[3]}/result.png").status_code == 200
        # unfetched results go after keep_seconds, even if no request comes to notice it
        last = weakref.ref(app.state.queue.get(ids[2]))
        deadline = time.monotonic() + 10
        while last() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
            gc.collect()
        assert last() is None
        _one_line(c.get(f"/jobs/{ids[2]}/result.png"), 410, "ended more than 1 second ago")
    app = webapp.create_app(restorer, examples=False, keep_finished=1)
    with TestClient(app) as c:
        first, second = _done(c, one)["id"], _done(c, one)["id"]
        assert c.get(f"/jobs/{first}").status_code == 410 and c.get(f"/jobs/{second}").status_code == 200
    # over the cap, a result already fetched goes before an older one nobody has fetched yet
    app = webapp.create_app(restorer, examples=False, keep_finished=2)
    with TestClient(app) as c:
        unfetched, fetched = _done(c, one), _done(c, one)
        assert c.get(fetched["result"]).status_code == 200
        _done(c, one)
        assert c.get(unfetched["result"]).status_code == 200 and c.get(fetched["input"]).status_code == 410


# ----------------------------------------------------------------------------- connections


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(the server closed ``sock`` within ``seconds``, what it sent before closing)."""
    sock.settimeout(0.05)
    got, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


def test_partial_headers_are_answered_408_and_closed_within_the_timeout(restorer):
    limits = ConnectionLimits(header_timeout_s=0.5)
    with LiveServer(webapp.create_app(restorer, examples=False), limits) as srv:
        t0 = time.monotonic()
        socks = [srv.raw(b"POST /restore HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(30)]
        results = [_closed_within(s, 5.0) for s in socks]
        took = time.monotonic() - t0
        assert all(closed for closed, _ in results), "a connection with partial headers stayed open"
        assert all(got.startswith(b"HTTP/1.1 408 ") for _, got in results)
        assert took < 5.0
        for s in socks:
            s.close()
        # a connection that sends nothing at all is closed the same way
        closed, _ = _closed_within(srv.raw(b""), 5.0)
        assert closed
        # a keep-alive connection that starts a second request and stalls: closed too
        s = srv.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
        s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        closed, got = _closed_within(s, 5.0)
        assert closed and b"408" in got
        # headers sent slowly but within the bound still work
        s = srv.raw(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.2)
        s.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
        closed, got = _closed_within(s, 5.0)
        assert got.startswith(b"HTTP/1.1 200 ")
        assert srv.health()["status"] == "ok"


def test_connections_beyond_the_cap_get_503_and_oversized_headers_400(restorer):
    limits = ConnectionLimits(header_timeout_s=1.0, max_connections=4)
    with LiveServer(webapp.create_app(restorer, examples=False), limits) as srv:
        held = [srv.raw(b"GET /healthz HTTP/1.1\r\n") for _ in range(4)]
        time.sleep(0.2)
        closed, got = _closed_within(srv.raw(b""), 2.0)
        assert closed and got.startswith(b"HTTP/1.1 503 ") and b"retry-after: 30" in got.lower()
        assert b"too many connections" in got
        for s in held:
            assert _closed_within(s, 3.0)[0]  # the header timeout frees them
            s.close()
        assert srv.health()["status"] == "ok"
        # headers still coming past 16 KiB: refused at once, long before the header timeout
        s = srv.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (32 * 1024))
        closed, got = _closed_within(s, 0.8)
        assert closed and got.startswith(b"HTTP/1.1 400 ")


# ----------------------------------------------------------------------------- the command line


def _serve(monkeypatch, restorer, *argv):
    import uvicorn

    from facesr.inference import Restorer as R

    seen = {}

    def ctrl_c(self, sockets=None):
        seen["config"] = self.config
        raise KeyboardInterrupt

    monkeypatch.setattr(R, "from_checkpoint", staticmethod(lambda checkpoint=None, device="auto", **kw: restorer))
    monkeypatch.setattr(uvicorn.Server, "run", ctrl_c)
    status = cli.main(["serve", "--port", "0", "--device", "cpu", *argv])
    if "config" in seen:
        seen["config"].app.state.queue.close()
    return status, seen.get("config")


def test_cli_max_pixels_is_megapixels_and_the_old_count_still_works(monkeypatch, capsys, restorer):
    status, config = _serve(
        monkeypatch,
        restorer,
        "--max-pixels",
        "0.25",
        "--max-faces",
        "5",
        "--max-connections",
        "9",
        "--header-timeout",
        "2.5",
        "--send-timeout",
        "7",
    )
    err = capsys.readouterr().err
    assert status == 0 and "warning" not in err
    service = config.app.state.service
    assert service.config.max_pixels == 250_000 and service.config.max_faces == 5
    assert config.http.limits == ConnectionLimits(header_timeout_s=2.5, max_connections=9, send_timeout_s=7)
    status, config = _serve(monkeypatch, restorer)
    capsys.readouterr()
    assert config.app.state.service.config.max_pixels == 1024 * 1024
    status, config = _serve(monkeypatch, restorer, "--max-pixels", "262144")
    err = capsys.readouterr().err
    assert status == 0 and config.app.state.service.config.max_pixels == 262144
    warning = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warning) == 1 and "pixel count" in warning[0] and "megapixels" in warning[0]
    for bad in ("0", "-1", "inf", "nan", "1e-9"):
        assert _serve(monkeypatch, restorer, "--max-pixels", bad)[0] == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--max-pixels" in err and "Traceback" not in err
    for flag in ("--max-faces", "--max-connections", "--header-timeout", "--send-timeout"):
        assert _serve(monkeypatch, restorer, flag, "0")[0] == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flag in err


def test_pixel_cap_message_says_over_the_cap(restorer):
    with TestClient(webapp.create_app(restorer, examples=False, max_pixels=100 * 100)) as c:
        res = c.post(
            "/restore", files={"image": ("big.png", png_bytes(np.zeros((101, 100, 3), np.uint8)), "image/png")}
        )
        text = _one_line(res, 413, "100 × 101", "over this server's cap of 10,000 pixels")
        assert "unreadable" not in text and "not a picture" not in text


# ----------------------------------------------------------------------------- stopping

STOPPABLE_SERVER = """
import socket, sys
sys.path.insert(0, sys.argv[1])
from web_support import GatedRestorer
from facesr.web.app import create_app
from facesr.web.server import server_for
restorer = GatedRestorer()
restorer.gate.clear()  # every job is held in its first tile, as in a long forward pass
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(16)  # connections wait in the backlog until uvicorn runs
print(sock.getsockname()[1], flush=True)
server_for(create_app(restorer, examples=False), log_level="critical").run(sockets=[sock])
"""


def test_sigterm_with_a_job_running_stops_the_server_within_two_seconds(tmp_path):
    import http.client
    import signal
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen(
        [sys.executable, "-c", STOPPABLE_SERVER, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())
        conns, body = [], face_png(16)[1]
        for _ in range(2):  # one runs (held), one waits
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("POST", "/restore", body=body, headers={"content-type": "image/png"})
            conns.append(c)
        deadline = time.monotonic() + 30
        while True:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            probe.request("GET", "/healthz")
            h = json.loads(probe.getresponse().read())
            probe.close()
            if (h["running"], h["queued"]) == (1, 1) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert (h["running"], h["queued"]) == (1, 1), h
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        took = time.monotonic() - t0
        for c in conns:
            r = c.getresponse()
            text = r.read().decode()
            assert r.status == 503 and "stopped before restoring" in text and "Traceback" not in text
        assert took < 2.0, f"the server took {took:.1f} s to stop"
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _big_answer_app(size: int):
    """An ASGI app whose every answer is ``size`` bytes (in 1 MiB sends), and a list of how its sends ended."""
    ended: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(size).encode())]})
        chunk = b"x" * 2**20
        try:
            for start in range(0, size, len(chunk)):
                more = start + len(chunk) < size
                await send({"type": "http.response.body", "body": chunk[: size - start], "more_body": more})
            ended.append("sent")
        except OSError as exc:
            ended.append(type(exc).__name__)

    return app, ended


def _unread_client(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # so the server's side fills quickly
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    return s


def _poll(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_client_that_stops_reading_an_answer_is_cut_off_after_the_send_timeout():
    app, ended = _big_answer_app(64 * 2**20)
    with LiveServer(app, ConnectionLimits(send_timeout_s=0.5)) as srv:
        s = _unread_client(srv.port)
        t0 = time.monotonic()
        # the app's sends stop blocking only when the connection is gone (uvicorn then drops the rest)
        assert _poll(lambda: bool(ended), 10.0), "a client that stopped reading held its connection"
        assert time.monotonic() - t0 < 5.0
        assert _poll(lambda: not srv.server.server_state.connections, 2.0)
        s.settimeout(5)
        got = b""
        try:
            while chunk := s.recv(2**20):
                got += chunk
        except ConnectionResetError:  # aborted: the server's unread bytes were dropped
            pass
        s.close()
        assert got.startswith(b"HTTP/1.1 200 ") and len(got) < 64 * 2**20


def test_a_client_that_reads_slowly_gets_the_whole_answer():
    size = 4 * 2**20
    app, ended = _big_answer_app(size)
    with LiveServer(app, ConnectionLimits(send_timeout_s=0.5)) as srv:
        s = _unread_client(srv.port)  # reads 4 KiB at a time: the server's buffer fills and drains, again and again
        s.settimeout(10)
        got = b""
        while not got.endswith(b"x" * 64) or len(got) < size:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        s.close()
        assert ended == ["sent"] and got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"x" * size)
