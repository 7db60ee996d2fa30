"""Paste restored faces back into a (possibly upscaled) photo with a feathered mask.

The mask is drawn once in the aligned crop's own coordinates and warped back with
the face, so its erosion and feathering scale with the face: a face 60 pixels
wide gets a ramp a few pixels wide, a face 600 pixels wide one ten times wider.
Its shape is a rounded square (a superellipse), 0 along the crop's edges and 1
over the face, with a smoothstep ramp between, so no box edge or corner can
show.  Faces are composited one after the other in float32 inside each face's
bounding box only (the rest of the photo is never converted to float).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from .align import TEMPLATE_SIZE, apply, compose, grid_scale, invert, warp_affine

#: Mask geometry, as fractions of the aligned crop's side: zero margin along the crop edge and the
#: width of the smoothstep ramp from 0 to 1.  Superellipse exponent 4 = a square with rounded corners.
MASK_MARGIN = 0.02
MASK_RAMP = 0.12
MASK_POWER = 4.0


@functools.lru_cache(maxsize=4)
def face_mask(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """Feathered mask of an aligned face crop: float32 ``size`` x ``size`` in [0, 1] (read-only).

    1 over the face, falling smoothly (smoothstep) to exactly 0 at a margin of
    ``MASK_MARGIN * size`` pixels from the crop's edge, over ``MASK_RAMP * size`` pixels.
    """
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r = (np.abs(xx - c) ** MASK_POWER + np.abs(yy - c) ** MASK_POWER) ** (1.0 / MASK_POWER)
    t = np.clip((size / 2.0 - MASK_MARGIN * size - r) / (MASK_RAMP * size), 0.0, 1.0)
    m = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    m.setflags(write=False)
    return m


def output_affine(affine_512: np.ndarray, upscale: float) -> np.ndarray:
    """2x3 map from the output image (photo upscaled by ``upscale``) to the 512x512 aligned face."""
    return compose(affine_512, grid_scale(1.0 / upscale))


def paste_region(affine_512: np.ndarray, upscale: float, out_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Bounding box ``(x0, y0, x1, y1)`` (output pixels, end exclusive) of the face's crop in the output, or None."""
    to_out = invert(output_affine(affine_512, upscale))
    s = TEMPLATE_SIZE
    corners = apply(to_out, [[-0.5, -0.5], [s - 0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5]])
    h, w = out_hw
    x0 = max(0, int(math.floor(corners[:, 0].min())))
    y0 = max(0, int(math.floor(corners[:, 1].min())))
    x1 = min(w, int(math.ceil(corners[:, 0].max())) + 1)
    y1 = min(h, int(math.ceil(corners[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def paste_face(
    out: np.ndarray, face: np.ndarray, affine_512: np.ndarray, upscale: float, mask: np.ndarray | None = None
) -> None:
    """Blend one aligned face into ``out`` in place.

    Args:
        out: uint8 HxWx3 RGB output image (0-255): the photo upscaled by ``upscale``.
        face: uint8 RGB aligned face (0-255), any square size (512x512 from the x4 model); it is
            treated as covering the 512x512 aligned grid.
        affine_512: 2x3 map from *input photo* pixel coordinates to the 512x512 aligned face.
        upscale: output pixels per input photo pixel (1, 2, 4, ...).
        mask: float32 [0, 1] blend weights on the face's grid (default :func:`face_mask`).
    """
    fs = face.shape[0]
    if mask is None:
        mask = face_mask(fs)
    box = paste_region(affine_512, upscale, out.shape[:2])
    if box is None:
        return
    x0, y0, x1, y1 = box
    # face grid -> 512 grid -> output -> ROI
    to_roi = compose(
        np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]),
        compose(invert(output_affine(affine_512, upscale)), grid_scale(TEMPLATE_SIZE / fs)),
    )
    dsize = (x1 - x0, y1 - y0)
    f = warp_affine(face, to_roi, dsize, interpolation=cv2.INTER_CUBIC, border=cv2.BORDER_REPLICATE)
    m = warp_affine(mask, to_roi, dsize, interpolation=cv2.INTER_LINEAR, border=cv2.BORDER_CONSTANT, border_value=0.0)
    m = np.clip(m, 0.0, 1.0)[..., None]
    roi = out[y0:y1, x0:x1]
    blended = roi.astype(np.float32) * (1.0 - m) + f.astype(np.float32) * m
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def paste_order(sizes: list[float]) -> list[int]:
    """Indices in compositing order: smallest face first, so the largest (nearest) face ends on top.

    Ties keep detection order.
    """
    return sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
