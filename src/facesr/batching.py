"""Pack same-size images into forward passes under a pixel budget: the one batching rule of facesr.

A forward pass takes images of one size only, at most ``batch_size`` of them and, when they are
``h`` x ``w`` LQ pixels each, at most ``max_pixels // (h * w)`` (but always at least one), so the
activation memory of a pass stays bounded whatever the image size.  :class:`facesr.inference.Restorer`
(images and tiles), evaluation, ``facesr predict`` and whole-photo restoration all batch with
:func:`same_size_batches`.  Pure Python (no torch), so light modules can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

#: Default budget: LQ pixels in one forward pass (four 128 x 128 faces).
MAX_BATCH_PIXELS = 256 * 256


def batch_cap(h: int, w: int, batch_size: int, max_pixels: int | None = MAX_BATCH_PIXELS) -> int:
    """Most ``h`` x ``w`` images in one pass: ``min(batch_size, max_pixels // (h * w))``, at least 1
    (``max_pixels`` None = no pixel budget)."""
    if max_pixels is None:
        return max(1, int(batch_size))
    return max(1, min(int(batch_size), int(max_pixels) // max(1, h * w)))


def same_size_batches(
    items: Iterable[T],
    size: Callable[[T], tuple[int, int]],
    batch_size: int,
    max_pixels: int | None = MAX_BATCH_PIXELS,
    regroup: bool = False,
) -> Iterator[list[T]]:
    """Lists of items of one ``size(item) == (h, w)``, each at most :func:`batch_cap` long.

    ``regroup=False`` packs consecutive items only and is lazy (``items`` may be a stream: a batch
    is yielded as soon as it is full or the next item differs in size).  ``regroup=True`` first
    sorts the items by size (stable), so that all same-size items share batches, in their order.
    """
    if regroup:
        items = sorted(items, key=lambda it: tuple(size(it)))
    batch: list[T] = []
    key: tuple[int, ...] | None = None
    cap = 0
    for item in items:
        k = tuple(size(item))
        if batch and k != key:
            yield batch
            batch = []
        if not batch:
            key, cap = k, batch_cap(k[0], k[1], batch_size, max_pixels)
        batch.append(item)
        if len(batch) >= cap:
            yield batch
            batch = []
    if batch:
        yield batch
