"""Face detector benchmark: recall, false positives and seconds per photo, today's search against others.

    python benchmarks/bench_detector.py --configs upright,rotated [--synthetic ../shared/data/dev-val-celebahq]
        [--whole ../shared/data/whole-photos --boxes /tmp/boxes] [--json out.json]

Two sets:

* **synthetic** (``--synthetic``): held-out CelebA-HQ faces pasted into textured backgrounds, four per
  1024x768 photo, rolled by 0/10/20/30 degrees (random sign) at face sizes 48-256 px (the side of
  dlib's box on the upright face, about 1.25x the eye-to-chin distance), then blurred (Gaussian
  sigma 0.6-1.2 px), noised (sigma 2-5) and JPEG'd (quality 60-85).  The truth is known: a detection
  is a hit when its centre is within 0.4 face sizes of a pasted face's centre and its size within 2x;
  every other detection is a false positive.  The roll error compares the alignment fitted to the
  detected landmarks with the one fitted to the true landmarks (carried into the photo).
* **whole photos** (``--whole``): the 29 photos of ``../shared/data/whole-photos``, against the faces
  counted by eye in ``benchmarks/whole_photos_faces.json`` ("clear" faces, both eyes visible).  The
  script cannot tell a face from a false positive: ``--boxes`` draws every detection (one colour per
  config) so they can be checked by eye, and found/counted per photo is printed.

Configs (``--configs``, comma-separated): ``upright`` (facesr <= 0.2: dlib HOG on the upright photo,
upsample 1, up to 2048 px), ``rotated`` (the default now: plus the copies turned by
``DEFAULT_ANGLES``, +-25 degrees, and the second look at weak hits), ``noverify`` (the same without
the second look), ``rot-up0`` (the same, the turned copies searched without
upsampling), ``rot30`` (copies at +-30), ``rot15`` (copies at +-15 and +-30), ``cnn`` (dlib MMOD,
upright).
Configs run interleaved photo by photo, so their seconds compare under the same load.  Times are
of the full detector call (boxes and landmarks), wall clock, OpenCV on one thread.
Needs the 'faces' extra.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

ROLLS = (0, 10, 20, 30)
SIZES = (48, 64, 96, 128, 192, 256)
PHOTO_W, PHOTO_H = 1024, 768


def make_detector(name: str):
    """A detector by benchmark config name (see the module docstring)."""
    from facesr.faces.detect import DlibDetector

    if name == "upright":
        return DlibDetector("hog", angles=(), verify_below=0.0)
    if name == "rotated":
        return DlibDetector("hog")
    if name == "noverify":
        return DlibDetector("hog", verify_below=0.0)
    if name == "rot-up0":
        return DlibDetector("hog", rotated_upsample=0)
    if name == "rot30":
        return DlibDetector("hog", angles=(-30, 30))
    if name == "rot15":
        return DlibDetector("hog", angles=(-30, -15, 15, 30))
    if name == "cnn":
        return DlibDetector("cnn", upsample=0, max_side=1024, angles=())
    raise SystemExit(f"unknown config {name!r}")


# ----------------------------------------------------------------------------- synthetic set


def texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A cluttered uint8 RGB background: multi-scale coloured noise plus random lines, boxes and discs."""
    img = np.zeros((h, w, 3), np.float32)
    for scale, amp in ((64, 60), (16, 30), (4, 12)):
        small = rng.normal(0, 1, (h // scale + 2, w // scale + 2, 3)).astype(np.float32)
        img += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.uniform(60, 190, 3).astype(np.float32)
    for _ in range(40):
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        p = (int(rng.integers(w)), int(rng.integers(h)))
        if kind == 0:
            cv2.line(img, p, (int(rng.integers(w)), int(rng.integers(h))), colour, int(rng.integers(1, 6)), cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, p, (p[0] + int(rng.integers(10, 120)), p[1] + int(rng.integers(10, 120))), colour, -1)
        else:
            cv2.circle(img, p, int(rng.integers(4, 50)), colour, -1, cv2.LINE_AA)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def face_truth(hq: np.ndarray, detector) -> tuple[np.ndarray, np.ndarray] | None:
    """(box centre (2,), landmarks (5, 2)) and box side of the upright face in a 512x512 aligned image."""
    found = detector(hq)
    if len(found) != 1:
        return None
    f = found[0]
    x0, y0, x1, y1 = f.box
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)]), f.landmarks


