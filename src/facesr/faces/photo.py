"""Restore the faces of a whole photo: detect, align, restore, paste back over an upscaled background.

Pipeline of :func:`restore_photo` for a photo of ``W`` x ``H`` pixels and ``upscale`` u:

1. detect faces and their 5 landmarks (:mod:`facesr.faces.detect`);
2. per face, fit the similarity transform to the FFHQ template (:mod:`facesr.faces.align`) and
   cut the aligned crop at the model's input size (128 x 128 for the x4 model), area-resampled
   where the face is larger than the crop, plus ``context`` pixels of surroundings;
3. restore all crops with the model (batched) and keep the central 512 x 512;
4. upscale the whole photo to ``u*W`` x ``u*H`` (bicubic, Lanczos or the model itself) and
   paste each restored face back through the inverse transform with a feathered mask
   (:mod:`facesr.faces.paste`), smallest face first.

Faces whose box is narrower than ``min_face`` photo pixels are left as background and
reported in :attr:`PhotoResult.skipped`.  At most ``max_faces`` faces are restored (the largest
ones); the others are left as background too, in :attr:`PhotoResult.over_cap`, and
:attr:`PhotoResult.notes` says how many.  Memory: the photo, the background and the output
are uint8; float32 is used only inside one face's region at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..batching import same_size_batches
from ..errors import ImageError
from ..io.alpha import join_alpha, split_alpha
from ..io.images import upscale_classical
from .align import TEMPLATE_SIZE, crop_face, estimate_alignment
from .detect import Face
from .paste import paste_face, paste_order

BACKGROUNDS = ("bicubic", "lanczos", "model")
UPSCALES = (1, 2, 4)
DEFAULT_MIN_FACE = 32
#: Most faces restored in one photo by default (the largest ones), so one photo of a crowd has a bounded cost.
DEFAULT_MAX_FACES = 32
#: Extra model-input pixels of photo context around each aligned crop (cropped off the output).
DEFAULT_CONTEXT = 16
#: Largest input photo (pixels) read by default: 48 MP, e.g. 8000 x 6000.
DEFAULT_MAX_PIXELS = 48_000_000
#: Largest output image (pixels): 4000 x 3000 at upscale 4 (192 MP, 576 MB as uint8 RGB) fits.
MAX_OUTPUT_PIXELS = 256_000_000


@dataclass
class PhotoResult:
    """What :func:`restore_photo` returns.

    Attributes:
        image: the restored photo, ``upscale`` times the input size: numpy uint8 (0-255) RGB
            HxWx3, or RGBA HxWx4 when the input had alpha (alpha upscaled bicubically); a PIL
            image when the input was one.
        faces: the restored faces (detection order), each with its ``affine`` set.
        skipped: faces found but smaller than ``min_face`` (left as background).
        upscale: output pixels per input pixel.
        crops: with ``keep_crops``, per restored face the aligned model input (uint8 RGB,
            128 x 128 for the x4 model) and its restoration (512 x 512); else empty.
        over_cap: faces large enough to restore but left as background because the photo had more
            than ``max_faces`` of them (the smallest ones; detection order).
        notes: sentences for the user about what was left out (empty when nothing was).
    """

    image: Any  # numpy uint8 array, or a PIL image when the input was one
    faces: list[Face]
    skipped: list[Face]
    upscale: int
    crops: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    over_cap: list[Face] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def photo_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels; ImageError if unreadable.

    :func:`facesr.io.images.image_size`: no global state is changed, so it is safe from any thread.
    """
    from ..io.images import image_size

    return image_size(path)


