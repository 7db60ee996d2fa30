"""Measure where dlib's 5 landmarks fall on FFHQ-aligned 512x512 faces (facesr.faces.align.FFHQ_TEMPLATE_512).

    python benchmarks/measure_template.py ../shared/data/dev-val-hq --prefix ffhq_

Prints the mean landmarks (pixel-centre coordinates) over the faces found, their spread, and the
left-right symmetric version (mirrored about x = 255.5) that facesr uses.  Needs the 'faces' extra.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--prefix", default="ffhq_")
    a = ap.parse_args()
    from facesr.faces import load_detector
    from facesr.io.images import read_rgb

    det = load_detector("hog", upsample=0)
    pts = []
    for f in sorted(Path(a.folder).glob(f"{a.prefix}*.png")):
        faces = det(read_rgb(f))
        if len(faces) != 1:
            print(f"{f.name}: {len(faces)} faces, ignored")
            continue
        pts.append(faces[0].landmarks)
    p = np.array(pts)
    mean = p.mean(0)
    sym = mean.copy()
    for i, j in ((0, 2), (1, 3)):
        off = ((mean[i, 0] - 255.5) + (255.5 - mean[j, 0])) / 2
        y = (mean[i, 1] + mean[j, 1]) / 2
        sym[i], sym[j] = (255.5 + off, y), (255.5 - off, y)
    sym[4, 0] = 255.5
    print(f"{len(p)} faces\nmean:\n{mean.round(2)}\nstd:\n{p.std(0).round(2)}\nsymmetric:\n{sym.round(2)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
