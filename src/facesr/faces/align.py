"""Alignment of faces in a photo to the FFHQ template, and anti-aliased affine warps.

Coordinates
-----------
All coordinates are **pixel-centre coordinates** (OpenCV's convention): the
centre of pixel ``(row i, column j)`` is at ``(x, y) = (j, i)``, so pixel ``j``
spans ``[j - 0.5, j + 0.5]`` and an image ``w`` pixels wide spans
``[-0.5, w - 0.5]``.  A 2x3 affine matrix ``M`` maps a point ``(x, y)`` of one
image to ``M @ (x, y, 1)`` in another; every matrix here is *forward*
(source -> destination) unless its name says otherwise.

Resizing a grid by a factor ``k`` maps ``x -> (x + 0.5) * k - 0.5``
(:func:`grid_scale`), which is how OpenCV's ``resize`` and the x4 model (pixel
shuffle) relate input and output pixels, so a 128x128 crop, its 512x512
restoration and a photo upscaled by 2 or 4 all line up to the sub-pixel.

The template
------------
:data:`FFHQ_TEMPLATE_512` holds where dlib's 5-point landmark predictor puts
its points on FFHQ-aligned 512x512 faces: both corners of each eye and the
base of the nose.  It was measured by ``benchmarks/measure_template.py`` on the
10 genuine FFHQ faces of ``../shared/data/dev-val-hq`` (mean of the dlib points,
then made left-right symmetric about x = 255.5).  Its eye centres,
(192.4, 245.2) and (318.6, 245.2), lie within 6 pixels of the eye centres of
the 5-point FFHQ template that GFPGAN and facexlib use at 512
((193.0, 239.9) and (318.9, 240.2)); the 6-pixel vertical offset is the
difference between eye corners and pupils.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: dlib 5-point landmarks of an FFHQ-aligned 512x512 face, pixel-centre (x, y) coordinates, in dlib's order:
#: image-right eye outer corner, image-right eye inner corner, image-left eye outer corner,
#: image-left eye inner corner, base of the nose.  (The image-right eye is the subject's left eye.)
FFHQ_TEMPLATE_512 = np.array(
    [
        [344.24, 242.99],
        [293.03, 247.47],
        [166.76, 242.99],
        [217.97, 247.47],
        [255.5, 337.79],
    ],
    dtype=np.float64,
)

#: Side, in pixels, of the aligned face that the template describes.
TEMPLATE_SIZE = 512

#: Below this linear scale factor a warp first area-resizes its source (anti-aliasing).
ANTIALIAS_BELOW = 0.75


def grid_scale(k: float) -> np.ndarray:
    """2x3 matrix of resizing a pixel grid by ``k``: ``x -> (x + 0.5) * k - 0.5`` (same for y)."""
    return np.array([[k, 0.0, 0.5 * k - 0.5], [0.0, k, 0.5 * k - 0.5]], dtype=np.float64)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 matrix of ``a`` after ``b`` (apply ``b`` first)."""
    a3 = np.vstack([a, [0.0, 0.0, 1.0]])
    b3 = np.vstack([b, [0.0, 0.0, 1.0]])
    return (a3 @ b3)[:2]


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def apply(m: np.ndarray, points: np.ndarray | list) -> np.ndarray:
    """Map (N, 2) points through the 2x3 matrix ``m``; returns float64 (N, 2)."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    return p @ np.asarray(m, np.float64)[:, :2].T + np.asarray(m, np.float64)[:, 2]


def linear_scale(m: np.ndarray) -> float:
    """Linear scale factor of an affine matrix (square root of the area ratio)."""
    return math.sqrt(abs(float(np.linalg.det(np.asarray(m, np.float64)[:, :2]))))


def template(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """:data:`FFHQ_TEMPLATE_512` on a ``size`` x ``size`` grid (pixel-centre correct), float64 (5, 2)."""
    return apply(grid_scale(size / TEMPLATE_SIZE), FFHQ_TEMPLATE_512)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping the (N, 2) points
    ``src`` onto ``dst``: float64 2x3.  Unlike a robust fit it changes smoothly with the points."""
    p, q = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    pc, qc = p - p.mean(axis=0), q - q.mean(axis=0)
    n = float((pc**2).sum())
    if n <= 0:
        raise ValueError("landmarks are degenerate: all points coincide")
    a = float((pc * qc).sum()) / n
    b = float((pc[:, 0] * qc[:, 1] - pc[:, 1] * qc[:, 0]).sum()) / n
    r = np.array([[a, -b], [b, a]])
    return np.hstack([r, (q.mean(axis=0) - r @ p.mean(axis=0))[:, None]])


