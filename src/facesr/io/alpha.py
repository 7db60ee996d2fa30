"""One input image as (RGB, alpha, kind) and back: what every restore path accepts.

:func:`split_alpha` turns a numpy uint8 array (0-255; HxW gray, HxWx1, HxWx3 RGB or HxWx4 RGBA)
or a PIL image (any mode) into uint8 RGB HxWx3, its uint8 alpha plane HxW (or None) and the
kind it came as; :func:`join_alpha` puts an x``scale`` RGB result back into that kind, with the
alpha plane upscaled bicubically (cv2.INTER_CUBIC).  Gray comes back as RGB.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import ImageError
from .images import pil_to_rgb, upscale_classical


def split_alpha(image) -> tuple[np.ndarray, np.ndarray | None, str]:
    """One input (numpy uint8 0-255 or PIL) -> (uint8 RGB HxWx3, uint8 alpha HxW or None, "numpy" | "pil").

    In-memory PIL images are used as stored (no EXIF rotation).  Raises TypeError for other types
    and :class:`~facesr.errors.ImageError` for other dtypes or shapes.
    """
    if isinstance(image, Image.Image):
        rgb, alpha = pil_to_rgb(image)
        return rgb, alpha, "pil"
    if not isinstance(image, np.ndarray):
        raise TypeError(f"restore() takes a numpy uint8 array or a PIL image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"restore() takes uint8 images (0-255), got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2), None, "numpy"
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image), None, "numpy"
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[..., :3]), np.ascontiguousarray(image[..., 3]), "numpy"
    raise ImageError(f"restore() takes HxW, HxWx3 or HxWx4 images, got shape {tuple(image.shape)}")


def join_alpha(rgb: np.ndarray, alpha: np.ndarray | None, kind: str, scale: int):
    """Undo :func:`split_alpha` on an x``scale`` uint8 RGB result: alpha upscaled bicubically, PIL back to PIL."""
    if alpha is not None:
        out = np.concatenate([rgb, upscale_classical(alpha, scale)[..., None]], axis=2)
        return Image.fromarray(out, "RGBA") if kind == "pil" else out
    return Image.fromarray(rgb, "RGB") if kind == "pil" else rgb