def paste(photo: np.ndarray, hq: np.ndarray, m: np.ndarray, centre: np.ndarray, side: float) -> None:
    """Paste ``hq`` into ``photo`` in place through the 2x3 map ``m`` with a soft ellipse around the face."""
    h, w = photo.shape[:2]
    yy, xx = np.mgrid[0 : hq.shape[0], 0 : hq.shape[1]].astype(np.float32)
    r = np.sqrt(((xx - centre[0]) / (0.85 * side)) ** 2 + ((yy - centre[1] + 0.15 * side) / (1.05 * side)) ** 2)
    mask = np.clip((1.0 - r) / 0.2, 0, 1)
    f = cv2.warpAffine(hq, m, (w, h), flags=cv2.INTER_AREA if m[0, 0] ** 2 + m[0, 1] ** 2 < 1 else cv2.INTER_CUBIC)
    mw = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    photo[:] = np.clip(np.rint(photo * (1 - mw) + f * mw), 0, 255).astype(np.uint8)


def degrade(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur (sigma 0.6-1.2), Gaussian noise (sigma 2-5), JPEG (quality 60-85)."""
    img = cv2.GaussianBlur(photo, (0, 0), float(rng.uniform(0.6, 1.2))).astype(np.float32)
    img += rng.normal(0, float(rng.uniform(2, 5)), img.shape).astype(np.float32)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 86))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def synthetic_set(folder: Path, seed: int = 0, limit: int | None = None):
    """Yield ``(name, photo, truths)``: uint8 RGB 1024x768 photos with four faces each, and per face a dict
    with ``centre`` (x, y), ``size`` (px), ``roll`` (degrees) and ``landmarks`` (5, 2), photo coordinates."""
    from facesr.faces.detect import DlibDetector
    from facesr.io.images import read_rgb

    truth_det = DlibDetector("hog", upsample=0, angles=())
    rng = np.random.default_rng(seed)
    files = sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))[:limit]
    jobs = [(f, roll) for f in files for roll in ROLLS]
    rng.shuffle(jobs)
    for start in range(0, len(jobs) - 3, 4):
        photo = texture(PHOTO_H, PHOTO_W, rng)
        truths = []
        for cell, (f, roll) in enumerate(jobs[start : start + 4]):
            hq = read_rgb(f)
            t = face_truth(hq, truth_det)
            if t is None:
                continue
            (cx, cy, side), lm = t
            size = SIZES[(start + cell) % len(SIZES)] * float(rng.uniform(0.9, 1.1))
            angle = roll * float(rng.choice([-1, 1]))
            k = size / side
            cell_w, cell_h = PHOTO_W / 2, PHOTO_H / 2
            slack_x, slack_y = max(0.0, cell_w / 2 - 0.9 * size), max(0.0, cell_h / 2 - 1.1 * size)
            px = (cell % 2 + 0.5) * cell_w + rng.uniform(-slack_x, slack_x)
            py = (cell // 2 + 0.5) * cell_h + rng.uniform(-slack_y, slack_y)
            m = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, k)
            m[:, 2] += [px - cx, py - cy]
            paste(photo, hq, m, np.array([cx, cy]), side)
            truths.append(
                {"centre": (px, py), "size": size, "roll": roll, "angle": angle, "landmarks": lm @ m[:, :2].T + m[:, 2]}
            )
        yield f"synthetic_{start // 4:03d}", degrade(photo, rng), truths


# ----------------------------------------------------------------------------- scoring


def match(faces, truths) -> tuple[list[int | None], int]:
    """Per truth the index of the detection that hits it (or None), and the number of false positives."""
    used: set[int] = set()
    out: list[int | None] = []
    for t in truths:
        best, best_d = None, 0.4 * t["size"]
        for i, f in enumerate(faces):
            x0, y0, x1, y1 = f.box
            d = math.hypot((x0 + x1) / 2 - t["centre"][0], (y0 + y1) / 2 - t["centre"][1])
            if i not in used and d < best_d and 0.5 < f.size / t["size"] < 2.0:
                best, best_d = i, d
        if best is not None:
            used.add(best)
        out.append(best)
    return out, len(faces) - len(used)


def roll_error(face, truth) -> float:
    """Degrees between the roll of the alignment fitted to the detected and to the true landmarks."""
    from facesr.faces.align import estimate_alignment

    a = estimate_alignment(face.landmarks)
    b = estimate_alignment(truth["landmarks"])
    d = math.degrees(math.atan2(a[1, 0], a[0, 0]) - math.atan2(b[1, 0], b[0, 0]))
    return abs((d + 180) % 360 - 180)


def timed(det, rgb):
    t = time.perf_counter()
    faces = det(rgb)
    return faces, time.perf_counter() - t


def run_synthetic(dets: dict, folder: Path, limit: int | None) -> dict:
    stats = {n: {"hits": 0, "fp": 0, "seconds": 0.0, "by_roll": {}, "by_size": {}, "roll_err": []} for n in dets}
    n_truth = n_photos = 0
    for _name, photo, truths in synthetic_set(folder, limit=limit):
        n_photos += 1
        n_truth += len(truths)
        for cfg, det in dets.items():
            faces, secs = timed(det, photo)
            hit, fp = match(faces, truths)
            s = stats[cfg]
            s["seconds"] += secs
            s["fp"] += fp
            for t, i in zip(truths, hit):
                size_bin = min(SIZES, key=lambda v: abs(v - t["size"]))
                for key, val in (("by_roll", t["roll"]), ("by_size", size_bin)):
                    s[key].setdefault(val, [0, 0])
                    s[key][val][1] += 1
                    s[key][val][0] += i is not None
                if i is not None:
                    s["hits"] += 1
                    s["roll_err"].append(roll_error(faces[i], t))
    out = {}
    for cfg, s in stats.items():
        err = np.array(s["roll_err"]) if s["roll_err"] else np.zeros(1)
        out[cfg] = {
            "faces": n_truth,
            "photos": n_photos,
            "found": s["hits"],
            "recall": s["hits"] / max(1, n_truth),
            "false_positives": s["fp"],
            "s_per_photo": s["seconds"] / max(1, n_photos),
            "recall_by_roll": {k: f"{v[0]}/{v[1]}" for k, v in sorted(s["by_roll"].items())},
            "recall_by_size": {k: f"{v[0]}/{v[1]}" for k, v in sorted(s["by_size"].items())},
            "roll_error_deg_median": float(np.median(err)),
            "roll_error_deg_p95": float(np.percentile(err, 95)),
        }
    return out


COLOURS = {"upright": (255, 0, 0), "rotated": (0, 200, 255), "rot15": (255, 0, 255), "cnn": (255, 200, 0)}


def draw(vis: np.ndarray, faces, colour, lw: int) -> None:
    """Outline each detection (its upright box) and mark its landmarks, in place."""
    for f in faces:
        x0, y0, x1, y1 = (int(round(v)) for v in f.box)
        cv2.rectangle(vis, (x0, y0), (x1, y1), colour, lw)
        for x, y in f.landmarks:
            cv2.circle(vis, (int(round(x)), int(round(y))), lw, (0, 255, 0), -1)


def run_whole(dets: dict, folder: Path, counts_file: Path, boxes: Path | None) -> dict:
    from facesr.faces import read_photo
    from facesr.io import IMAGE_EXTS, write_png

    counts = json.loads(counts_file.read_text())["clear"]
    per = {n: {"found": 0, "seconds": 0.0, "photos": {}} for n in dets}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    for f in files:
        rgb, _ = read_photo(f)
        vis = rgb.copy()
        lw = max(2, max(rgb.shape[:2]) // 400)
        line = f"{f.name:34s} counted {counts.get(f.name)}:"
        for cfg, det in dets.items():
            faces, secs = timed(det, rgb)
            per[cfg]["found"] += len(faces)
            per[cfg]["seconds"] += secs
            per[cfg]["photos"][f.name] = len(faces)
            draw(vis, faces, COLOURS.get(cfg, (255, 255, 255)), lw)
            line += f"  {cfg} {len(faces)} ({secs:.2f}s)"
        print(line, flush=True)
        if boxes is not None:
            k = min(1.0, 1200 / max(vis.shape[:2]))
            write_png(boxes / f"{f.stem}.png", cv2.resize(vis, None, fx=k, fy=k, interpolation=cv2.INTER_AREA))
    total = sum(counts.values())
    return {
        cfg: {
            "photos": len(files),
            "counted": total,
            "detections": p["found"],
            "s_per_photo": p["seconds"] / max(1, len(files)),
            "per_photo": p["photos"],
        }
        for cfg, p in per.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="upright,rotated")
    ap.add_argument("--synthetic", default=None, help="folder of 512x512 aligned faces (dev-val-celebahq)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N faces of --synthetic")
    ap.add_argument("--whole", default=None, help="folder of whole photos")
    ap.add_argument("--counts", default=str(Path(__file__).with_name("whole_photos_faces.json")))
    ap.add_argument("--boxes", default=None, help="write the whole photos with every detection drawn here")
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()
    cv2.setNumThreads(1)
    dets = {n: make_detector(n) for n in a.configs.split(",")}
    result = {}
    if a.synthetic:
        result["synthetic"] = run_synthetic(dets, Path(a.synthetic), a.limit)
        print(json.dumps(result["synthetic"], indent=1))
    if a.whole:
        boxes = Path(a.boxes) if a.boxes else None
        if boxes:
            boxes.mkdir(parents=True, exist_ok=True)
        result["whole"] = run_whole(dets, Path(a.whole), Path(a.counts), boxes)
        print(
            json.dumps(
                {k: {kk: vv for kk, vv in v.items() if kk != "per_photo"} for k, v in result["whole"].items()}, indent=1
            )
        )
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