def estimate_alignment(landmarks: np.ndarray, size: int = TEMPLATE_SIZE, robust: bool = True) -> np.ndarray:
    """Similarity transform (rotation, uniform scale, translation) from a photo to the aligned face.

    Args:
        landmarks: float (5, 2) dlib 5-point landmarks in photo pixel-centre coordinates
            (the order of :data:`FFHQ_TEMPLATE_512`).
        size: side of the aligned crop in pixels (512 = the template's own grid, 128 = the x4 model's input).

        robust: fit by OpenCV's ``estimateAffinePartial2D`` with LMEDS (as GFPGAN and facexlib do; the
            default, for photos), else by least squares over all five points (:func:`fit_similarity`; for
            video: LMEDS picks its point subsets afresh in every frame and its fit can jump by degrees
            between nearly equal frames).

    Returns:
        float64 2x3 matrix mapping photo coordinates to aligned-crop coordinates.
    """
    lm = np.asarray(landmarks, np.float64).reshape(-1, 2)
    if lm.shape != FFHQ_TEMPLATE_512.shape or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks must be 5 finite (x, y) points, got shape {lm.shape}")
    if robust:
        m, _ = cv2.estimateAffinePartial2D(lm, template(size), method=cv2.LMEDS)
    else:
        m = fit_similarity(lm, template(size))
    if m is None or not np.all(np.isfinite(m)) or linear_scale(m) <= 0:
        raise ValueError("landmarks are degenerate: no similarity transform maps them to the template")
    return m.astype(np.float64)


def warp_affine(
    src: np.ndarray,
    m: np.ndarray,
    dsize: tuple[int, int],
    interpolation: int = cv2.INTER_CUBIC,
    border: int = cv2.BORDER_REFLECT_101,
    border_value: float = 0.0,
) -> np.ndarray:
    """``cv2.warpAffine`` with the forward matrix ``m`` (``src`` -> destination), anti-aliased.

    Args:
        src: HxW or HxWxC image (uint8 0-255 or float32); only the part that the destination
            needs is read.
        m: 2x3 forward matrix, source pixel-centre coordinates -> destination coordinates.
        dsize: destination (width, height) in pixels.
        interpolation: OpenCV interpolation flag for the final warp (uint8 results saturate to 0-255).
        border, border_value: OpenCV border handling for destination pixels that map outside ``src``.

    Where ``m`` shrinks by more than :data:`ANTIALIAS_BELOW`, the needed region of ``src``
    is first area-resized (``cv2.INTER_AREA``) to about the destination scale, so
    minified faces do not alias.  The result has ``src``'s dtype and channels.
    """
    m = np.asarray(m, np.float64)
    w_out, h_out = int(dsize[0]), int(dsize[1])
    s = linear_scale(m)
    if s < ANTIALIAS_BELOW:
        h, w = src.shape[:2]
        inv = invert(m)
        corners = apply(inv, [[-0.5, -0.5], [w_out - 0.5, -0.5], [-0.5, h_out - 0.5], [w_out - 0.5, h_out - 0.5]])
        pad = 2.0 / s + 2.0
        x0 = max(0, int(math.floor(corners[:, 0].min() - pad)))
        y0 = max(0, int(math.floor(corners[:, 1].min() - pad)))
        x1 = min(w, int(math.ceil(corners[:, 0].max() + pad)) + 1)
        y1 = min(h, int(math.ceil(corners[:, 1].max() + pad)) + 1)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            roi = src[y0:y1, x0:x1]
            rw, rh = x1 - x0, y1 - y0
            nw, nh = max(2, int(round(rw * s))), max(2, int(round(rh * s)))
            small = cv2.resize(roi, (nw, nh), interpolation=cv2.INTER_AREA)
            # small -> roi: x_roi = (x_small + 0.5) * rw / nw - 0.5 (per axis); roi -> src: + (x0, y0)
            back = np.array(
                [[rw / nw, 0.0, 0.5 * rw / nw - 0.5 + x0], [0.0, rh / nh, 0.5 * rh / nh - 0.5 + y0]], dtype=np.float64
            )
            src, m = small, compose(m, back)
    return cv2.warpAffine(src, m, (w_out, h_out), flags=interpolation, borderMode=border, borderValue=border_value)


def crop_face(photo: np.ndarray, affine_512: np.ndarray, size: int, margin: int = 0) -> np.ndarray:
    """Cut the aligned face out of ``photo``: a uint8 crop (same channels as ``photo``).

    ``affine_512`` maps photo pixel coordinates to the 512x512 aligned face (as from
    :func:`estimate_alignment`); ``size`` 128 gives the x4 model's input.  With ``margin`` the
    crop is ``size + 2 * margin`` pixels wide and the aligned square sits at
    ``[margin, margin + size)`` in both directions (extra context for the model).  Parts of the
    crop outside the photo are filled by mirroring the photo at its edge.
    """
    m = compose(grid_scale(size / TEMPLATE_SIZE), affine_512)
    m[:, 2] += margin
    n = size + 2 * margin
    return warp_affine(photo, m, (n, n))
