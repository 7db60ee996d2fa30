"""The one image decoder (facesr.io.images.read_image) of the CLI, the web app and ``restore``.

Hostile headers are built with struct/zlib: a PNG whose IHDR claims any size, with a tiny IDAT.  The
decoder must refuse them from the header alone, and must never change process-wide state (Pillow's
``MAX_IMAGE_PIXELS``, the warnings filters), since the web server decodes in several threads at once.
"""

from __future__ import annotations

import io
import threading
import types
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from conftest import bomb_png
from facesr.errors import ImageError
from facesr.faces.photo import photo_size
from facesr.io import images as I


def png(img: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any pixel is decoded (by Pillow or OpenCV)."""

    def refuse(*a, **k):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(cv2, "imdecode", refuse)


@pytest.fixture
def global_watch(monkeypatch):
    """Assignments to ``PIL.Image.MAX_IMAGE_PIXELS`` and ``warnings.filters`` (as ``catch_warnings`` makes), in order.

    The test clears the list when it starts (pytest's own warnings capture has entered by then).
    """
    writes: list = []
    watched = {Image: "MAX_IMAGE_PIXELS", warnings: "filters"}

    class Watched(types.ModuleType):
        def __setattr__(self, key, value):
            if watched.get(self) == key:
                writes.append((self.__name__, key))
            super().__setattr__(key, value)

    for module in watched:
        monkeypatch.setattr(module, "__class__", Watched)
    return writes


# Sizes below Pillow's warning threshold, between its warning and error thresholds, and beyond its error.
HUGE = [(20000, 3000), (12000, 12000), (50000, 50000)]


@pytest.mark.parametrize("w,h", HUGE)
def test_over_cap_header_is_refused_before_decoding(w, h, tmp_path, no_decoding, global_watch):
    data = bomb_png(w, h)
    path = tmp_path / "huge.png"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would fail the test
        global_watch.clear()
        for source in (data, path):
            with pytest.raises(I.ImageTooLargeError) as e:
                I.read_image(source, max_pixels=1_000_000)
            assert (e.value.width, e.value.height, e.value.max_pixels) == (w, h, 1_000_000)
            assert f"{w}x{h}" in str(e.value) and "over the cap of 1 Mpx" in str(e.value)
            assert I.image_size(source) == (w, h)  # the exact header, even beyond Pillow's own limit
        assert str(e.value).startswith(str(path))
        assert photo_size(path) == (w, h) and I.header_size(path) == (w, h)
        with pytest.raises(ImageError, match="over the cap"):
            I.check_pixels(path, 1_000_000)
        assert global_watch == []


def test_decoder_changes_no_global_state_from_many_threads(global_watch):
    """Eight threads decode good and hostile images at once; Pillow's limit and the warnings filters stay put."""
    limit, filters = Image.MAX_IMAGE_PIXELS, warnings.filters
    filters_before = list(filters)
    rng = np.random.default_rng(0)
    good = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    deep = rng.integers(0, 65536, (9, 7, 3), dtype=np.uint16)
    deep_png = cv2.imencode(".png", deep)[1].tobytes()
    want_deep = np.rint(deep[..., ::-1] / 257.0).astype(np.uint8)
    cases = [(png(good), good), (deep_png, want_deep)] + [(bomb_png(w, h), None) for w, h in HUGE]
    stop, seen, failures = threading.Event(), set(), []

    def sample():
        while not stop.is_set():
            seen.add((Image.MAX_IMAGE_PIXELS, id(warnings.filters), len(warnings.filters)))

    def work(k):
        try:
            for i in range(40):
                data, want = cases[(k + i) % len(cases)]
                if want is None:
                    with pytest.raises(I.ImageTooLargeError):
                        I.read_image(data, max_pixels=10_000)
                else:
                    rgb, alpha = I.read_image(data, max_pixels=10_000)
                    np.testing.assert_array_equal(rgb, want)
                    assert alpha is None
        except BaseException as exc:
            failures.append(exc)

    global_watch.clear()
    sampler = threading.Thread(target=sample)
    workers = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    sampler.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    stop.set()
    sampler.join(10)
    assert failures == []
    assert seen == {(limit, id(filters), len(filters_before))}
    assert global_watch == [] and limit == Image.MAX_IMAGE_PIXELS and warnings.filters is filters
    assert list(warnings.filters) == filters_before


def test_bytes_and_paths_decode_alike(tmp_path):
    rng = np.random.default_rng(3)
    rgba16 = rng.integers(0, 65536, (6, 5, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgba16.png"), rgba16)
    rgb, alpha = I.read_image((tmp_path / "rgba16.png").read_bytes())
    # 16-bit is rounded to 8-bit (v / 257), not truncated as Pillow would
    np.testing.assert_array_equal(rgb, np.rint(rgba16[..., 2::-1] / 257.0).astype(np.uint8))
    np.testing.assert_array_equal(alpha, np.rint(rgba16[..., 3] / 257.0).astype(np.uint8))
    gray = rng.integers(0, 256, (8, 9), dtype=np.uint8)
    (tmp_path / "gray.png").write_bytes(png(gray))
    rgba = rng.integers(0, 256, (5, 4, 4), dtype=np.uint8)
    (tmp_path / "rgba.png").write_bytes(png(rgba))
    for name in ("rgba16.png", "gray.png", "rgba.png"):
        p = tmp_path / name
        a, b = I.read_image(p), I.read_image(p.read_bytes())
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y, err_msg=name)
        np.testing.assert_array_equal(I.read_any(p)[0], a[0])
    np.testing.assert_array_equal(I.read_image(tmp_path / "gray.png")[0], np.repeat(gray[..., None], 3, 2))
    np.testing.assert_array_equal(I.read_image(tmp_path / "rgba.png")[1], rgba[..., 3])
    with pytest.raises(I.ImageDamagedError):  # max_pixels 0 = no cap: decoding is tried (the data is too short)
        I.read_image(bomb_png(1500, 1000), max_pixels=0)


def test_errors_name_the_file_and_say_what_is_wrong(tmp_path):
    with pytest.raises(I.ImageUnreadableError, match="missing.png: file not found"):
        I.read_image(tmp_path / "missing.png")
    with pytest.raises(I.ImageUnreadableError, match="^upload: not a readable image"):
        I.read_image(b"hello, this is a text file", name="upload")
    with pytest.raises(I.ImageDamagedError, match="not a readable image") as e:
        I.read_image(png(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))[:70])
    assert e.value.format == "PNG"
    bmp = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(bmp, "BMP")
    assert I.read_image(bmp.getvalue())[0].shape == (4, 4, 3)
    with pytest.raises(I.ImageUnreadableError):
        I.read_image(bmp.getvalue(), formats=("PNG", "JPEG"))  # only the formats asked for
    with pytest.raises(ImageError):
        photo_size(tmp_path / "missing.png")
    assert I.header_size(tmp_path / "missing.png") is None
