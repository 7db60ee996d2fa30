"""Server-side tests of ``facesr serve``: the HTTP API, the job queue, disconnects and the CLI.

API errors use FastAPI's test client; queue cap, disconnects and stalled uploads use a real
uvicorn server on 127.0.0.1 (a test client cannot hang up or stall).  Slow jobs are held
at a gate (see web_support.GatedRestorer), never timed.
"""

from __future__ import annotations

import json
import time
import warnings

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("uvicorn", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("multipart", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("httpx", reason="httpx (the test client's transport) is not installed")
with warnings.catch_warnings():  # starlette prefers httpx2 but works with httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

import faces_synth as S
from conftest import bomb_png
from facesr import cli
from facesr.inference import Restorer
from facesr.web import app as webapp
from facesr.web.images import body_limit, decode_image
from facesr.web.jobs import CANCELLED, DONE, Job, JobQueue, QueueFull
from web_support import (
    GatedRestorer,
    LiveServer,
    aligned_face,
    decode_png,
    face_png,
    group_photo,
    has_face_detector,
    multipart,
    png_bytes,
    raw_post,
    thread_results,
)

MAX_PIXELS = 96 * 96


@pytest.fixture(scope="module")
def restorer():
    return GatedRestorer(seed=0)


@pytest.fixture
def gated(restorer):
    restorer.reset()
    yield restorer
    restorer.gate.set()


@pytest.fixture(scope="module")
def client(restorer):
    app = webapp.create_app(restorer, max_pixels=MAX_PIXELS, max_queued=4)
    with TestClient(app) as c:
        yield c


def _post(client, data: bytes, name: str = "face.png", path: str = "/restore", **kw):
    return client.post(path, files={"image": (name, data, "image/png")}, **kw)


def _assert_plain_error(res, status: int, *words: str) -> str:
    assert res.status_code == status, (res.status_code, res.text)
    assert res.headers["content-type"].startswith("text/plain")
    text = res.text
    assert text.endswith("\n") and "\n" not in text.rstrip("\n"), text  # exactly one line
    for bad in ("Traceback", "b'", "\\x", "--max", "Error:", "PIL", "Pillow", "Decompression"):
        assert bad not in text, text  # no Python reprs, flags or library internals
    for w in words:
        assert w in text, text
    return text


# ----------------------------------------------------------------------------- page and API


def test_page_is_static_files_with_strict_csp(client):
    res = client.get("/")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    html = res.text
    assert '<script src="/static/app.js"' in html and 'href="/static/app.css"' in html
    assert 'action="/restore"' in html and 'name="image"' in html  # works without JavaScript too
    assert 'id="split"' in html and 'id="cancel"' in html and 'id="download"' in html
    csp = res.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    for path in ("/static/app.js", "/static/app.css"):
        r = client.get(path)
        assert r.status_code == 200 and len(r.text) > 1000
        assert "http://" not in r.text and "https://" not in r.text  # no external resources
    assert "http://" not in html.replace("http://HOST", "") and "https://" not in html
    _assert_plain_error(client.get("/nope"), 404, "/nope")
    res = client.get("/restore")
    _assert_plain_error(res, 405, "/restore")
    assert "POST" in res.headers.get("allow", "")


def test_restore_returns_the_models_png(client, gated):
    img, data = face_png(24, seed=1)
    res = _post(client, data, name="my face.png")
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    assert res.headers["x-facesr-input-size"] == "24x24" and res.headers["x-facesr-output-size"] == "96x96"
    assert 'filename="my face_facesr_x4.png"' in res.headers["content-disposition"]
    assert "x-facesr-note" not in res.headers
    np.testing.assert_array_equal(decode_png(res.content), gated.reference(img))


def test_restore_raw_chunked_and_alpha(client, gated):
    img, data = face_png(20, seed=2)
    want = gated.reference(img)
    res = client.post("/restore", content=data, headers={"content-type": "image/png"})
    assert res.status_code == 200
    np.testing.assert_array_equal(decode_png(res.content), want)
    res = client.post("/restore", content=iter([data[:50], data[50:]]), headers={"content-type": "image/png"})
    assert res.status_code == 200
    np.testing.assert_array_equal(decode_png(res.content), want)
    rgba, data = face_png(12, seed=3, channels=4)
    res = _post(client, data)
    out = decode_png(res.content)
    assert out.shape == (48, 48, 4)
    np.testing.assert_array_equal(out, gated.reference(rgba))


def test_api_errors_are_plain_one_liners(client):
    _assert_plain_error(_post(client, b"hello, this is a text file"), 400, "not a picture", "PNG, JPEG")
    _assert_plain_error(
        client.post("/restore", content=b"\x00\x01garbage", headers={"content-type": "image/png"}), 400, "not a picture"
    )
    _assert_plain_error(_post(client, face_png(16)[1][:70]), 400, "damaged or incomplete")
    _assert_plain_error(_post(client, b""), 400, "empty")
    _assert_plain_error(client.post("/restore", content=b"", headers={"content-type": "image/png"}), 400, "empty")
    body, ctype = multipart({"file": ("a.png", face_png(8)[1])})
    _assert_plain_error(client.post("/restore", content=body, headers={"content-type": ctype}), 400, "'image' field")
    _assert_plain_error(
        client.post("/restore", content=b"x", headers={"content-type": "text/plain"}), 400, "multipart/form-data"
    )
    _assert_plain_error(_post(client, face_png(16)[1], path="/restore?mode=sketch"), 400, "mode")


def test_too_large_is_413_with_the_servers_own_limit(client):
    text = _assert_plain_error(
        _post(client, png_bytes(np.zeros((97, 96, 3), np.uint8))), 413, "96 × 97", "9,216 pixels", "96 × 96"
    )
    assert "Crop" in text
    # a header claiming 400 million pixels: refused before decoding, without Pillow's own limit
    text = _assert_plain_error(_post(client, bomb_png(20000, 20000)), 413, "9,216 pixels")
    assert "178" not in text
    _assert_plain_error(_post(client, bomb_png(500, 500)), 413, "500 × 500")
    # a body beyond any image of the allowed size is refused from its Content-Length
    huge = b"\x89PNG" + bytes(body_limit(MAX_PIXELS))
    _assert_plain_error(client.post("/restore", content=huge, headers={"content-type": "image/png"}), 413, "MB")
    # ...and a chunked one (no Content-Length) once it passes the cap
    _assert_plain_error(
        client.post("/restore", content=iter([huge[:1000], huge[1000:]]), headers={"content-type": "image/png"}),
        413,
        "MB",
    )


def test_healthz_info_and_examples(client):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["scale"] == 4 and h["max_queued"] == 4 and h["queued"] == 0
    info = client.get("/api/info").json()
    assert info["max_pixels"] == MAX_PIXELS and info["max_upload_bytes"] == body_limit(MAX_PIXELS)
    assert info["photo_mode"] is has_face_detector() and "{w}" in info["face_note"]
    from facesr.assets import sample_face_path
    from facesr.data.datasets import degrade_offline, prepare_hq
    from facesr.data.degradations import DegradationCfg
    from facesr.io.images import read_rgb

    hq = prepare_hq(read_rgb(sample_face_path()), 512, "area", "face")
    examples = info["examples"]
    assert len(examples) >= 3
    for ex in examples:
        img = decode_png(client.get(ex["url"]).content)
        assert img.shape == (128, 128, 3) and (ex["width"], ex["height"]) == (128, 128)
    # the degraded examples are exactly facesr's own training degradation of the bundled face
    lq, _ = degrade_offline(hq, DegradationCfg(), 0, "web_example")
    np.testing.assert_array_equal(decode_png(client.get(examples[1]["url"]).content), lq)
    assert client.get("/examples/nope.png").status_code == 404


def test_large_input_gets_a_face_crop_note(restorer):
    app = webapp.create_app(restorer, max_pixels=400 * 400)
    with TestClient(app) as c:
        res = _post(c, png_bytes(np.full((300, 280, 3), 128, np.uint8)))
        assert res.status_code == 200 and res.headers["x-facesr-output-size"] == "1120x1200"
        assert "280 x 300" in res.headers["x-facesr-note"] and "crop" in res.headers["x-facesr-note"]


def test_whole_photo_mode_is_feature_detected(client, restorer):
    if not hasattr(Restorer, "restore_photo"):  # not there yet: refused in plain words
        _assert_plain_error(_post(client, face_png(16)[1], path="/restore?mode=photo"), 400, "Whole-photo", "Crop")

    class PhotoRestorer(GatedRestorer):
        def restore_photo(self, image, progress=None):
            progress(0, 1)
            progress(1, 1)
            return np.full((image.shape[0] * 4, image.shape[1] * 4, 3), 7, np.uint8)

    pr = PhotoRestorer()
    with TestClient(webapp.create_app(pr, examples=False, detector=S.FakeDetector([]))) as c:
        assert c.get("/api/info").json()["photo_mode"] is True
        body, ctype = multipart({"image": ("p.png", face_png(16)[1]), "mode": "photo"})
        res = c.post("/restore", content=body, headers={"content-type": ctype})
        assert res.status_code == 200 and (decode_png(res.content) == 7).all()
        assert "x-facesr-faces" not in res.headers  # an image, not a PhotoResult: no detections to report
        assert pr.calls == []  # the face path was not used
        assert _post(c, face_png(16)[1]).status_code == 200 and len(pr.calls) == 1


def _photo_job(client, data: bytes, name: str = "group.png") -> list[dict]:
    body, ctype = multipart({"image": (name, data), "mode": "photo"})
    res = client.post("/jobs", content=body, headers={"content-type": ctype})
    assert res.status_code == 200, res.text
    return [json.loads(ln) for ln in res.text.splitlines() if ln.strip()]


def _expected_boxes(faces, up):
    return [[round((v + 0.5) * up, 1) for v in f.box] for f in faces]


def test_whole_photo_job_restores_each_face_and_reports_boxes(restorer):
    """Always runs: the real restore_photo pipeline on the tiny model, with a perfect stand-in detector."""
    lq, faces = group_photo()
    restorer.reset()
    detector = S.FakeDetector(faces)
    app = webapp.create_app(restorer, max_pixels=400 * 300, examples=False, detector=detector)
    with TestClient(app) as c:
        info = c.get("/api/info").json()
        assert info["photo_mode"] is True and info["photo_scale"] == 2 and info["photo_suggest_side"] == 256
        lines = _photo_job(c, png_bytes(lq))
        final = lines[-1]
        assert final["state"] == "done" and final["mode"] == "photo" and final["unit"] == "face", final
        assert (final["done"], final["total"]) == (2, 2)  # the 22-pixel face is not counted
        assert final["scale"] == 2 and final["output_size"] == [640, 480] and final["input_size"] == [320, 240]
        assert final["download_name"] == "group_facesr_x2.png" and final["note"] is None
        assert (final["faces_restored"], final["faces_skipped"]) == (2, 1)
        got = final["faces"]
        assert [f["restored"] for f in got] == [True, True, False] and got[2]["skipped"] == "small"
        assert [f["box"] for f in got] == _expected_boxes(faces, 2)  # output pixels, from the top-left corner
        assert all(len(f["landmarks"]) == 5 for f in got)
        want = Restorer.restore_photo(restorer, lq, detector=S.FakeDetector(faces), upscale=2).image
        np.testing.assert_array_equal(decode_png(c.get(final["result"]).content), want)
        np.testing.assert_array_equal(
            decode_png(c.get(final["bicubic"]).content), cv2.resize(lq, (640, 480), interpolation=cv2.INTER_CUBIC)
        )
        np.testing.assert_array_equal(decode_png(c.get(final["input"]).content), lq)
        assert restorer.calls == []  # faces go through restore_rgb, never the whole picture through restore
        # the one-shot route says how many faces it restored
        body, ctype = multipart({"image": ("group.png", png_bytes(lq)), "mode": "photo"})
        res = c.post("/restore", content=body, headers={"content-type": ctype})
        assert res.status_code == 200 and res.headers["x-facesr-output-size"] == "640x480"
        assert (res.headers["x-facesr-faces"], res.headers["x-facesr-faces-skipped"]) == ("2", "1")
        assert "group_facesr_x2.png" in res.headers["content-disposition"]
        # a photo without faces is simply enlarged
        detector.faces = []
        lines = _photo_job(c, png_bytes(S.background(60, 80)))
        assert lines[-1]["state"] == "done" and lines[-1]["faces"] == [] and lines[-1]["faces_restored"] == 0


def test_whole_photo_progress_is_per_face_and_cancels():
    from facesr.web.photo import call_restore_photo

    lq, faces = group_photo()
    one_by_one = GatedRestorer(batch_size=1)
    seen = []
    out, found, skipped, up, over = call_restore_photo(
        one_by_one.restore_photo, lq, lambda d, t: seen.append((d, t)), detector=S.FakeDetector(faces)
    )
    assert seen == [(0, 0), (0, 2), (1, 2), (2, 2)] and (len(found), len(skipped), up, over) == (2, 1, 2, [])
    assert out.shape == (480, 640, 3)

    # cancelled while the detector runs: no face is restored
    held, release = __import__("threading").Event(), __import__("threading").Event()

    class SlowDetector(S.FakeDetector):
        def __call__(self, rgb):
            held.set()
            assert release.wait(10)
            return super().__call__(rgb)

    restored = []
    one_by_one.restore_rgb = lambda crops, progress=None: (
        restored.append(len(crops)) or Restorer.restore_rgb(one_by_one, crops, progress)
    )
    app = webapp.create_app(one_by_one, examples=False, detector=SlowDetector(faces))
    with TestClient(app):
        queue = app.state.queue
        job = queue.submit(Job(image=lq, mode="photo", unit="face"))
        assert held.wait(10)
        queue.cancel(job, "test")
        release.set()
        assert job.wait(10) and job.state == CANCELLED and restored == []
        # cancelled after the first face: the second is never restored
        job = Job(image=lq, mode="photo", unit="face")
        one_by_one.restore_rgb = lambda crops, progress=None: (
            (restored.append(len(crops)), queue.cancel(job))[0] or Restorer.restore_rgb(one_by_one, crops, progress)
        )
        queue.submit(job)
        assert job.wait(10) and job.state == CANCELLED and restored == [1] and (job.done, job.total) == (1, 2)


def test_whole_photo_mode_without_the_face_detector(restorer, monkeypatch):
    monkeypatch.setattr(
        webapp,
        "default_detector_missing",
        lambda: "face detection needs the 'faces' extra: pip install \"facesr[faces]\"",
    )
    with TestClient(webapp.create_app(restorer, examples=False)) as c:
        assert c.get("/api/info").json()["photo_mode"] is False
        body, ctype = multipart({"image": ("group.png", face_png(16)[1]), "mode": "photo"})
        text = _assert_plain_error(
            c.post("/jobs", content=body, headers={"content-type": ctype}),
            503,
            "face detector is not installed",
            "Crop the picture to one face",
        )
        assert 'pip install "facesr[faces]"' in text  # a hint for whoever runs the server
        assert _post(c, face_png(16)[1]).status_code == 200  # face crops still work


@pytest.mark.skipif(not has_face_detector(), reason="the faces extra (dlib) is not installed")
def test_whole_photo_with_the_real_detector(restorer):
    lq, _ = group_photo(aligned_face())
    restorer.reset()
    app = webapp.create_app(restorer, max_pixels=400 * 300, examples=False)
    with TestClient(app) as c:
        assert c.get("/api/info").json()["photo_mode"] is True
        final = _photo_job(c, png_bytes(lq))[-1]
        assert final["state"] == "done" and (final["faces_restored"], final["faces_skipped"]) == (2, 0), final
        detector = app.state.detector.get()  # dlib's HOG detector, loaded by the job
        found = detector(lq)
        assert len(found) == 2  # the 22-pixel face is below what the detector sees
        assert [f["box"] for f in final["faces"]] == _expected_boxes(found, 2)
        want = Restorer.restore_photo(restorer, lq, detector=detector, upscale=2).image
        np.testing.assert_array_equal(decode_png(c.get(final["result"]).content), want)


def test_download_name():
    dn = webapp.download_name
    assert dn("face.png", 4) == "face_facesr_x4.png"
    assert dn("C:\\Users\\me\\Bild Öl.jpeg", 4) == "Bild Öl_facesr_x4.png"
    assert dn("../../etc/passwd", 4) == "passwd_facesr_x4.png"
    assert dn('a"b<c>.png', 2) == "abc_facesr_x2.png"
    assert dn("", 4) == dn("???.png", 4) == "image_facesr_x4.png"


def test_decode_matches_read_any(tmp_path):
    from PIL import Image

    from facesr.io.images import read_any

    rng = np.random.default_rng(7)
    files = []
    p = tmp_path / "rgb16.png"
    cv2.imwrite(str(p), rng.integers(0, 65536, (9, 7, 3), dtype=np.uint16))
    files.append(p)
    p = tmp_path / "gray16.png"
    cv2.imwrite(str(p), rng.integers(0, 65536, (9, 7), dtype=np.uint16))
    files.append(p)
    p = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(p, "JPEG", exif=exif)
    files.append(p)
    p = tmp_path / "palette.gif"
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).convert("P").save(p)
    files.append(p)
    p = tmp_path / "gray_alpha.png"
    Image.fromarray(rng.integers(0, 256, (8, 6, 2), dtype=np.uint8), "LA").save(p)
    files.append(p)
    for p in files:
        rgb, alpha = read_any(p)
        want = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
        got = decode_image(p.read_bytes(), MAX_PIXELS)
        assert got.dtype == np.uint8 and got.shape == want.shape, p.name
        np.testing.assert_array_equal(got, want, err_msg=p.name)


# ----------------------------------------------------------------------------- the API's own documentation

PUBLIC_ROUTES = {
    "/restore": {"post"},
    "/jobs": {"post"},
    "/jobs/{job_id}": {"get", "delete"},
    "/jobs/{job_id}/cancel": {"post"},
    "/jobs/{job_id}/result.png": {"get"},
    "/jobs/{job_id}/bicubic.png": {"get"},
    "/jobs/{job_id}/input.png": {"get"},
    "/healthz": {"get"},
    "/api/info": {"get"},
    "/examples/{example_id}.png": {"get"},
}


def test_openapi_lists_the_routes_and_marks_cancel_deprecated(client):
    res = client.get("/openapi.json")
    assert res.status_code == 200
    spec = res.json()
    assert {p: set(ops) for p, ops in spec["paths"].items()} == PUBLIC_ROUTES
    deprecated = {(p, m) for p, ops in spec["paths"].items() for m, op in ops.items() if op.get("deprecated")}
    assert deprecated == {("/jobs/{job_id}/cancel", "post")}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], (path, method)  # errors are plain text, never FastAPI's JSON
            assert op.get("description") or op["responses"]["200"].get("description"), (path, method)
    restore = spec["paths"]["/restore"]["post"]
    assert {"multipart/form-data", "image/*"} <= set(restore["requestBody"]["content"])
    assert set(restore["responses"]) >= {"200", "400", "408", "413", "503"}
    assert "image/png" in restore["responses"]["200"]["content"]
    job_fields = set(spec["components"]["schemas"]["JobState"]["properties"])
    final = json.loads(
        client.post("/jobs", files={"image": ("a.png", face_png(16)[1], "image/png")}).text.splitlines()[-1]
    )
    assert set(final) <= job_fields and {"result", "bicubic", "input", "output_size", "scale"} <= set(final)
    from facesr.web.photo import face_boxes

    box = face_boxes(group_photo()[1][:1], [], 2)[0]  # what whole-photo jobs send for each face
    assert set(box) == set(spec["components"]["schemas"]["FaceBox"]["properties"])
    health = spec["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert health["$ref"].endswith("/Health")


def test_docs_page_is_swagger_with_its_own_policy(client):
    import base64
    import hashlib
    import re

    from facesr.web.responses import CSP

    res = client.get("/docs")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in res.text and "/openapi.json" in res.text
    csp = res.headers["content-security-policy"]
    inline = re.findall(r"<script>(.*?)</script>", res.text, flags=re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp and res.headers["x-content-type-options"] == "nosniff"
    assert client.get("/").headers["content-security-policy"] == CSP  # the page keeps its own
    assert client.get("/redoc").status_code == 404


def test_deprecated_cancel_route_still_cancels_and_says_so(client, gated):
    import logging

    class Lines(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    lines = Lines()
    logger = logging.getLogger("facesr.web")
    logger.addHandler(lines)
    queue = client.app.state.queue
    gated.gate.clear()
    try:
        running = queue.submit(Job(image=face_png(16)[0]))
        assert gated.started.wait(10)
        waiting = queue.submit(Job(image=face_png(16, seed=2)[0]))
        res = client.post(f"/jobs/{waiting.id}/cancel")
        assert res.status_code == 200 and res.headers["deprecation"] == "true"
        assert res.headers["link"] == f'</jobs/{waiting.id}>; rel="successor-version"'
        assert res.json()["state"] == "cancelled" and waiting.state == CANCELLED and "result" not in res.json()
        res = client.post(f"/jobs/{running.id}/cancel")  # a running job stops at its next tile
        assert res.status_code == 200 and res.headers["deprecation"] == "true" and running.cancel_requested
        gated.gate.set()
        assert running.wait(10) and running.state == CANCELLED
        _assert_plain_error(client.post("/jobs/nope/cancel"), 404, "no such job")
        assert client.post("/jobs/nope/cancel").headers["deprecation"] == "true"
        res = client.delete(f"/jobs/{running.id}")  # the route to use instead: no deprecation
        assert res.status_code == 200 and "deprecation" not in res.headers and res.json()["state"] == "cancelled"
    finally:
        gated.gate.set()
        logger.removeHandler(lines)
    assert sum("deprecated" in ln and "DELETE /jobs/{id}" in ln for ln in lines.lines) == 4, lines.lines  # one per call
    js = client.get("/static/app.js").text
    assert "/cancel" not in js and 'method: "DELETE"' in js  # the page itself uses DELETE /jobs/ID


# ----------------------------------------------------------------------------- progress and the queue


def test_restorer_progress_is_per_tile_and_can_cancel():
    r = GatedRestorer(tile=16, batch_size=1)
    img = face_png(48, seed=4)[0]
    seen = []
    out = r.restore(img, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(k, 9) for k in range(10)]
    np.testing.assert_array_equal(out, Restorer.restore(r, img))

    class Stop(Exception):
        pass

    def stop_after_two(done, total):
        if done == 2:
            raise Stop()

    r.passes = 0
    with pytest.raises(Stop):
        Restorer.restore(r, img, progress=stop_after_two)


def test_job_queue_positions_cap_and_cancel():
    ran, gate = [], __import__("threading").Event()

    def run(job, progress):
        progress(0, 1)
        gate.wait(10)
        progress(1, 1)
        ran.append(job.name)
        return job.name

    q = JobQueue(run, max_queued=2)
    try:
        jobs = [Job(image=np.zeros((4, 4, 3), np.uint8), name=n) for n in "abc"]
        q.submit(jobs[0])
        deadline = time.monotonic() + 5
        while jobs[0].state != "running" and time.monotonic() < deadline:
            time.sleep(0.005)
        q.submit(jobs[1])
        q.submit(jobs[2])
        with pytest.raises(QueueFull, match="busy: 2 pictures"):
            q.submit(Job(image=np.zeros((4, 4, 3), np.uint8)))
        assert [q.position(j) for j in jobs] == [0, 1, 2]
        assert q.cancel(jobs[1]) and jobs[1].state == CANCELLED and jobs[1].is_finished
        assert q.position(jobs[2]) == 1 and q.stats() == {"running": 1, "queued": 1, "max_queued": 2}
        assert q.snapshot(jobs[0])["eta_s"] is None  # nothing measured yet: no made-up estimate
        q.note_speed(2.0, 8)  # 0.25 s per pixel, as a warm-up run would measure
        snap = q.snapshot(jobs[0])
        assert snap["state"] == "running" and 0 < snap["eta_s"] <= 4.0  # 16 pixels, minus time already spent
        gate.set()
        assert jobs[2].wait(10) and jobs[0].state == DONE and jobs[2].state == DONE
        assert ran == ["a", "c"] and q.get(jobs[2].id).result == "c"
        assert not q.cancel(jobs[2])  # finished: nothing to cancel
    finally:
        gate.set()
        q.close()


def test_queue_full_message_counts_one_picture_in_the_singular():
    gate = __import__("threading").Event()
    q = JobQueue(lambda job, progress: gate.wait(10), max_queued=1)
    try:
        running, waiting = (Job(image=np.zeros((4, 4, 3), np.uint8), name=n) for n in "ab")
        q.submit(running)
        deadline = time.monotonic() + 5
        while running.state != "running" and time.monotonic() < deadline:
            time.sleep(0.005)
        q.submit(waiting)
        with pytest.raises(QueueFull, match="busy: 1 picture is already waiting"):
            q.check_room()
    finally:
        gate.set()
        q.close()


@pytest.fixture
def live(gated):
    app = webapp.create_app(gated, max_pixels=MAX_PIXELS, max_queued=4, upload_timeout_s=0.5, examples=False)
    with LiveServer(app) as srv:
        yield srv


def _restore(srv, data: bytes, name: str = "face.png"):
    body, ctype = multipart({"image": (name, data)})
    return srv.post("/restore", body, {"Content-Type": ctype})


def test_twenty_concurrent_requests_succeed_or_get_503(live, gated):
    imgs = [face_png(16, seed=10 + k) for k in range(20)]
    gated.gate.clear()
    with thread_results(_restore, [(live, imgs[0][1])]) as first:
        assert gated.started.wait(10)  # the first one holds the model
        with thread_results(_restore, [(live, d) for _, d in imgs[1:]]) as rest:
            live.wait_until(lambda h: h["queued"] == 4, what="4 queued jobs")
            deadline = time.monotonic() + 20  # every other request has had its answer before the gate opens
            while sum(1 for r in rest if isinstance(r, tuple) and r[0] == 503) < 15 and time.monotonic() < deadline:
                time.sleep(0.01)
            gated.gate.set()
    results = first + rest
    assert not [r for r in results if isinstance(r, Exception)], results
    ok = [(i, r) for i, r in enumerate(results) if r[0] == 200]
    busy = [r for r in results if r[0] == 503]
    assert len(ok) == 1 + 4 and len(busy) == 15, [r[0] for r in results]
    for i, (_status, _headers, body) in ok:  # each answer is the restoration of its own request's image
        np.testing.assert_array_equal(decode_png(body), gated.reference(imgs[i][0]))
    for _status, headers, body in busy:
        assert body.decode().strip().startswith("The server is busy") and "Try again" in body.decode()
        assert headers["retry-after"].isdigit() and headers["content-type"].startswith("text/plain")
    assert len(gated.completed) == 5


def test_client_that_disconnects_while_queued_costs_nothing(live, gated):
    img_a, a = face_png(16, seed=1)
    img_b, b = face_png(16, seed=2)
    img_c, c = face_png(16, seed=3)
    gated.gate.clear()
    with thread_results(_restore, [(live, a)]) as first:
        assert gated.started.wait(10)
        body, ctype = multipart({"image": ("b.png", b)})
        sock = live.raw(raw_post("/restore", body, ctype))  # B: a whole request, then it hangs up
        live.wait_until(lambda h: h["queued"] == 1, what="B queued")
        sock.close()
        live.wait_until(lambda h: h["queued"] == 0, what="B dropped")
        # the same for a page's job stream: closing it drops the waiting job
        body, ctype = multipart({"image": ("d.png", b)})
        sock = live.raw(raw_post("/jobs", body, ctype))
        reply = b""
        while b"}\n" not in reply.partition(b"\r\n\r\n")[2]:  # headers, then the first JSON line
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
        assert b'"state": "queued"' in reply and b'"position": 1' in reply
        sock.close()
        live.wait_until(lambda h: h["queued"] == 0, what="D dropped")
        with thread_results(_restore, [(live, c)]) as third:
            live.wait_until(lambda h: h["queued"] == 1, what="C queued")
            gated.gate.set()
    assert first[0][0] == 200 and third[0][0] == 200
    np.testing.assert_array_equal(decode_png(third[0][2]), gated.reference(img_c))
    # B and D never reached the model: only A and C ran
    assert len(gated.calls) == 2
    np.testing.assert_array_equal(gated.calls[0], img_a)
    np.testing.assert_array_equal(gated.calls[1], img_c)


def _stream(live, data: bytes, name: str, lines: list, stop_when=None):
    import http.client

    body, ctype = multipart({"image": (name, data)})
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    conn.request("POST", "/jobs", body=body, headers={"Content-Type": ctype})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("content-type") == "application/x-ndjson"
    while True:
        line = r.readline()
        if not line:
            break
        lines.append(json.loads(line))
        if lines[-1]["state"] in ("done", "failed", "cancelled"):
            break
    conn.close()
    return lines


def test_job_stream_progress_result_panels_and_cancel_at_next_tile():
    tiled = GatedRestorer(tile=16, batch_size=1)
    app = webapp.create_app(tiled, max_pixels=MAX_PIXELS, examples=False)
    img, data = face_png(48, seed=5)
    with LiveServer(app) as live:
        tiled.gate_at_tile = 2  # hold the job after 2 of its 9 tiles, until the stream has reported that
        tiled.gate.clear()
        lines: list = []
        with thread_results(_stream, [(live, data, "tiled face.png", lines)]):
            try:
                deadline = time.monotonic() + 10
                while not any(ln["state"] == "running" and ln["done"] == 2 for ln in lines):
                    assert time.monotonic() < deadline, lines
                    time.sleep(0.01)
            finally:
                tiled.gate.set()
        held = [ln for ln in lines if ln["state"] == "running"][-1]
        assert held["total"] == 9 and held["position"] == 0 and held["elapsed_s"] >= 0
        final = lines[-1]
        assert final["state"] == "done" and final["total"] == 9 and final["done"] == 9
        assert final["download_name"] == "tiled face_facesr_x4.png" and final["output_size"] == [192, 192]
        import urllib.request

        get = lambda u: urllib.request.urlopen(live.url + u, timeout=10).read()
        np.testing.assert_array_equal(decode_png(get(final["result"])), Restorer.restore(tiled, img))
        np.testing.assert_array_equal(
            decode_png(get(final["bicubic"])), cv2.resize(img, (192, 192), interpolation=cv2.INTER_CUBIC)
        )
        np.testing.assert_array_equal(decode_png(get(final["input"])), img)

        # a running job stops at its next tile once cancelled
        tiled.reset()
        tiled.gate_at_tile = 3
        tiled.gate.clear()
        got: list = []
        with thread_results(_stream, [(live, data, "b.png", got)]) as res:
            try:
                deadline = time.monotonic() + 10
                while not any(ln["state"] == "running" and ln["done"] == 3 for ln in got):
                    assert time.monotonic() < deadline, got
                    time.sleep(0.01)
                job_id = got[0]["id"]
                status, _, body = live.request("DELETE", f"/jobs/{job_id}")
                assert status == 200 and json.loads(body)["id"] == job_id
            finally:
                tiled.gate.set()
        lines = res[0]
        assert lines[-1]["state"] == "cancelled" and lines[-1]["done"] == 3 and lines[-1]["total"] == 9
        assert tiled.passes == 3 and tiled.completed == []
        import urllib.error

        with pytest.raises(urllib.error.HTTPError) as e:
            get(f"/jobs/{job_id}/result.png")
        assert e.value.code == 409


def test_stalled_upload_is_408_not_a_server_fault(live):
    body, ctype = multipart({"image": ("x.png", face_png(16)[1])})
    sock = live.raw(raw_post("/restore", body[:40], ctype, length=len(body)))  # then nothing more
    sock.settimeout(10)
    t0 = time.monotonic()
    reply = b""
    while b"\n" not in reply.partition(b"\r\n\r\n")[2]:  # headers, then the one-line body
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b"upload stalled" in reply and b"TimeoutError" not in reply
    assert time.monotonic() - t0 < 5


# ----------------------------------------------------------------------------- CLI


def test_cli_fails_at_start_without_shipped_model(monkeypatch, capsys):
    import uvicorn

    import facesr.assets as assets

    monkeypatch.setattr(assets, "SHIPPED_RELPATH", ("weights", "no_such_model.safetensors"))
    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **k: pytest.fail("server started without a model"))
    assert cli.main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("facesr serve: error: no shipped model"), err


def test_cli_names_the_extra_when_missing(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi -> ImportError
    assert cli.main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'web' extra" in err and 'pip install "facesr[web]"' in err, err


def test_cli_serves_on_localhost_and_stops_on_ctrl_c(monkeypatch, capsys, restorer):
    import uvicorn

    seen = {}

    def fake_from_checkpoint(checkpoint=None, device="auto", **kw):
        seen["checkpoint"], seen["device"] = checkpoint, device
        return restorer

    def ctrl_c(self, sockets=None):
        seen["address"] = sockets[0].getsockname()
        seen["app"] = self.config.app
        raise KeyboardInterrupt

    monkeypatch.setattr(Restorer, "from_checkpoint", staticmethod(fake_from_checkpoint))
    monkeypatch.setattr(uvicorn.Server, "run", ctrl_c)
    assert (
        cli.main(["serve", "--port", "0", "--checkpoint", "x.safetensors", "--device", "cpu", "--max-queue", "3"]) == 0
    )
    out, err = capsys.readouterr()
    assert seen["checkpoint"] == "x.safetensors" and str(seen["device"]) == "cpu"
    assert seen["address"][0] == "127.0.0.1" and seen["app"].state.queue.max_queued == 3
    assert f"http://127.0.0.1:{seen['address'][1]}/" in out
    assert "stopped" in err and "Traceback" not in err
    seen["app"].state.queue.close()
    for bad in (["--max-pixels", "0"], ["--max-queue", "-1"], ["--upload-timeout", "0"], ["--port", "70000"]):
        assert cli.main(["serve", *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and bad[0] in err
