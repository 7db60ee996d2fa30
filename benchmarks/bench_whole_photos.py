"""Run ``restore_photo`` over a folder of whole photos: detections, timing, and annotated previews.

    python benchmarks/bench_whole_photos.py ../shared/data/whole-photos --out /tmp/whole --upscale 2

Writes into ``--out``: ``<stem>.png`` (the restored photo), ``boxes/<stem>.png`` (detections drawn on
the input, at most 1000 px), and ``results.json`` (per photo: size, faces found, faces skipped as
too small, detection seconds, total seconds).  With ``--counts`` (default
``benchmarks/whole_photos_faces.json``, faces counted by eye) it prints found/present per photo.
Whether each box is on a real face was judged by looking at ``boxes/``: the script cannot know.
Needs the 'faces' extra.  Run it alone: the seconds are wall clock on whatever CPU this is.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--upscale", type=int, default=2)
    ap.add_argument("--detector", default="hog")
    ap.add_argument("--threads", type=int, default=2, help="torch / OpenCV threads")
    ap.add_argument("--counts", default=str(Path(__file__).with_name("whole_photos_faces.json")))
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    import facesr
    from facesr.faces import load_detector, read_photo
    from facesr.io import IMAGE_EXTS, write_png

    out = Path(a.out)
    (out / "boxes").mkdir(parents=True, exist_ok=True)
    restorer = facesr.load(device="cpu")
    detector = load_detector(a.detector)
    counts = json.loads(Path(a.counts).read_text())["clear"] if a.counts and Path(a.counts).is_file() else {}
    timed_detect = {"s": 0.0}

    def det(rgb):
        t = time.perf_counter()
        faces = detector(rgb)
        timed_detect["s"] = time.perf_counter() - t
        return faces

    rows = []
    for f in sorted(p for p in Path(a.folder).iterdir() if p.suffix.lower() in IMAGE_EXTS):
        rgb, alpha = read_photo(f)
        img = rgb if alpha is None else np.dstack([rgb, alpha])
        t = time.perf_counter()
        res = restorer.restore_photo(img, detector=det, upscale=a.upscale)
        total = time.perf_counter() - t
        write_png(out / f"{f.stem}.png", res.image)
        vis = rgb.copy()
        lw = max(2, max(rgb.shape[:2]) // 400)
        for face in res.faces + res.skipped:
            x0, y0, x1, y1 = (int(round(v)) for v in face.box)
            cv2.rectangle(vis, (x0, y0), (x1, y1), (255, 0, 0) if face in res.faces else (255, 200, 0), lw)
            for x, y in face.landmarks:
                cv2.circle(vis, (int(round(x)), int(round(y))), lw, (0, 255, 0), -1)
        k = min(1.0, 1000 / max(vis.shape[:2]))
        write_png(
            out / "boxes" / f"{f.stem}.png",
            cv2.resize(vis, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else vis,
        )
        row = {
            "photo": f.name,
            "width": rgb.shape[1],
            "height": rgb.shape[0],
            "found": len(res.faces),
            "too_small": len(res.skipped),
            "present": counts.get(f.name),
            "detect_s": round(timed_detect["s"], 3),
            "total_s": round(total, 3),
        }
        rows.append(row)
        print(
            f"{f.name:34s} {rgb.shape[1]:5d}x{rgb.shape[0]:<5d} found {row['found']:3d} (+{row['too_small']} small)"
            f" present {row['present']}  detect {row['detect_s']:.2f}s  total {row['total_s']:.2f}s",
            flush=True,
        )
    summary = {
        "photos": len(rows),
        "found": sum(r["found"] for r in rows),
        "present": sum(r["present"] or 0 for r in rows),
        "total_s": round(sum(r["total_s"] for r in rows), 2),
        "detect_s": round(sum(r["detect_s"] for r in rows), 2),
        "cpu": platform.processor() or platform.machine(),
        "threads": a.threads,
        "upscale": a.upscale,
        "detector": a.detector,
    }
    (out / "results.json").write_text(json.dumps({"summary": summary, "photos": rows}, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
