"""Side-by-side comparison sheets: LQ | bicubic | SR | GT, one row per image.

:func:`compare_grid` draws in-memory uint8 RGB arrays (0-255); ``facesr compare``
(:mod:`facesr.commands.compare`) matches images by stem across LQ, SR and optional GT folders.

Panels are shown at their native pixel size (no resampling of the SR output, so
what you see is what the model produced); the LQ panel is the input upscaled
with nearest neighbour so its pixels stay visible, the bicubic panel is
``cv2.INTER_CUBIC`` to the SR size.  With GT, each panel is captioned with its
PSNR against GT (:func:`facesr.evaluation.metrics.psnr` on uint8), the best of the row is
highlighted and the SR caption shows its gain over bicubic.  ``zoom`` adds a
magnified crop (by default the eye region of an aligned face) under each panel.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import ImageError
from ..evaluation.metrics import psnr
from ..io.files import atomic_write_bytes
from ..io.images import encode_image

BG = (250, 250, 250)
INK = (30, 30, 30)
MUTED = (110, 110, 110)
BEST = (0, 128, 64)
BOX = (255, 200, 0)
EYES_BOX = (0.34, 0.56, 0.2, 0.8)  # (y0, y1, x0, x1) as fractions of the panel: eyes of an aligned face


@cache
def _font(size: int, bold: bool = False):
    """DejaVu Sans (bundled with matplotlib) at ``size`` px; PIL's default font as fallback."""
    try:
        from matplotlib import font_manager

        path = font_manager.findfont(
            font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal"),
            fallback_to_default=True,
        )
        return ImageFont.truetype(path, size)
    except Exception:
        try:
            return ImageFont.load_default(size)
        except TypeError:  # Pillow < 10.1
            return ImageFont.load_default()


def _text_w(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    x0, _, x1, _ = draw.textbbox((0, 0), text, font=font)
    return int(x1 - x0)


def _fit(img: np.ndarray, h: int, w: int, interp: int) -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=interp)


