"""Image reading and atomic writing.  Everything returned is uint8 RGB, 0-255, HxWx3.

* :func:`read_rgb` is the fast path for training/eval data (OpenCV decode, EXIF
  orientation ignored, as MMagic's ``LoadImageFromFile`` does).
* :func:`read_any` is the forgiving path for user photos: EXIF rotation applied,
  grayscale expanded to RGB, 16-bit scaled to 8-bit (``round(v / 257)``), alpha
  split off and returned separately.
* :func:`write_png` writes through a temporary file and ``os.replace``, so a
  crash never leaves a half-written PNG under the final name.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class ImageError(ValueError):
    """An image could not be read or written; the message names the file."""


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an 8-bit image as uint8 RGB HxWx3 (grayscale expanded, alpha dropped)."""
    path = Path(path)
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
    if img is None:
        raise ImageError(f"{path}: not a readable image (empty, truncated or unknown format)")
    return np.ascontiguousarray(img[..., ::-1])


def _read_pil(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _pil_to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise ImageError(f"{path}: file not found") from None
        msg = str(exc).split("\n")[0] or type(exc).__name__
        raise ImageError(f"{path}: not a readable image ({msg})") from None


def _pil_to_rgb(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        scale = 257.0 if mode.startswith("I;16") or a.max() > 255 else 1.0
        g = np.clip(np.rint(a / scale), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2), None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        arr = np.asarray(im)
        return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])
    if mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im)), None


def read_any(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read any common image for restoration: returns (uint8 RGB HxWx3, uint8 alpha HxW or None).

    16-bit PNGs (which PIL would truncate) are decoded by OpenCV and scaled to 8-bit.
    """
    path = Path(path)
    if path.suffix.lower() == ".png":
        buf = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else np.zeros(0, np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
        if img is not None and img.dtype == np.uint16:
            img8 = np.clip(np.rint(img.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
            if img8.ndim == 2:
                return np.repeat(img8[..., None], 3, axis=2), None
            rgb = np.ascontiguousarray(img8[..., 2::-1] if img8.shape[2] >= 3 else np.repeat(img8[..., :1], 3, 2))
            alpha = np.ascontiguousarray(img8[..., 3]) if img8.shape[2] == 4 else None
            return rgb, alpha
    return _read_pil(path)


def list_images(folder: str | os.PathLike, what: str = "folder") -> list[Path]:
    """Sorted image files in ``folder``; a clear error if it is missing or has none."""
    folder = Path(folder)
    if not folder.exists():
        raise ImageError(f"{folder}: {what} not found")
    if not folder.is_dir():
        raise ImageError(f"{folder}: {what} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ImageError(f"{folder}: {what} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
    return files


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of a uint8 RGB (HxWx3), RGBA (HxWx4) or gray (HxW) array."""
    if img.dtype != np.uint8:
        raise ValueError(f"write_png expects uint8, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[..., ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., [2, 1, 0, 3]]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
    if not ok:
        raise ImageError("PNG encoding failed")
    return buf.tobytes()


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Atomically write a uint8 RGB/RGBA/gray array as PNG."""
    atomic_write_bytes(path, encode_png(img))
