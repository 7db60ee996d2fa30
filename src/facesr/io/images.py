"""Image decoding, encoding and classical resizing.  Everything returned is uint8 RGB, 0-255, HxWx3.

* :func:`read_rgb` is the fast path for training/eval data (OpenCV decode, EXIF
  orientation ignored, as MMagic's ``LoadImageFromFile`` does).
* :func:`read_image` (:func:`read_any` for paths) is the one decoder of user images, from a
  path or bytes: the header's size checked against ``max_pixels`` before decoding (no global
  state touched), EXIF rotation applied, grayscale expanded to RGB, 16-bit scaled to 8-bit
  (``round(v / 257)``), alpha split off and returned separately.
* :func:`write_png` writes through a temporary file and ``os.replace``, so a
  crash never leaves a half-written PNG under the final name.
* :func:`upscale_classical` is the one bicubic (or Lanczos, nearest, area) x``scale``
  resize that evaluation baselines, comparison sheets, the web app and whole-photo
  backgrounds share.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import FacesrError, ImageError, one_line
from .files import IMAGE_EXTS, atomic_write_bytes, open_regular  # noqa: F401  (IMAGE_EXTS re-exported)

#: OpenCV interpolation of each :func:`upscale_classical` method.
CLASSICAL = {
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
    "nearest": cv2.INTER_NEAREST,
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
}


#: Default cap on the pixels of an image file that facesr decodes (width x height, read from the header first).
MAX_PIXELS = 64_000_000
_BOMB_RE = re.compile(r"\((\d+) pixels\)")
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
#: What Pillow raises for a file it cannot identify or decode (besides UnidentifiedImageError, an OSError).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)

ImageSource = str | os.PathLike | bytes | bytearray | memoryview


class ImageTooLargeError(ImageError):
    """The header announces more than ``max_pixels`` pixels; nothing was decoded.

    ``width`` and ``height`` are the header's (``height`` is 1 when only the pixel count is known).
    """

    def __init__(self, name: str, width: int, height: int, max_pixels: int):
        dims = f"{width}x{height} ({width * height / 1e6:,.3g} Mpx)" if height > 1 else f"{width / 1e6:,.3g} Mpx"
        super().__init__(f"{name}: image is {dims}, over the cap of {max_pixels / 1e6:g} Mpx (--max-pixels)")
        self.width, self.height, self.max_pixels = int(width), int(height), int(max_pixels)


class ImageUnreadableError(ImageError):
    """Not an image Pillow can identify (unknown format, not an image, missing file)."""


class ImageDamagedError(ImageError):
    """The header was read but the pixels could not be (truncated or corrupt file).  ``format``: e.g. "PNG"."""

    def __init__(self, message: str, format: str | None = None):
        super().__init__(message)
        self.format = format


def _plugin_open(fp: BinaryIO, formats: Sequence[str] | None) -> Image.Image | None:
    """The header parsed by the first Pillow plugin that takes the file (no pixel decoded), or None.

    This is what :func:`PIL.Image.open` does, minus its decompression-bomb check: that compares the size
    with the process-wide ``Image.MAX_IMAGE_PIXELS`` and warns through the process-wide warnings filters,
    neither of which can be changed for one call without racing other threads (the web server decodes
    in several).  facesr checks its own ``max_pixels`` against ``.size`` instead.
    """
    Image.init()
    fp.seek(0)
    prefix = fp.read(16)
    for fmt in formats or Image.ID:
        factory, accept = Image.OPEN.get(fmt.upper(), (None, None))
        if factory is None:
            continue
        found = not accept or accept(prefix)
        if found is True or (found and not isinstance(found, str)):
            fp.seek(0)
            try:
                return factory(fp, "")
            except (SyntaxError, IndexError, TypeError, struct.error):  # as Image.open: try the next format
                continue
    return None


def _open_header(fp: BinaryIO, formats: Sequence[str] | None, name: str) -> Image.Image:
    """The opened (not yet decoded) image; :class:`ImageUnreadableError` when no plugin takes it."""
    try:
        if isinstance(getattr(Image, "OPEN", None), dict):
            im = _plugin_open(fp, formats)
        else:  # Pillow's plugin registry changed shape: Image.open, whose own size limit then applies too
            fp.seek(0)
            im = Image.open(fp, formats=list(formats) if formats else None)
    except UnidentifiedImageError:
        im = None
    except _PIL_ERRORS as exc:
        raise ImageUnreadableError(f"{name}: not a readable image ({one_line(exc)})") from None
    if im is None:
        raise ImageUnreadableError(f"{name}: not a readable image (unknown format, or not an image)")
    return im


@contextmanager
def _binary(source: ImageSource, name: str | None) -> Iterator[tuple[BinaryIO, str]]:
    """(a binary file object at the start of ``source``, the name for messages); paths are opened here."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(source), name or "image"
        return
    path = Path(source)
    name = name or str(path)
    try:
        if path.is_symlink() and not path.exists():
            raise ImageUnreadableError(f"{name}: symbolic link leads nowhere (dangling or a loop)")
        fp = open_regular(path)  # never blocks on a FIFO; closed by the with below, after the checks
    except FileNotFoundError:
        raise ImageUnreadableError(f"{name}: file not found") from None
    except OSError as exc:
        raise ImageUnreadableError(f"{name}: cannot read ({exc.strerror or one_line(exc)})") from None
    with fp:
        yield fp, name


