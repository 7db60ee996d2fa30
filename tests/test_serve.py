"""``facesr serve``: the page, POST /restore (multipart, raw, chunked), POST /upscale, one-line 400s, the CLI.

A tiny random MSRResNet runs behind a real server on 127.0.0.1, port 0, in a thread.
"""
from __future__ import annotations

import http.client
import io
import threading

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from facesr import cli, serve
from facesr.inference import Restorer
from facesr.models import MSRResNet

MAX_PIXELS = 40 * 40


def _img(h, w, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        return np.asarray(im).copy()


def _multipart(fields: dict[str, bytes], boundary: str = "----facesrTestBoundary7MA4YWxk") -> tuple[bytes, str]:
    out = b""
    for name, data in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.png\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def restorer():
    torch.manual_seed(0)
    return Restorer(MSRResNet(mid_channels=8, num_blocks=1), device="cpu")


@pytest.fixture(scope="module")
def server(restorer):
    srv = serve.make_server(restorer, "127.0.0.1", 0, max_pixels=MAX_PIXELS, quiet=True)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(5)


def _request(server, method, path, body=None, headers=None, chunked=False):
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        if chunked:
            conn.request(method, path, body=iter([body[:100], body[100:]]), headers=headers or {},
                         encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _post_image(server, data: bytes, path="/restore"):
    body, ctype = _multipart({"image": data})
    return _request(server, "POST", path, body, {"Content-Type": ctype})


def _assert_400(status, headers, body, *words):
    assert status == 400
    assert headers["content-type"].startswith("text/plain")
    text = body.decode("utf-8")
    assert text.endswith("\n") and "\n" not in text.rstrip("\n"), text  # exactly one line
    assert "Traceback" not in text
    for w in words:
        assert w in text, text
    return text


def test_get_page(server):
    status, headers, body = _request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    html = body.decode("utf-8")
    assert "<form" in html and 'action="/restore"' in html and 'enctype="multipart/form-data"' in html
    assert 'type="file"' in html and 'name="image"' in html and "Restore</button>" in html
    assert "download" in html and "Bicubic" in html and "facesr &times;4" in html
    assert "1,600" in html  # max pixels shown
    # self-contained: no external scripts, styles, images or fonts
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert "default-src 'none'" in headers["content-security-policy"]
    assert _request(server, "GET", "/nope")[0] == 404
    assert _request(server, "POST", "/nope", b"x", {"Content-Type": "image/png"})[0] == 404
    assert _request(server, "GET", "/restore")[0] == 405


def test_restore_multipart_equals_restorer(server, restorer):
    img = _img(16, 16, seed=1)
    status, headers, body = _post_image(server, _png(img))
    assert status == 200 and headers["content-type"] == "image/png"
    assert headers["x-facesr-input-size"] == "16x16" and headers["x-facesr-output-size"] == "64x64"
    out = _decode(body)
    assert out.shape == (64, 64, 3)
    np.testing.assert_array_equal(out, restorer.restore(img))


def test_restore_raw_and_chunked_bodies(server, restorer):
    img = _img(12, 20, seed=2)
    want = restorer.restore(img)
    status, _, body = _request(server, "POST", "/restore", _png(img), {"Content-Type": "image/png"})
    assert status == 200
    np.testing.assert_array_equal(_decode(body), want)
    status, _, body = _request(server, "POST", "/restore", _png(img), {"Content-Type": "image/png"}, chunked=True)
    assert status == 200
    np.testing.assert_array_equal(_decode(body), want)


def test_restore_keeps_alpha(server, restorer):
    img = _img(10, 10, c=4, seed=3)
    status, _, body = _post_image(server, _png(img))
    assert status == 200
    out = _decode(body)
    assert out.shape == (40, 40, 4)
    np.testing.assert_array_equal(out, restorer.restore(img))


def test_upscale_panels(server):
    img = _img(9, 11, seed=4)
    status, _, body = _post_image(server, _png(img), "/upscale?method=bicubic")
    assert status == 200
    np.testing.assert_array_equal(_decode(body), cv2.resize(img, (44, 36), interpolation=cv2.INTER_CUBIC))
    status, _, body = _post_image(server, _png(img), "/upscale?method=nearest")
    assert status == 200
    np.testing.assert_array_equal(_decode(body), img.repeat(4, 0).repeat(4, 1))
    _assert_400(*_post_image(server, _png(img), "/upscale?method=lanczos"), "unknown method")


def test_garbage_is_a_one_line_400(server):
    _assert_400(*_post_image(server, b"this is not an image at all"), "not a readable image")
    _assert_400(*_request(server, "POST", "/restore", b"\x00\x01garbage", {"Content-Type": "image/png"}),
                "not a readable image")
    truncated = _png(_img(16, 16, seed=5))[:60]
    _assert_400(*_post_image(server, truncated), "not a readable image")


def test_too_many_pixels_is_a_400(server):
    text = _assert_400(*_post_image(server, _png(_img(41, 40, seed=6))), "too large", "40x41", "1,640", "1,600")
    assert "--max-pixels" in text
    # a body far beyond any image of the allowed size is refused without decoding it
    huge = b"\x89PNG" + bytes(serve.body_limit(MAX_PIXELS))
    _assert_400(*_request(server, "POST", "/restore", huge, {"Content-Type": "image/png"}), "too large")


def test_other_bad_requests(server):
    _assert_400(*_request(server, "POST", "/restore", b"", {"Content-Type": "image/png"}), "empty")
    _assert_400(*_post_image(server, b""), "empty image")
    body, ctype = _multipart({"file": _png(_img(8, 8))})
    _assert_400(*_request(server, "POST", "/restore", body, {"Content-Type": ctype}), "no 'image' field")
    _assert_400(*_request(server, "POST", "/restore", b"hello", {"Content-Type": "text/plain"}),
                "unsupported Content-Type")


def test_concurrent_requests_share_the_model(server, restorer):
    imgs = [_img(8 + k, 8, seed=10 + k) for k in range(4)]
    results = [None] * len(imgs)

    def go(k):
        results[k] = _post_image(server, _png(imgs[k]))

    threads = [threading.Thread(target=go, args=(k,)) for k in range(len(imgs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for img, (status, _, body) in zip(imgs, results):
        assert status == 200
        np.testing.assert_array_equal(_decode(body), restorer.restore(img))


def test_cli_fails_at_start_without_shipped_model(monkeypatch, capsys):
    import facesr.inference as inference
    monkeypatch.setattr(inference, "SHIPPED_RELPATH", ("weights", "no_such_model.safetensors"))
    monkeypatch.setattr(serve, "make_server", lambda *a, **k: pytest.fail("server started without a model"))
    assert cli.main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("facesr serve: error: no shipped model"), err


def test_cli_serves_on_localhost_and_stops_on_ctrl_c(monkeypatch, capsys, restorer):
    seen = {}

    def fake_from_checkpoint(checkpoint=None, device="auto", **kw):
        seen["checkpoint"], seen["device"] = checkpoint, device
        return restorer

    def ctrl_c(self, poll_interval=0.5):
        seen["address"] = self.server_address
        raise KeyboardInterrupt

    monkeypatch.setattr(Restorer, "from_checkpoint", staticmethod(fake_from_checkpoint))
    monkeypatch.setattr(serve.FacesrServer, "serve_forever", ctrl_c)
    assert cli.main(["serve", "--port", "0", "--checkpoint", "x.safetensors", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert seen["checkpoint"] == "x.safetensors" and str(seen["device"]) == "cpu"
    assert seen["address"][0] == "127.0.0.1"
    assert f"http://127.0.0.1:{seen['address'][1]}/" in out
    assert "stopped" in err and "Traceback" not in err
    assert cli.main(["serve", "--max-pixels", "0"]) == 2


def _tricky_files(tmp_path):
    """(name, path) of inputs where decoding could go wrong: 16-bit, EXIF rotation, palette, gray+alpha."""
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
    Image.fromarray(_img(10, 14, seed=8)).save(p, "JPEG", exif=exif)
    files.append(p)
    p = tmp_path / "palette.gif"
    Image.fromarray(_img(8, 8, seed=9)).convert("P").save(p)
    files.append(p)
    p = tmp_path / "gray_alpha.png"
    Image.fromarray(_img(8, 6, c=2, seed=10), "LA").save(p)
    files.append(p)
    return files


def test_decode_matches_read_any(tmp_path):
    from facesr.imageio import read_any
    for p in _tricky_files(tmp_path):
        rgb, alpha = read_any(p)
        want = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
        got = serve.decode_image(p.read_bytes(), MAX_PIXELS)
        assert got.dtype == np.uint8 and got.shape == want.shape, p.name
        np.testing.assert_array_equal(got, want, err_msg=p.name)
