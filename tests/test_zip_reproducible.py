"""``--zip`` writes the same bytes for the same images, whoever writes them and whenever."""

from __future__ import annotations

import os
import zipfile

from facesr.io.files import write_zip


def _members(folder, names, payload=b"png-bytes"):
    folder.mkdir()
    out = []
    for n in names:
        p = folder / n
        p.write_bytes(payload + n.encode())
        out.append(p)
    return out


def test_same_images_same_zip_bytes_whatever_the_order_and_mtime(tmp_path):
    a = _members(tmp_path / "a", ["b.png", "a.png", "c.png"])
    b = _members(tmp_path / "b", ["c.png", "a.png", "b.png"])
    for i, p in enumerate(b):
        os.utime(p, (1_000_000_000 + i * 7777, 1_000_000_000 + i * 7777))  # other file times
    write_zip(tmp_path / "1.zip", a)
    write_zip(tmp_path / "2.zip", b)
    assert (tmp_path / "1.zip").read_bytes() == (tmp_path / "2.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "1.zip") as zf:
        assert zf.namelist() == ["a.png", "b.png", "c.png"]
        assert zf.read("b.png") == b"png-bytesb.png"
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())


def test_different_images_different_zip(tmp_path):
    a = _members(tmp_path / "a", ["a.png"], b"one")
    b = _members(tmp_path / "b", ["a.png"], b"two")
    write_zip(tmp_path / "1.zip", a)
    write_zip(tmp_path / "2.zip", b)
    assert (tmp_path / "1.zip").read_bytes() != (tmp_path / "2.zip").read_bytes()