def _bomb_pixels(exc: Exception) -> int:
    m = _BOMB_RE.search(str(exc))
    return int(m.group(1)) if m else 2**40


def image_size(source: ImageSource, formats: Sequence[str] | None = None, name: str | None = None) -> tuple[int, int]:
    """``(width, height)`` in pixels from the header of a file (path) or of bytes; no pixel is decoded.

    Changes no global state (neither Pillow's ``MAX_IMAGE_PIXELS`` nor the warnings filters), so it is
    safe from any thread.  Raises :class:`ImageUnreadableError` (an :class:`ImageError`) naming ``name``
    (default: the path, or "image") when the file is missing or not an image.
    """
    with _binary(source, name) as (fp, label):
        try:
            with _open_header(fp, formats, label) as im:
                return int(im.size[0]), int(im.size[1])
        except Image.DecompressionBombError as exc:  # only from Image.open (see _open_header)
            return _bomb_pixels(exc), 1


def header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` from the file's header (nothing is decoded), or None when Pillow cannot tell."""
    try:
        return image_size(path)
    except ImageError:
        return None


def check_pixels(path: str | os.PathLike, max_pixels: int | None = None) -> None:
    """:class:`ImageTooLargeError` when the header of ``path`` announces more than ``max_pixels``.

    ``max_pixels`` defaults to :data:`MAX_PIXELS`; 0 or less means no cap.  A header Pillow cannot
    read passes (the decoder that follows reports it).
    """
    cap = MAX_PIXELS if max_pixels is None else max_pixels
    if cap <= 0:
        return
    size = header_size(path)
    if size is not None and size[0] * size[1] > cap:
        raise ImageTooLargeError(str(path), size[0], size[1], cap)


_warned_large = False


def warn_large_input(path, shape, command: str, limit: int = 256) -> None:
    """Warn once per process that an input is larger than the small face crops the model expects."""
    global _warned_large
    if _warned_large or max(shape[:2]) <= limit:
        return
    _warned_large = True
    import sys

    print(
        f"facesr {command}: warning: {path} is {shape[1]}x{shape[0]}; the model expects small aligned face crops "
        f"(~128 px) and upscales everything x4. For whole photos use `facesr restore` (warned once)",
        file=sys.stderr,
    )


def read_rgb(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Decode an 8-bit image as uint8 RGB HxWx3 (grayscale expanded, alpha dropped).

    Images whose header announces more than ``max_pixels`` (default :data:`MAX_PIXELS`) are
    refused before decoding (:class:`ImageError`).
    """
    path = Path(path)
    check_pixels(path, max_pixels)
    try:
        with open_regular(path) as f:  # a FIFO, folder or device is refused, never waited on
            buf = np.frombuffer(f.read(), dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
    if img is None:
        raise ImageError(f"{path}: not a readable image (empty, truncated or unknown format)")
    return np.ascontiguousarray(img[..., ::-1])


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


def _is_png16(fp: BinaryIO) -> bool:
    """True when the PNG's header (IHDR) says 16 bits per sample; the file position is kept."""
    pos = fp.tell()
    fp.seek(0)
    head = fp.read(25)
    fp.seek(pos)
    return head[:8] == _PNG_SIG and len(head) == 25 and head[24] == 16


def _png16_to_rgb(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit PNG (which Pillow would truncate) decoded by OpenCV: uint8 (RGB, alpha or None), ``round(v / 257)``."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint16:
        raise ImageDamagedError(f"{name}: not a readable image (damaged 16-bit PNG)", "PNG")
    img8 = np.clip(np.rint(img.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    if img8.ndim == 2:
        return np.repeat(img8[..., None], 3, axis=2), None
    rgb = np.ascontiguousarray(img8[..., 2::-1] if img8.shape[2] >= 3 else np.repeat(img8[..., :1], 3, 2))
    alpha = np.ascontiguousarray(img8[..., 3]) if img8.shape[2] == 4 else None
    return rgb, alpha


def _decode_pil(im: Image.Image, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode an opened image: EXIF rotation applied, then :func:`pil_to_rgb`; :class:`ImageDamagedError`."""
    try:
        im.load()
        return pil_to_rgb(ImageOps.exif_transpose(im))
    except (*_PIL_ERRORS, Image.DecompressionBombError) as exc:  # ImageError (a ValueError) included
        raise ImageDamagedError(f"{name}: not a readable image ({one_line(exc)})", im.format) from None


def read_image(
    source: ImageSource, max_pixels: int | None = None, *, formats: Sequence[str] | None = None, name: str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The one decoder of user images (CLI, web app, ``restore``): (uint8 RGB HxWx3, uint8 alpha HxW or None).

    ``source`` is a path or the file's bytes.  The size is read from the header first, and a header
    announcing more than ``max_pixels`` pixels (width x height; default :data:`MAX_PIXELS`, 0 = no cap)
    raises :class:`ImageTooLargeError` before any pixel is decoded.  No global state is changed
    (neither Pillow's ``MAX_IMAGE_PIXELS`` nor the warnings filters), so threads may call it at once.
    Decoding: EXIF rotation applied, gray expanded to RGB, 16-bit scaled to 8-bit (``round(v / 257)``;
    16-bit PNGs through OpenCV, as Pillow would truncate them), float images scaled by their range, first
    frame of an animation.  ``formats``: Pillow format names accepted (default: all).  Errors are
    :class:`ImageError` subclasses naming ``name`` (default: the path, or "image"): unreadable, damaged
    or too large.
    """
    cap = MAX_PIXELS if max_pixels is None else int(max_pixels)
    with _binary(source, name) as (fp, label):
        try:
            with _open_header(fp, formats, label) as im:
                w, h = im.size
                if 0 < cap < w * h:
                    raise ImageTooLargeError(label, w, h, cap)
                if im.format == "PNG" and _is_png16(fp):
                    fp.seek(0)
                    return _png16_to_rgb(fp.read(), label)
                return _decode_pil(im, label)
        except Image.DecompressionBombError as exc:  # only from Image.open (see _open_header)
            raise ImageTooLargeError(label, _bomb_pixels(exc), 1, cap) from None


def read_any(path: str | os.PathLike, max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read any common image for restoration: (uint8 RGB HxWx3, uint8 alpha HxW or None); see :func:`read_image`."""
    return read_image(path, max_pixels)


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
        raise FacesrError(
            f"{what} {path}: cannot write {suffix or 'a file without an ending'}; name it .png, .jpg or .webp"
        )


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