def _rgb(img: np.ndarray, what: str) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ImageError(f"compare_grid: {what} must be uint8 (0-255), got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ImageError(f"compare_grid: {what} must be HxWx3 RGB, got shape {tuple(img.shape)}")
    return np.ascontiguousarray(img[..., :3])


def _prepare_row(r: dict, has_gt: bool, max_panel: int) -> tuple[str, list[np.ndarray], list[tuple[str, bool]], float]:
    """One row's ``(name, panels, captions, shrink)``: LQ (nearest), bicubic, SR [, GT or a grey "no GT"]."""
    name = str(r.get("name", ""))
    sr = _rgb(r["sr"], f"{name} sr")
    h, w = sr.shape[:2]
    lq = _rgb(r["lq"], f"{name} lq")
    bic = _rgb(r["bicubic"], f"{name} bicubic") if r.get("bicubic") is not None else _fit(lq, h, w, cv2.INTER_CUBIC)
    gt = _rgb(r["gt"], f"{name} gt") if r.get("gt") is not None else None
    panels = [_fit(lq, h, w, cv2.INTER_NEAREST), _fit(bic, h, w, cv2.INTER_CUBIC), sr]
    captions: list[tuple[str, bool]] = [("", False)] * 3
    if gt is not None:
        if gt.shape != sr.shape:
            raise ImageError(f"{name}: GT {gt.shape[1]}x{gt.shape[0]} does not match SR {w}x{h}")
        captions = _psnr_captions(panels, gt)
        panels.append(gt)
        captions.append(("ground truth", False))
    elif has_gt:
        panels.append(np.full_like(sr, 235))
        captions.append(("no GT", False))
    shrink = min(1.0, max_panel / max(h, w))
    if shrink < 1.0:
        nh, nw = max(1, round(h * shrink)), max(1, round(w * shrink))
        panels = [cv2.resize(p, (nw, nh), interpolation=cv2.INTER_AREA) for p in panels]
    return name, panels, captions, shrink


def _psnr_captions(panels: list[np.ndarray], gt: np.ndarray) -> list[tuple[str, bool]]:
    """PSNR captions of the LQ, bicubic and SR panels against ``gt``, the best one flagged."""
    scores = [psnr(p, gt) for p in panels]
    best = int(np.argmax(scores))
    texts = [f"PSNR {s:.2f} dB" if math.isfinite(s) else "PSNR inf" for s in scores]
    if all(math.isfinite(s) for s in scores[1:]):
        texts[2] += f" ({scores[2] - scores[1]:+.2f} vs bicubic)"
    return [(t, i == best) for i, t in enumerate(texts)]


def _zoom_size(zoom_box: tuple[float, float, float, float], ph: int, pw: int) -> tuple[int, int, int, int, int, int]:
    """``(y0, y1, x0, x1, zoomed height, zoomed width)`` of the zoom crop of a ``ph`` x ``pw`` panel."""
    y0, y1 = int(zoom_box[0] * ph), max(int(zoom_box[0] * ph) + 1, int(zoom_box[1] * ph))
    x0, x1 = int(zoom_box[2] * pw), max(int(zoom_box[2] * pw) + 1, int(zoom_box[3] * pw))
    zh = round((y1 - y0) * pw / (x1 - x0))
    return y0, y1, x0, x1, zh, pw


class _Sheet:
    """Sizes, fonts and the canvas of one comparison sheet (pixels)."""

    def __init__(
        self, prepared: list, has_gt: bool, title: str | None, zoom: bool, zoom_box: tuple[float, float, float, float]
    ):
        self.ncol = len(prepared[0][1])
        self.col_w = col_w = max(p[1][0].shape[1] for p in prepared)
        self.fs = fs = max(13, min(26, col_w // 22))
        self.f_head, self.f_name = _font(fs + 2, True), _font(fs, True)
        self.f_cap, self.f_cap_b = _font(fs - 1), _font(fs - 1, True)
        self.margin, self.gap = max(10, fs), max(6, fs // 2)
        self.title_h = (fs + 2) * 2 if title else 0
        self.head_h = fs * 2 + 4
        self.name_h = fs + self.gap + 4
        self.cap_h = fs + self.gap + 4 if has_gt else self.gap
        self.zoom, self.zoom_box = zoom, zoom_box
        self.row_h = [
            self.name_h + panels[0].shape[0] + self.zoom_h(*panels[0].shape[:2]) + self.cap_h
            for _, panels, _, _ in prepared
        ]
        self.width = 2 * self.margin + self.ncol * col_w + (self.ncol - 1) * self.gap
        height = 2 * self.margin + self.title_h + self.head_h + sum(self.row_h) + self.gap * (len(prepared) - 1)
        self.canvas = Image.new("RGB", (self.width, height), BG)
        self.draw = ImageDraw.Draw(self.canvas)

    def zoom_h(self, ph: int, pw: int) -> int:
        """Height taken below a panel by its zoom crop (0 without zoom)."""
        return _zoom_size(self.zoom_box, ph, pw)[4] + self.gap if self.zoom else 0

    def header(self, y: int, title: str | None, heads: list[str]) -> int:
        """Draw the title and the column heads from ``y``; return the y below them."""
        fs, draw = self.fs, self.draw
        if title:
            draw.text((self.margin, y), title, fill=INK, font=_font(fs + 4, True))
            y += self.title_h
        for c, head in enumerate(heads):
            x = self.margin + c * (self.col_w + self.gap)
            draw.text(
                (x + (self.col_w - _text_w(draw, head, self.f_head)) // 2, y + fs // 3),
                head,
                fill=INK,
                font=self.f_head,
            )
        y += self.head_h
        draw.line([(self.margin, y - 4), (self.width - self.margin, y - 4)], fill=(200, 200, 200), width=1)
        return y

    def row(self, y: int, name: str, panels: list[np.ndarray], captions: list[tuple[str, bool]], shrink: float) -> None:
        """Draw one row (label, panels, zoom crops, captions) from ``y``."""
        label = name + (f"   (shown at {shrink * 100:.0f}%)" if shrink < 1 else "")
        self.draw.text((self.margin, y + 2), label, fill=MUTED, font=self.f_name)
        py = y + self.name_h
        ph, pw = panels[0].shape[:2]
        for c, (panel, (cap, best)) in enumerate(zip(panels, captions)):
            x = self.margin + c * (self.col_w + self.gap) + (self.col_w - pw) // 2
            self.panel(x, py, panel)
            if cap:
                font = self.f_cap_b if best else self.f_cap
                cy = py + ph + self.zoom_h(ph, pw) + self.gap // 2
                self.draw.text(
                    (x + (pw - _text_w(self.draw, cap, font)) // 2, cy), cap, fill=BEST if best else INK, font=font
                )

    def panel(self, x: int, y: int, panel: np.ndarray) -> None:
        """Paste one panel at (x, y), with its zoom crop below it and the zoom box drawn on it."""
        ph, pw = panel.shape[:2]
        tile = Image.fromarray(panel, "RGB")
        if self.zoom:
            zy0, zy1, zx0, zx1, zh, zw = _zoom_size(self.zoom_box, ph, pw)
            crop = tile.crop((zx0, zy0, zx1, zy1)).resize((zw, zh), Image.Resampling.NEAREST)
            self.canvas.paste(crop, (x, y + ph + self.gap))
            ImageDraw.Draw(tile).rectangle((zx0, zy0, zx1 - 1, zy1 - 1), outline=BOX, width=max(1, pw // 256))
        self.canvas.paste(tile, (x, y))


def compare_grid(
    rows: Sequence[dict],
    out_path: str | os.PathLike | None = None,
    *,
    sr_title: str = "SR (facesr)",
    title: str | None = None,
    zoom: bool = False,
    zoom_box: tuple[float, float, float, float] = EYES_BOX,
    max_panel: int = 768,
) -> np.ndarray:
    """Draw a comparison sheet; return it as uint8 RGB (0-255) and write it to ``out_path`` if given
    (PNG, JPEG or WebP, as its ending says).

    ``rows``: dicts with ``name`` (str), ``lq`` and ``sr`` (uint8 RGB HxWx3, 0-255), optional
    ``bicubic`` (default: ``cv2.INTER_CUBIC`` of ``lq`` to the SR size) and optional ``gt``
    (same size as ``sr``; gives PSNR captions).  Columns: LQ (nearest) | Bicubic | SR | GT,
    the GT column only when some row has one.  Panels bigger than ``max_panel`` pixels are
    shrunk (INTER_AREA) and the caption says so.  ``zoom`` adds a nearest-neighbour
    magnified crop of ``zoom_box`` = (y0, y1, x0, x1), fractions of the panel, below each panel.
    """
    if not rows:
        raise ImageError("compare_grid: no rows to draw")
    has_gt = any(r.get("gt") is not None for r in rows)
    prepared = [_prepare_row(r, has_gt, max_panel) for r in rows]  # validates every image first
    factor = round(np.asarray(rows[0]["sr"]).shape[1] / np.asarray(rows[0]["lq"]).shape[1])
    sheet = _Sheet(prepared, has_gt, title, zoom, zoom_box)
    heads = [f"LQ (nearest x{factor})", f"Bicubic x{factor}", sr_title, "GT"][: sheet.ncol]
    y = sheet.header(sheet.margin, title, heads)
    for (name, panels, captions, shrink), rh in zip(prepared, sheet.row_h):
        sheet.row(y, name, panels, captions, shrink)
        y += rh + sheet.gap
    out = np.asarray(sheet.canvas)
    if out_path is not None:
        atomic_write_bytes(out_path, encode_image(out, out_path))
    return out
