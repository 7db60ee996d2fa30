"""The ``facesr serve`` page in a real browser: Playwright for Python driving an installed Chromium.

Skips when Playwright or Chromium is missing (CI installs both: Debian's ``chromium`` and the
``browser-test`` extra; Playwright never downloads a browser here).  The model is a tiny
MSRResNet; slow jobs are held at a gate (web_support.GatedRestorer), not timed.  Set
``FACESR_SCREENSHOTS=DIR`` to keep screenshots of the desktop and phone pages.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

# Locally these tests skip without Playwright or Chromium; CI sets FACESR_REQUIRE_BROWSER=1 to fail instead.
REQUIRED = os.environ.get("FACESR_REQUIRE_BROWSER") == "1"


def _need(module: str, why: str):
    if REQUIRED:
        return __import__("importlib").import_module(module)
    return pytest.importorskip(module, reason=why)


_need("fastapi", "the web extra is not installed (pip install -e '.[web]')")
_need("uvicorn", "the web extra is not installed (pip install -e '.[web]')")
_need("multipart", "the web extra is not installed (pip install -e '.[web]')")
sync_api = _need("playwright.sync_api", "playwright is not installed (pip install -e '.[browser-test]')")


def _chromium() -> str | None:
    for c in (
        os.environ.get("FACESR_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ):
        if c and Path(c).is_file():
            return c
    return None


CHROMIUM = _chromium()
if CHROMIUM is None:
    if REQUIRED:
        raise RuntimeError("FACESR_REQUIRE_BROWSER=1 but no Chromium found (apt-get install chromium)")
    pytest.skip("no Chromium found (apt-get install chromium, or set FACESR_CHROMIUM)", allow_module_level=True)

import faces_synth as S
from facesr.web.app import create_app
from facesr.web.images import body_limit
from web_support import (
    GatedRestorer,
    LiveServer,
    aligned_face,
    decode_png,
    face_png,
    group_photo,
    has_face_detector,
    png_bytes,
)

expect = sync_api.expect
expect.set_options(timeout=10_000)
MAX_PIXELS = 600 * 600
SHOTS = os.environ.get("FACESR_SCREENSHOTS")


def _shot(page, name: str, full_page: bool = False) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="module")
def restorer():
    # tile=128: inputs larger than 128 px on a side run as tiles, so progress has steps
    return GatedRestorer(seed=0, tile=128, batch_size=1)


@pytest.fixture(scope="module")
def server(restorer):
    app = create_app(restorer, max_pixels=MAX_PIXELS, max_queued=4)
    with LiveServer(app) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


def _open(browser, server, **context):
    ctx = browser.new_context(accept_downloads=True, **context)
    page = ctx.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(server.url + "/")
    page.wait_for_selector("html[data-ready]")
    return ctx, page


@pytest.fixture
def page(browser, server, restorer):
    restorer.reset()
    ctx, page = _open(browser, server, viewport={"width": 1280, "height": 800})
    yield page
    restorer.gate.set()
    errors = page.errors
    ctx.close()
    server.wait_until(lambda h: h["running"] == 0 and h["queued"] == 0, what="an idle server")
    assert errors == [], errors


def _choose(page, name: str, data: bytes, mime: str = "image/png") -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])


def _plain(text: str) -> None:
    for bad in ("b'", "\\x", "--", "Traceback", "Error:", "Pillow", "undefined", "null"):
        assert bad not in text, text


def test_upload_restore_compare_and_download(page, restorer, server):
    img, data = face_png(32, seed=1)
    _choose(page, "alice.png", data)
    expect(page.locator("#status")).to_have_text("Ready: press Restore.")
    expect(page.locator("#thumb")).to_be_visible()
    expect(page.locator("#fname")).to_contain_text("32 × 32 pixels")
    requests = []
    page.on("request", lambda r: requests.append((r.method, r.url.replace(server.url, ""))))
    page.click("#go")
    expect(page.locator("#status")).to_contain_text("Done: 32 × 32 → 128 × 128 pixels")
    posts = [r for r in requests if r[0] == "POST"]
    assert [u for _, u in posts] == ["/jobs"], requests  # the file is uploaded once per job
    expect(page.locator("#viewer")).not_to_have_class(re.compile(r"\bempty\b"))
    assert page.eval_on_selector("#img-after", "e => [e.naturalWidth, e.naturalHeight]") == [128, 128]
    assert page.eval_on_selector("#img-before", "e => [e.naturalWidth, e.naturalHeight]") == [128, 128]
    expect(page.locator("#tag-before")).to_have_text("Bicubic ×4")

    # the slider: clicking at a quarter of the width moves the split there
    expect(page.locator("#handle")).to_be_visible()
    box = page.locator("#viewer").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    left = float(page.eval_on_selector("#handle", "e => parseFloat(e.style.left)"))
    assert abs(left - box["width"] * 0.25) <= 2
    clip = page.eval_on_selector("#after-layer", "e => e.style.clipPath")
    assert clip == f"inset(0px 0px 0px {round(left)}px)" or clip == f"inset(0 0 0 {round(left)}px)", clip
    # ...and the keyboard moves it too
    page.focus("#split")
    page.keyboard.press("End")
    assert float(page.eval_on_selector("#handle", "e => parseFloat(e.style.left)")) >= box["width"] - 2

    # the input as the left side, enlarged by pixel repetition; 1:1 zoom shows output pixels as CSS pixels
    page.click("[data-before=input]")
    expect(page.locator("#tag-before")).to_have_text("Input")
    page.wait_for_function("document.getElementById('img-before').naturalWidth === 32")
    assert "pixelated" in page.get_attribute("#img-before", "class")
    page.click("[data-zoom='1']")
    assert page.eval_on_selector("#img-after", "e => e.style.width") == "128px"
    assert page.eval_on_selector("#img-before", "e => e.style.width") == "128px"

    # the download is the server's PNG of this job, named after this file
    with page.expect_download() as info:
        page.click("#download")
    dl = info.value
    assert dl.suggested_filename == "alice_facesr_x4.png"
    got = Path(dl.path()).read_bytes()
    job = page.get_attribute("#download", "data-job")
    with urllib.request.urlopen(f"{server.url}/jobs/{job}/result.png", timeout=10) as r:
        assert got == r.read()
    np.testing.assert_array_equal(decode_png(got), restorer.reference(img))
    _shot(page, "desktop_result")


def test_new_file_while_restoring_never_mislabels(page, restorer, server):
    img_a, a = face_png(32, seed=2)
    img_b, b = face_png(32, seed=3)
    restorer.gate.clear()  # A's job will sit at the gate, running
    _choose(page, "anna.png", a)
    page.click("#go")
    assert restorer.started.wait(10)
    expect(page.locator("#progress-text")).to_contain_text("Restoring")
    _choose(page, "bob.png", b)
    # picking B drops A: no result, no download, no progress, and the status says what to do
    expect(page.locator("#status")).to_have_text("Ready: press Restore.")
    expect(page.locator("#viewer")).to_have_class(re.compile(r"\bempty\b"))
    expect(page.locator("#download")).to_be_hidden()
    expect(page.locator("#progress")).to_be_hidden()
    expect(page.locator("#go")).to_be_enabled()
    job_a = server.app.state.queue.running
    deadline = time.monotonic() + 10
    while not job_a.cancel_requested and time.monotonic() < deadline:  # the page told the server
        time.sleep(0.01)
    assert job_a.cancel_requested
    restorer.gate.set()
    server.wait_until(lambda h: h["running"] == 0, what="A's job to stop")
    assert restorer.completed == []  # A was cancelled at its next tile, never finished
    page.wait_for_timeout(300)  # were A's result to arrive late, it would show now
    expect(page.locator("#viewer")).to_have_class(re.compile(r"\bempty\b"))

    page.click("#go")
    expect(page.locator("#status")).to_contain_text("Done")
    with page.expect_download() as info:
        page.click("#download")
    assert info.value.suggested_filename == "bob_facesr_x4.png"
    np.testing.assert_array_equal(decode_png(Path(info.value.path()).read_bytes()), restorer.reference(img_b))
    assert len(restorer.completed) == 1
    np.testing.assert_array_equal(restorer.completed[0], img_b)


def test_closing_the_tab_cancels_its_job(browser, server, restorer):
    restorer.reset()
    ctx, page = _open(browser, server, viewport={"width": 1280, "height": 800})
    try:
        restorer.gate.clear()
        _choose(page, "left.png", face_png(32, seed=6)[1])
        page.click("#go")
        assert restorer.started.wait(10)
        job = server.app.state.queue.running
        assert job is not None and not job.cancel_requested
        page.close()
        deadline = time.monotonic() + 10
        while not job.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.01)
        assert job.cancel_requested
    finally:
        restorer.gate.set()
        ctx.close()
    server.wait_until(lambda h: h["running"] == 0, what="the job to stop")
    assert job.state == "cancelled" and restorer.completed == []


def test_large_input_shows_progress_and_cancel(page, restorer, server):
    big = np.ascontiguousarray(np.repeat(np.repeat(face_png(128, seed=4)[0], 4, axis=0), 4, axis=1)[:384])
    assert big.shape == (384, 512, 3)  # 12 tiles of 128 x 128
    restorer.gate_at_tile = 3
    restorer.gate.clear()
    _choose(page, "group photo.png", png_bytes(big))
    if page.locator("#photo-mode").is_visible():  # whole-photo mode is suggested for a picture this large...
        expect(page.locator("#mode-photo")).to_be_checked()
        page.click("label:has(#mode-face)")  # ...but the user wants it restored as one face
        expect(page.locator("#note")).to_contain_text("Or choose Whole photo")
    expect(page.locator("#note")).to_contain_text("512 × 384 pixels")
    expect(page.locator("#note")).to_contain_text("crop to the face")
    page.click("#go")
    expect(page.locator("#progress-text")).to_contain_text("tile 4 of 12")
    expect(page.locator("#progress-text")).to_contain_text(re.compile(r"\d\ss\b"))  # elapsed time
    assert page.eval_on_selector("#bar", "e => [e.value, e.max]") == [3, 12]
    expect(page.locator("#cancel")).to_be_visible()
    _shot(page, "desktop_progress")
    page.click("#cancel")
    expect(page.locator("#status")).to_contain_text("Cancelled")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#progress")).to_be_hidden()
    job = server.app.state.queue.running
    deadline = time.monotonic() + 10
    while not job.cancel_requested and time.monotonic() < deadline:
        time.sleep(0.01)
    restorer.gate.set()
    server.wait_until(lambda h: h["running"] == 0, what="the big job to stop")
    assert job.state == "cancelled"
    assert restorer.passes == 3 and restorer.completed == []  # stopped at the next tile

    # the next user's job runs at once
    _choose(page, "small.png", face_png(32, seed=5)[1])
    page.click("#go")
    expect(page.locator("#status")).to_contain_text("Done")


def test_bad_file_is_explained_in_plain_words(page):
    _choose(page, "notes.png", b"hello, this is a text file and not a picture")
    expect(page.locator("#fname")).to_contain_text("no preview")
    page.click("#go")
    status = page.locator("#status")
    expect(status).to_have_class(re.compile(r"\berr\b"))
    expect(status).to_contain_text("This file is not a picture facesr can read")
    _plain(status.text_content())
    expect(page.locator("#go")).to_be_enabled()


def test_oversized_picture_and_file(page):
    _choose(page, "huge.png", png_bytes(np.zeros((700, 700, 3), np.uint8)))
    page.click("#go")
    status = page.locator("#status")
    expect(status).to_contain_text("This picture is 700 × 700 pixels")
    expect(status).to_contain_text("over this server's cap of 360,000 pixels (for example 600 × 600)")
    _plain(status.text_content())
    # a file over the byte cap is refused before uploading anything
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    _choose(page, "enormous.png", bytes(body_limit(MAX_PIXELS) + 10))
    page.click("#go")
    expect(status).to_contain_text("over this server's cap of")
    _plain(status.text_content())
    assert posts == []


def test_phone_layout_scrolls_result_into_view(browser, server, restorer):
    restorer.reset()
    ctx, page = _open(
        browser, server, viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    try:
        no_sideways = "document.documentElement.scrollWidth <= window.innerWidth"
        in_view = """() => { const r = document.getElementById('viewer').getBoundingClientRect();
                             return r.top >= 0 && r.bottom <= window.innerHeight && r.height > 200; }"""
        assert page.evaluate(no_sideways)
        restorer.gate.clear()
        example = page.locator(".example").nth(2)
        example.scroll_into_view_if_needed()
        example.tap()  # an example picks itself and starts
        assert restorer.started.wait(10)
        page.evaluate("window.scrollTo(0, 0)")  # the reader scrolled up while waiting
        restorer.gate.set()
        expect(page.locator("#status")).to_contain_text("Done")
        page.wait_for_function(in_view)  # the page brought the result on screen
        assert page.evaluate(no_sideways)
        box = page.locator("#viewer").bounding_box()
        assert box["width"] <= 375
        page.touchscreen.tap(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
        left = float(page.eval_on_selector("#handle", "e => parseFloat(e.style.left)"))
        assert abs(left - box["width"] * 0.3) <= 2
        _shot(page, "phone_result")
        assert page.errors == []
    finally:
        restorer.gate.set()
        ctx.close()


# ----------------------------------------------------------------------------- whole photos


def _check_boxes(page, server, n_restored: int, labels: list[str]) -> None:
    """Toggle the face outlines on, check they sit on the detections at two zooms, toggle them off."""
    toggle = page.locator("#show-faces")
    expect(page.locator("#faces-toggle")).to_be_visible()
    expect(page.locator("#boxes")).to_be_hidden()
    toggle.check()
    expect(page.locator("#boxes")).to_be_visible()
    boxes = page.locator("#boxes .facebox")
    expect(boxes).to_have_count(len(labels))
    assert [boxes.nth(i).text_content() for i in range(len(labels))] == labels
    job = page.get_attribute("#download", "data-job")
    faces = server.get_json(f"/jobs/{job}")["faces"]
    assert sum(f["restored"] for f in faces) == n_restored
    for zoom in ("fit", "2"):
        page.click(f"[data-zoom='{zoom}']")
        img = page.locator("#img-after").bounding_box()
        k = img["width"] / page.eval_on_selector("#img-after", "e => e.naturalWidth")
        for i, f in enumerate(faces):
            if not boxes.nth(i).is_visible():  # scrolled out of view at 2:1
                continue
            b = boxes.nth(i).bounding_box()
            assert abs(b["x"] - (img["x"] + f["box"][0] * k)) <= 1.5, (zoom, i, b, f["box"])
            assert abs(b["y"] - (img["y"] + f["box"][1] * k)) <= 1.5, (zoom, i, b, f["box"])
            assert abs(b["width"] - (f["box"][2] - f["box"][0]) * k) <= 1.5, (zoom, i, b, f["box"])
    page.click("[data-zoom='fit']")
    toggle.uncheck()
    expect(page.locator("#boxes")).to_be_hidden()


@pytest.fixture(scope="module")
def photo_setup():
    """A server whose whole-photo mode uses a stand-in detector (no dlib needed) that a test can hold."""
    import threading

    lq, faces = group_photo()

    class HeldDetector(S.FakeDetector):
        release = threading.Event()
        entered = threading.Event()

        def __call__(self, rgb):
            self.entered.set()
            assert self.release.wait(20)
            return super().__call__(rgb)

    det = HeldDetector(faces)
    det.release.set()
    restorer = GatedRestorer(seed=0)
    with LiveServer(create_app(restorer, max_pixels=MAX_PIXELS, examples=False, detector=det)) as srv:
        yield srv, det, lq
        det.release.set()


def test_whole_photo_progress_cancel_and_faces_with_a_stand_in_detector(browser, photo_setup):
    server, det, lq = photo_setup
    ctx, page = _open(browser, server, viewport={"width": 1280, "height": 800})
    try:
        expect(page.locator("#photo-mode")).to_be_visible()
        _choose(page, "family.png", png_bytes(lq))
        expect(page.locator("#mode-photo")).to_be_checked()  # 320 × 240: more than a face, so suggested
        expect(page.locator("#note")).to_contain_text("Whole photo is chosen")
        det.release.clear()
        det.entered.clear()
        page.click("#go")
        assert det.entered.wait(10)
        expect(page.locator("#progress-text")).to_contain_text("Finding faces")
        page.click("#cancel")
        expect(page.locator("#status")).to_contain_text("Cancelled")
        job = server.app.state.queue.running
        deadline = time.monotonic() + 10
        while job is not None and not job.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.01)
        det.release.set()
        server.wait_until(lambda h: h["running"] == 0, what="the photo job to stop")
        assert job is None or job.state == "cancelled"

        page.click("#go")
        status = page.locator("#status")
        expect(status).to_contain_text("Done: 320 × 240 → 640 × 480 pixels")
        expect(status).to_contain_text("2 faces restored, 1 too small.")
        _plain(status.text_content())
        expect(page.locator("#tag-after")).to_have_text("facesr ×2")
        expect(page.locator("#tag-before")).to_have_text("Bicubic ×2")
        assert page.eval_on_selector("#img-before", "e => [e.naturalWidth, e.naturalHeight]") == [640, 480]
        expect(page.locator("#download")).to_have_text("Download family_facesr_x2.png")
        _check_boxes(page, server, 2, ["1", "2", "too small"])
        # a small face crop afterwards goes back to face mode and shows no face toggle
        _choose(page, "face.png", face_png(32)[1])
        expect(page.locator("#mode-face")).to_be_checked()
        page.click("#go")
        expect(status).to_contain_text("Done: 32 × 32 → 128 × 128")
        expect(page.locator("#faces-toggle")).to_be_hidden()
        assert page.errors == []
    finally:
        det.release.set()
        ctx.close()


@pytest.mark.skipif(not has_face_detector(), reason="the faces extra (dlib) is not installed")
def test_whole_photo_with_the_real_detector(page, server):
    lq, _ = group_photo(aligned_face())
    _choose(page, "group.png", png_bytes(lq))
    expect(page.locator("#mode-photo")).to_be_checked()
    page.click("#go")
    status = page.locator("#status")
    expect(status).to_contain_text("Done: 320 × 240 → 640 × 480 pixels", timeout=30_000)
    expect(status).to_contain_text("2 faces restored.")
    expect(page.locator("#sizes")).to_contain_text("2 faces restored")
    assert page.eval_on_selector("#img-after", "e => [e.naturalWidth, e.naturalHeight]") == [640, 480]
    # the slider works on photos as on faces
    box = page.locator("#viewer").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    assert abs(float(page.eval_on_selector("#handle", "e => parseFloat(e.style.left)")) - box["width"] * 0.3) <= 2
    _check_boxes(page, server, 2, ["1", "2"])
    page.locator("#show-faces").check()
    _shot(page, "desktop_photo")


def test_docs_page_runs_under_its_own_policy(browser, server):
    """/docs (Swagger UI from its CDN) is not blocked by its Content-Security-Policy: its inline start-up
    script runs.  Offline it then stops for want of the CDN's script; online it lists the API."""
    ctx = browser.new_context()
    page = ctx.new_page()
    console, errors = [], []
    page.on("console", lambda m: console.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(server.url + "/docs", wait_until="load", timeout=30_000)
        blocked = [m for m in console if "Content Security Policy" in m and "script" in m]
        assert blocked == [], blocked
        if any("SwaggerUIBundle" in e for e in errors):  # offline: the start-up script ran, the CDN is out of reach
            return
        assert errors == [], errors
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        deprecated = page.locator(".opblock-deprecated .opblock-summary-path")
        expect(deprecated).to_have_count(1)
        expect(deprecated).to_contain_text("/cancel")
    finally:
        ctx.close()