def read_photo(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a photo as (uint8 RGB HxWx3, uint8 alpha HxW or None), 0-255, as ``facesr predict`` does.

    EXIF rotation is applied, grayscale becomes RGB, 16-bit is scaled to 8-bit.  The pixel count is
    checked from the header first: more than ``max_pixels`` raises ImageError before decoding.
    """
    from ..io.images import read_image

    return read_image(path, max_pixels)


def upscale_background(rgb: np.ndarray, upscale: int, method: str = "bicubic", restorer=None) -> np.ndarray:
    """The whole photo upscaled: uint8 RGB (0-255), ``upscale`` times the size of ``rgb``.

    ``method``: ``"bicubic"`` (cv2.INTER_CUBIC), ``"lanczos"`` (cv2.INTER_LANCZOS4) or ``"model"``
    (the restorer on the whole photo, tiled, then area-resized when ``upscale`` is below the
    model's scale; slow on a CPU).  ``upscale`` 1 returns a copy for the classical methods.
    """
    h, w = rgb.shape[:2]
    if method == "model":
        if restorer is None:
            raise ValueError("background method 'model' needs a restorer")
        up = restorer.restore_rgb([rgb])[0]
        if up.shape[:2] != (h * upscale, w * upscale):
            up = cv2.resize(up, (w * upscale, h * upscale), interpolation=cv2.INTER_AREA)
        return up
    if method not in BACKGROUNDS:
        raise ValueError(f"background method must be one of {', '.join(BACKGROUNDS)}, got {method!r}")
    if upscale == 1:
        return rgb.copy()
    return upscale_classical(rgb, upscale, method)


def _check_options(upscale: int, background: str, context: int, min_face: float, max_faces: int | None = None) -> None:
    """ValueError for a :func:`restore_photo` option out of range."""
    if max_faces is not None and (isinstance(max_faces, bool) or int(max_faces) != max_faces or max_faces < 0):
        raise ValueError(f"max_faces must be a whole number >= 0 (or None for no cap), got {max_faces!r}")
    if upscale not in UPSCALES:
        raise ValueError(f"upscale must be one of {', '.join(map(str, UPSCALES))}, got {upscale!r}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    if min_face < 0:
        raise ValueError(f"min_face must be >= 0, got {min_face}")


def _check_size(shape: tuple[int, ...], upscale: int, max_output_pixels: int) -> None:
    """ImageError for an empty photo, or one whose output at ``upscale`` would exceed ``max_output_pixels``."""
    h, w = shape[:2]
    if min(h, w) < 1:
        raise ImageError(f"restore_photo() got an empty image of shape {tuple(shape)}")
    if h * w * upscale * upscale > max_output_pixels:
        raise ImageError(
            f"a {w}x{h} photo at upscale {upscale} would be {w * upscale}x{h * upscale} = "
            f"{h * w * upscale * upscale / 1e6:.0f} megapixels, above {max_output_pixels / 1e6:.0f} "
            f"(max_output_pixels); use a smaller upscale"
        )


def _restore_crops(
    restorer, crops: list[np.ndarray], context: int, progress: Callable[[int, int], None] | None
) -> list[np.ndarray]:
    """The aligned uint8 crops restored, each cut to its central 512 x 512 (``context`` LQ pixels off each
    side), through ``restorer.restore_rgb`` one forward pass at a time; ``progress(done, total)`` after each."""
    s = restorer.scale
    restored: list[np.ndarray] = []
    for chunk in same_size_batches(crops, lambda c: c.shape[:2], restorer.batch_size, restorer.MAX_BATCH_PIXELS):
        for sr in restorer.restore_rgb(chunk):
            restored.append(
                np.ascontiguousarray(
                    sr[context * s : context * s + TEMPLATE_SIZE, context * s : context * s + TEMPLATE_SIZE]
                )
            )
        if progress is not None:
            progress(len(restored), len(crops))
    return restored


def largest_faces(faces: list[Face], max_faces: int | None) -> tuple[list[Face], list[Face]]:
    """(the ``max_faces`` largest of ``faces``, the rest), both in detection order; None = no cap.

    Ties in size keep the earlier detection.
    """
    if max_faces is None or len(faces) <= max_faces:
        return list(faces), []
    order = sorted(range(len(faces)), key=lambda i: (-faces[i].size, i))
    keep = set(order[: int(max_faces)])
    return ([f for i, f in enumerate(faces) if i in keep], [f for i, f in enumerate(faces) if i not in keep])


def _affine(face: Face) -> np.ndarray:
    """The face's photo-to-template map, which the pipeline has set by now."""
    if face.affine is None:
        raise ValueError("face has no alignment yet")
    return face.affine


def over_cap_note(n_over: int, n_restorable: int, max_faces: int) -> str:
    """The note of a photo with more faces than ``max_faces``: how many were restored and how many left out."""
    return (
        f"the photo has {n_restorable} faces large enough to restore; only the {max_faces} largest were "
        f"restored, {n_over} left as they were (max_faces = {max_faces})"
    )


def restore_photo(
    restorer,
    image,
    detector: Callable[[np.ndarray], list[Face]] | None = None,
    upscale: int = 2,
    background: str = "bicubic",
    min_face: float = DEFAULT_MIN_FACE,
    keep_crops: bool = False,
    context: int = DEFAULT_CONTEXT,
    max_output_pixels: int = MAX_OUTPUT_PIXELS,
    progress: Callable[[int, int], None] | None = None,
    max_faces: int | None = DEFAULT_MAX_FACES,
) -> PhotoResult:
    """Restore every face of a whole photo and return it upscaled (see the module docstring).

    Args:
        restorer: a :class:`facesr.inference.Restorer` (its model maps an ``s``-times smaller
            aligned crop to 512 x 512; ``s`` = 4 for the shipped model).  The crops go through
            ``restorer.restore_rgb`` one forward pass at a time (:func:`facesr.batching.same_size_batches`).
        image: numpy uint8 (0-255) HxW, HxWx3 RGB or HxWx4 RGBA, or a PIL image (used as
            stored: EXIF rotation is applied when reading files, by :func:`read_photo`).
        detector: callable uint8 RGB -> list of :class:`Face` (default: dlib HOG, which needs the
            ``faces`` extra).
        upscale: output pixels per input pixel, 1, 2 or 4.
        background: how the rest of the photo is upscaled: ``"bicubic"``, ``"lanczos"`` or ``"model"``.
        min_face: faces whose box is narrower than this many *input* pixels are not restored.
        keep_crops: also return the aligned inputs and restored faces (:attr:`PhotoResult.crops`).
        context: model-input pixels of real photo around each aligned crop: the model sees a
            ``(128 + 2 * context)``-pixel square and only the central 512 x 512 of its output is kept,
            so the zero padding of its convolutions stays away from the pasted face (default 16).
        max_output_pixels: refuse (ImageError) when the output would have more pixels.
        progress: called as ``progress(done, total)`` after each forward pass of restored faces.
        max_faces: restore at most this many faces, the largest (default 32; None = no cap); the others
            are left as background and listed in :attr:`PhotoResult.over_cap`, with a note.
    """
    _check_options(upscale, background, context, min_face, max_faces)
    rgb, alpha, kind = split_alpha(image)
    _check_size(rgb.shape, upscale, max_output_pixels)
    if detector is None:
        from .detect import load_detector

        detector = load_detector()
    found = list(detector(rgb))
    faces = [f for f in found if f.size >= min_face]
    skipped = [f for f in found if f.size < min_face]

    lq_size = TEMPLATE_SIZE // restorer.scale
    kept: list[Face] = []
    for f in faces:
        try:
            f.affine = estimate_alignment(f.landmarks, TEMPLATE_SIZE)
        except ValueError:
            skipped.append(f)
            continue
        kept.append(f)
    faces, over_cap = largest_faces(kept, max_faces)
    notes = [over_cap_note(len(over_cap), len(kept), int(max_faces))] if over_cap and max_faces is not None else []
    crops = [crop_face(rgb, _affine(f), lq_size, margin=context) for f in faces]
    restored = _restore_crops(restorer, crops, context, progress)
    if context:
        crops = [np.ascontiguousarray(c[context : context + lq_size, context : context + lq_size]) for c in crops]

    out = upscale_background(rgb, upscale, background, restorer)
    for i in paste_order([f.size for f in faces]):
        paste_face(out, restored[i], _affine(faces[i]), upscale)

    result_image = join_alpha(out, alpha, kind, upscale)
    return PhotoResult(
        image=result_image,
        faces=faces,
        skipped=skipped,
        upscale=upscale,
        crops=list(zip(crops, restored)) if keep_crops else [],
        over_cap=over_cap,
        notes=notes,
    )
