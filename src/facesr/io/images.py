"""Image decoding, encoding and classical resizing.  Everything returned is uint8 RGB, 0-255, HxWx3.

* :func:`read_rgb` is the fast path for training/eval data (OpenCV decode, EXIF
  orientation ignored, as MMagic's ``LoadImageFromFile`` does).
* :func:`read_any` is the forgiving path for user photos: EXIF rotation applied,
  grayscale expanded to RGB, 16-bit scaled to 8-bit (``round(v / 257)``), alpha
  split off and returned separately.
* :func:`write_png` writes through a temporary file and ``os.replace``, so a
  crash never leaves a half-written PNG under the final name.
* :func:`upscale_classical` is the one bicubic (or Lanczos, nearest, area) x``scale``
  resize that evaluation baselines, comparison sheets, the web app and whole-photo
  backgrounds share.
"""
from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import FacesrError, ImageError, one_line
from .files import IMAGE_EXTS, atomic_write_bytes  # noqa: F401  (IMAGE_EXTS re-exported)

#: OpenCV interpolation of each :func:`upscale_classical` method.
CLASSICAL = {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4, "nearest": cv2.INTER_NEAREST,
             "area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR}


#: Default cap on the pixels of an image file that facesr decodes (width x height, read from the header first).
MAX_PIXELS = 64_000_000
_BOMB_RE = re.compile(r"\((\d+) pixels\)")


def header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` from the file's header (nothing is decoded), or None when Pillow cannot tell.

    A header so large that Pillow calls it a decompression bomb gives ``(pixels, 1)``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as exc:
        m = _BOMB_RE.search(str(exc))
        return (int(m.group(1)) if m else 2 ** 40), 1
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error):
        return None


def check_pixels(path: str | os.PathLike, max_pixels: int | None = None) -> None:
    """:class:`ImageError` when the header of ``path`` announces more than ``max_pixels`` (default :data:`MAX_PIXELS`)."""
    cap = MAX_PIXELS if max_pixels is None else max_pixels
    if cap <= 0:
        return
    size = header_size(path)
    if size is not None and size[0] * size[1] > cap:
        w, h = size
        dims = f"{w}x{h} ({w * h / 1e6:,.0f} Mpx)" if h > 1 else f"{w / 1e6:,.0f} Mpx"
        raise ImageError(f"{path}: image is {dims}, over the cap of {cap / 1e6:g} Mpx")


_warned_large = False


def warn_large_input(path, shape, command: str, limit: int = 256) -> None:
    """Warn once per process that an input is larger than the small face crops the model expects."""
    global _warned_large
    if _warned_large or max(shape[:2]) <= limit:
        return
    _warned_large = True
    import sys
    print(f"facesr {command}: warning: {path} is {shape[1]}x{shape[0]}; the model expects small aligned face crops "
          f"(~128 px) and upscales everything x4. For whole photos use `facesr restore` (warned once)",
          file=sys.stderr)


def read_rgb(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Decode an 8-bit image as uint8 RGB HxWx3 (grayscale expanded, alpha dropped).

    Images whose header announces more than ``max_pixels`` (default :data:`MAX_PIXELS`) are
    refused before decoding (:class:`ImageError`).
    """
    path = Path(path)
    check_pixels(path, max_pixels)
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
        if path.is_symlink() and not path.exists():
            raise ImageError(f"{path}: symbolic link leads nowhere (dangling or a loop)")
    except OSError:
        raise ImageError(f"{path}: symbolic link leads nowhere (a loop)") from None
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return pil_to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise ImageError(f"{path}: file not found") from None
        raise ImageError(f"{path}: not a readable image ({one_line(exc)})") from None


def pil_to_rgb(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image of any mode -> (uint8 RGB HxWx3, uint8 alpha HxW or None); 16-bit scaled to 8-bit."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if mode == "F":  # float images: scaled by their range
            if not np.isfinite(a).all():
                raise ImageError("float image holds NaN or infinite values")
            lo, hi = float(a.min()), float(a.max())
            if lo < 0 or hi > 65535:
                raise ImageError(f"float image values span {lo:g}..{hi:g}; expected 0..1, 0..255 or 0..65535")
            scale = 1 / 255.0 if hi <= 1.0 else (1.0 if hi <= 255 else 257.0)
        else:
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


def read_any(path: str | os.PathLike, max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read any common image for restoration: returns (uint8 RGB HxWx3, uint8 alpha HxW or None).

    16-bit PNGs (which PIL would truncate) are decoded by OpenCV and scaled to 8-bit; float images
    are scaled by their range (0..1, 0..255 or 0..65535).  Images whose header announces more than
    ``max_pixels`` (default :data:`MAX_PIXELS`; 0 = no cap) are refused before decoding.
    """
    path = Path(path)
    check_pixels(path, max_pixels)
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


#: Output file endings facesr writes images as, and the encoder each gets (its own format, never PNG bytes
#: under another name).
IMAGE_WRITERS = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg", ".webp": ".webp"}


def check_image_name(path: str | os.PathLike, what: str = "output") -> None:
    """FacesrError unless ``path`` ends in a format facesr writes (.png, .jpg/.jpeg, .webp)."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_WRITERS:
        raise FacesrError(f"{what} {path}: cannot write {suffix or 'a file without an ending'}; "
                          f"name it .png, .jpg or .webp")


def encode_image(img: np.ndarray, path: str | os.PathLike) -> bytes:
    """Bytes of uint8 RGB (HxWx3) ``img`` in the format ``path``'s ending names: PNG, JPEG (quality 95) or
    lossless WebP; FacesrError for any other ending."""
    check_image_name(path)
    fmt = IMAGE_WRITERS[Path(path).suffix.lower()]
    if fmt == ".png":
        return encode_png(img)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if fmt == ".jpg" else [cv2.IMWRITE_WEBP_QUALITY, 101]
    ok, buf = cv2.imencode(fmt, np.ascontiguousarray(img[..., :3][..., ::-1]), params)
    if not ok:
        raise ImageError(f"{fmt[1:].upper()} encoding failed")
    return buf.tobytes()


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Atomically write a uint8 RGB/RGBA/gray array as PNG."""
    atomic_write_bytes(path, encode_png(img))


def upscale_classical(img: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """x``scale`` resize of a uint8 HxW or HxWxC image with OpenCV (``bicubic`` = cv2.INTER_CUBIC, saturated).

    ``method``: one of :data:`CLASSICAL` (bicubic, lanczos, nearest, area, bilinear).
    """
    if method not in CLASSICAL:
        raise ValueError(f"upscale method must be one of {', '.join(CLASSICAL)}, got {method!r}")
    h, w = img.shape[:2]
    return cv2.resize(img, (w * int(scale), h * int(scale)), interpolation=CLASSICAL[method])
