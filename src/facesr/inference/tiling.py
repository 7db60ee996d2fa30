"""Tile grids for big images: cores that partition the LQ image, each grown by an overlap of real context.

Every output pixel is computed by exactly one tile (its core), so tiled output equals
untiled output (up to float rounding) once the overlap covers the model's receptive
field (``model.receptive_field()``).
"""

from __future__ import annotations

import math


def split_range(length: int, tile: int) -> list[tuple[int, int]]:
    """Split ``[0, length)`` into ``ceil(length / tile)`` near-equal consecutive ranges."""
    n = max(1, math.ceil(length / tile))
    edges = [round(k * length / n) for k in range(n + 1)]
    return [(edges[k], edges[k + 1]) for k in range(n)]


def tile_boxes(
    h: int, w: int, tile: int, overlap: int
) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Tiles of an ``h`` x ``w`` LQ image, in LQ pixels.

    Returns ``[(core, ctx), ...]`` with boxes ``(y0, y1, x0, x1)``: ``core`` cells
    partition the image (each at most ``tile`` wide/high), ``ctx`` is the core
    grown by ``overlap`` on each side, clipped to the image.
    """
    out = []
    for y0, y1 in split_range(h, tile):
        for x0, x1 in split_range(w, tile):
            ctx = (max(0, y0 - overlap), min(h, y1 + overlap), max(0, x0 - overlap), min(w, x1 + overlap))
            out.append(((y0, y1, x0, x1), ctx))
    return out
