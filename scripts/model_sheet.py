"""Side-by-side sheet of several models on LQ faces: LQ (nearest) | bicubic | model A | model B ...

    python scripts/model_sheet.py ../shared/data/test-real --model previous=/tmp/prev.safetensors \
        --model new=src/facesr/weights/facesr_default.safetensors --out docs/images/test_real_sheet.jpg

Each row is one LQ image (uint8 RGB, any size, shown x4); each panel is ``--panel`` pixels square
(area-downscaled from the x4 output, so the sheet stays small). Labels are drawn above each column.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from PIL import Image, ImageDraw

import facesr
from facesr.io import list_images, read_rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lq_dir")
    ap.add_argument("--model", action="append", required=True, metavar="LABEL=WEIGHTS")
    ap.add_argument("--out", required=True)
    ap.add_argument("--panel", type=int, default=256, help="panel size in pixels (default 256)")
    a = ap.parse_args()
    models = [(m.split("=", 1)[0], facesr.load(m.split("=", 1)[1])) for m in a.model]
    files = list_images(a.lq_dir)
    p, head = a.panel, 28
    labels = ["LQ (nearest)", "bicubic"] + [lab for lab, _ in models]
    sheet = Image.new("RGB", (p * len(labels), head + p * len(files)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, lab in enumerate(labels):
        draw.text((c * p + 6, 8), lab, fill="black")
    for r, f in enumerate(files):
        lq = read_rgb(f)
        h, w = lq.shape[:2]
        panels = [
            cv2.resize(lq, (4 * w, 4 * h), interpolation=cv2.INTER_NEAREST),
            cv2.resize(lq, (4 * w, 4 * h), interpolation=cv2.INTER_CUBIC),
        ]
        panels += [rest.restore(lq) for _, rest in models]
        for c, img in enumerate(panels):
            img = cv2.resize(img, (p, p), interpolation=cv2.INTER_AREA)
            sheet.paste(Image.fromarray(np.ascontiguousarray(img)), (c * p, head + r * p))
        draw.text((4, head + r * p + 4), f.stem, fill="yellow")
    sheet.save(a.out, quality=92)
    print(f"wrote {a.out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
