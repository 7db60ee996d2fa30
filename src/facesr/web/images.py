"""Turning uploaded bytes into pixels, with limits checked first and errors in plain words.

Everything here is independent of the web framework, so it can be tested alone.
Messages are written for the person at the browser: what was wrong and what to
do, with no Python reprs and no command-line flags (the operator sets the
limits; the user can only change the picture).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import FacesrError, ImageError
from ..io.images import ImageDamagedError, ImageTooLargeError, read_image

#: Default cap on input pixels (width x height): 1024 x 1024.  The x4 output is then at most 4096 x 4096.
DEFAULT_MAX_PIXELS = 1024 * 1024
#: Inputs with more pixels than this (256 x 256) get a note that the model expects a face crop (~128 x 128).
FACE_NOTE_PIXELS = 256 * 256
#: The LQ face size the model was trained on, in pixels per side.
TRAINED_SIDE = 128

# Formats accepted from the network (PIL would otherwise also try exotic ones, some via external programs).
_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM", "AVIF")
FORMAT_NAMES = "PNG, JPEG, WebP, BMP, TIFF or GIF"


class InputError(FacesrError):
    """What the client sent cannot be used.  ``status`` is the HTTP code: 400, 408 or 413.

    The message is one line in plain words, safe to show to the person who sent it.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = int(status)


def body_limit(max_pixels: int) -> int:
    """Largest request body accepted, in bytes: 8 per allowed pixel (16-bit RGBA, uncompressed) + 1 MiB."""
    return 8 * int(max_pixels) + (1 << 20)


def megabytes(n: int) -> str:
    """``n`` bytes as "1.2 MB" (decimal megabytes, as file browsers show them)."""
    return f"{n / 1e6:.1f} MB"


def pixel_limit_words(max_pixels: int) -> str:
    """The pixel cap in words, e.g. "1,048,576 pixels (for example 1024 × 1024)"."""
    side = math.isqrt(int(max_pixels))
    return f"{int(max_pixels):,} pixels (for example {side} × {side})"


def too_many_pixels(w: int, h: int, max_pixels: int) -> InputError:
    """The 413 answer for a ``w`` x ``h`` picture over the cap of ``max_pixels`` (read from its header)."""
    return InputError(
        f"This picture is {w} × {h} pixels, over this server's cap of "
        f"{pixel_limit_words(max_pixels)}. Crop it to the face or make it smaller, then try again.",
        413,
    )


def too_many_bytes(n: int | None, limit: int) -> InputError:
    """The 413 answer for an upload of ``n`` bytes (None: unknown, it passed the cap) over ``limit`` bytes."""
    size = f"This file is {megabytes(n)}" if n is not None else "This file is too large"
    return InputError(
        f"{size}, over this server's cap of {megabytes(limit)} per file. "
        f"Crop the picture to the face or save it smaller, then try again.",
        413,
    )


#: The note for inputs much larger than a face crop; ``{w}`` and ``{h}`` are the input's size in pixels.
FACE_NOTE_TEMPLATE = (
    f"This picture is {{w}} × {{h}} pixels. The model is made for a face cropped to about "
    f"{TRAINED_SIDE} × {TRAINED_SIDE} pixels, so a whole photo is restored as if it were one big "
    f"face: it takes longer and may look wrong. For the best result, crop to the face first."
)


def face_note(w: int, h: int) -> str | None:
    """A plain-words note when a ``w`` x ``h`` input (pixels) is much larger than a face crop, else None."""
    if w * h <= FACE_NOTE_PIXELS:
        return None
    return FACE_NOTE_TEMPLATE.format(w=w, h=h)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode uploaded bytes to uint8 RGB HxWx3 (or RGBA HxWx4 when the image has transparency), 0-255.

    :func:`facesr.io.images.read_image` (the CLI's decoder) limited to :data:`FORMAT_NAMES`: the pixel
    count (width x height, at most ``max_pixels``) is read from the header before any pixel is decoded,
    and no global state is changed.  Raises :class:`InputError` (400 unreadable or damaged, 413 too many
    pixels) with a one-line message in plain words.
    """
    if not data:
        raise InputError("No picture arrived: the upload was empty. Choose an image file and try again.")
    try:
        rgb, alpha = read_image(data, max_pixels, formats=_FORMATS, name="upload")
    except ImageTooLargeError as exc:
        raise too_many_pixels(exc.width, exc.height, max_pixels) from None
    except ImageDamagedError as exc:
        raise InputError(
            f"This {exc.format or 'picture'} file is damaged or incomplete, so it cannot be read. "
            f"Save it again or try another file."
        ) from None
    except ImageError:
        raise InputError(f"This file is not a picture facesr can read. Use a {FORMAT_NAMES} image.") from None
    if alpha is None:
        return rgb
    return np.ascontiguousarray(np.concatenate([rgb, alpha[..., None]], axis=2))


def example_faces(size: int = TRAINED_SIDE) -> list[dict]:
    """Example inputs for the page, made from the bundled public-domain face.

    Returns ``[{"id", "title", "image"}, ...]`` with uint8 RGB ``size`` x ``size`` images:
    the face simply downscaled (INTER_AREA), then three degradations of it by facesr's
    own training pipeline (:func:`facesr.data.datasets.degrade_offline`, fixed seeds, so
    every server start makes the same pictures).  Takes about 0.1 s.
    """
    from ..assets import sample_face_path
    from ..data.datasets import degrade_offline, prepare_hq
    from ..data.degradations import DegradationCfg
    from ..io.images import read_rgb

    hq = prepare_hq(read_rgb(sample_face_path()), 4 * size, "area", "sample face")
    out = [
        {
            "id": "downscaled",
            "title": "Downscaled only",
            "image": cv2.resize(hq, (size, size), interpolation=cv2.INTER_AREA),
        }
    ]
    for k, seed in enumerate((0, 1, 3), start=1):
        lq, _ = degrade_offline(hq, DegradationCfg(), seed, "web_example")
        if lq.shape[:2] != (size, size):
            lq = cv2.resize(lq, (size, size), interpolation=cv2.INTER_AREA)
        out.append({"id": f"degraded{k}", "title": f"Degraded #{k}", "image": np.ascontiguousarray(lq)})
    return out
