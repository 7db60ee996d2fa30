"""Before/after sheet of ``facesr restore`` outputs: bicubic | facesr restore, on crops of a few photos.

    python scripts/whole_photo_sheet.py ../shared/data/whole-photos /tmp/whole docs/images/whole_photo_sheet.png

``/tmp/whole`` holds restored photos at upscale 2 (from benchmarks/bench_whole_photos.py or
``facesr restore --upscale 2``).  Each row shows one crop (input-photo pixels, listed in CROPS)
upscaled x2 by bicubic and by facesr restore, scaled to PANEL pixels wide.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

# stem: (x0, y0, x1, y1) in input-photo pixels
CROPS = {
    "gpen_Solvay_conference_1927": (430, 60, 830, 300),
    "codeformer_01": (0, 0, 248, 189),
    "gfpgan_10045": (100, 50, 420, 390),
    "psfrgan_test_hzgg": (60, 90, 560, 390),
}
PANEL = 380


def main(src: str, restored: str, out: str) -> int:
    from facesr.faces import read_photo
    from facesr.io.images import write_png

    rows = []
    for stem, (x0, y0, x1, y1) in CROPS.items():
        path = next(p for p in Path(src).iterdir() if p.stem == stem)
        rgb, _ = read_photo(path)
        res, _ = read_photo(Path(restored) / f"{stem}.png")
        bic = cv2.resize(rgb, (rgb.shape[1] * 2, rgb.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
        panels = []
        for img, label in ((bic, "bicubic x2"), (res, "facesr restore x2")):
            c = img[2 * y0 : 2 * y1, 2 * x0 : 2 * x1]
            k = PANEL / c.shape[1]
            c = cv2.resize(
                c, (PANEL, round(c.shape[0] * k)), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
            )
            c = np.ascontiguousarray(c)
            text = f"{label} ({stem})"
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
            cv2.rectangle(c, (0, 0), (tw + 8, th + 8), (0, 0, 0), -1)
            cv2.putText(c, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            panels.append(c)
        rows.append(np.hstack([panels[0], np.full((panels[0].shape[0], 6, 3), 255, np.uint8), panels[1]]))
        rows.append(np.full((6, rows[-1].shape[1], 3), 255, np.uint8))
    write_png(out, np.vstack(rows[:-1]))
    print(f"wrote {out} ({Path(out).stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
