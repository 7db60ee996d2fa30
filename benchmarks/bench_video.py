"""Flicker of restored video faces against bicubic, on synthetic clips with a known clean face.

    python benchmarks/bench_video.py [--frames 16] [--faces ../shared/data/dev-val-celebahq --n-faces 3]

Each clip holds one face made by ``tests/faces_synth.py`` (the bundled sample face, or with
``--faces`` held-out CelebA-HQ faces aligned by dlib), degraded by the course pipeline once, then
per frame given fresh Gaussian noise (sigma 4) and JPEG (q 75): ``still`` (the face does not move)
and ``pan`` (it moves 0.5 px a frame).  Clips are written as H.264 at crf 0 (the per-frame noise
survives, as in a high-bitrate camera file) and crf 23 (x264's default: most noise is gone and
static areas repeat exactly, so any flicker the restoration adds shows).  Each clip is restored
(x2, shipped model, fp32, the real dlib detector) with the defaults (alignment smoothed over time,
restored faces blended over time where the input does not change), without the blending
(``noblend``), and without either (``raw``).

Flicker = mean absolute difference between consecutive frames (grey levels, 0-255) inside the
face (for ``pan`` after moving each frame back by the face's known motion, with the same warp for
every method).  Gain = PSNR in the face against the clean face, restored minus bicubic (dB).  frames_per_s: the
whole restore_video call (both passes, encoding included), wall clock, two torch threads.
Needs the 'faces' and 'video' extras.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import faces_synth as S

#: restore_video settings compared (``--variants``): the default, no temporal blending, neither blending
#: nor smoothing of the alignment.
ALL_VARIANTS = {"default": {}, "noblend": {"temporal": 0.0}, "raw": {"temporal": 0.0, "smooth": 0.0}}
VARIANTS = dict(ALL_VARIANTS)


def aligned_faces(folder: str | None, n: int) -> list[np.ndarray | None]:
    """512x512 faces aligned to the FFHQ template by their dlib landmarks (None = the bundled sample face)."""
    if folder is None:
        return [None]
    from facesr.faces import align, load_detector
    from facesr.io.images import read_rgb

    det = load_detector("hog-upright", upsample=0)
    out = []
    for f in sorted(Path(folder).glob("*.jpg"))[-n:]:
        hq = read_rgb(f)
        found = det(hq)
        if len(found) == 1:
            out.append(align.crop_face(hq, align.estimate_alignment(found[0].landmarks), 512))
    return out


def clip_faces(hq, n: int, pan: float):
    """LQ frames, clean x2 frames and exact faces of a clip (see the module docstring)."""
    lqs, gts, faces = [], [], []
    rng = np.random.default_rng(1)
    for t in range(n):
        centre = (160 - 0.5 * pan * n + pan * t, 120.0)
        lq, gt, fs = S.make_photo([(1.0, 6.0, centre)], h=240, w=320, upscale=2, hq=hq, seed=0)
        noisy = np.clip(lq + rng.normal(0, 4.0, lq.shape), 0, 255).astype(np.uint8)
        _, buf = cv2.imencode(".jpg", noisy[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 75])
        lqs.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy())
        gts.append(gt)
        faces.append(fs)
    return lqs, gts, faces


def aligned(frames, faces):
    """Each frame warped so that its face sits on the 512 grid (frames are x2 of the faces' photo)."""
    from facesr.faces.align import estimate_alignment, warp_affine
    from facesr.faces.paste import output_affine

    return [
        warp_affine(f, output_affine(estimate_alignment(fs[0].landmarks), 2), (512, 512))
        for f, fs in zip(frames, faces)
    ]


def measure(frames, gts, faces) -> tuple[float, float]:
    """(flicker, mean PSNR in the face) of x2 frames."""
    yy, xx = np.mgrid[0:512, 0:512]
    region = (np.abs(xx - 255.5) < 150) & (np.abs(yy - 280) < 170)
    a, g = aligned(frames, faces), aligned(gts, faces)
    return S.temporal_difference(a, region), float(np.mean([S.psnr(x, y, region) for x, y in zip(a, g)]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--faces", default=None)
    ap.add_argument("--n-faces", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--variants", default="default,noblend,raw")
    a = ap.parse_args()
    VARIANTS.clear()
    VARIANTS.update({k: ALL_VARIANTS[k] for k in a.variants.split(",")})
    import torch

    import facesr
    from facesr.faces import load_detector

    torch.set_num_threads(2)
    restorer = facesr.load(device="cpu", precision="fp32")
    detector = load_detector("hog")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, hq in enumerate(aligned_faces(a.faces, a.n_faces)):
            for kind, pan in (("still", 0.0), ("pan", 0.5)):
                lq, gt, faces = clip_faces(hq, a.frames, pan)
                for crf in (0, 23):
                    src = Path(tmp) / f"{kind}_{crf}.mp4"
                    S.write_clip(src, lq, audio=False, crf=crf)
                    decoded = S.read_clip(src)[0]
                    bic = [
                        cv2.resize(f, (f.shape[1] * 2, f.shape[0] * 2), interpolation=cv2.INTER_CUBIC) for f in decoded
                    ]
                    row = {"face": k, "clip": kind, "input_crf": crf}
                    row["bicubic_flicker"], psnr_bic = measure(bic, gt, faces)
                    for name, kw in VARIANTS.items():
                        out = Path(tmp) / f"out_{name}.mp4"
                        res = facesr.restore_video(src, out, restorer=restorer, detector=detector, crf=18, **kw)
                        flick, psnr = measure(S.read_clip(out)[0], gt, faces)
                        row[f"flicker_{name}"] = flick
                        row[f"gain_db_{name}"] = psnr - psnr_bic
                        row[f"frames_per_s_{name}"] = res.frames / res.seconds
                    rows.append({k2: round(v, 3) if isinstance(v, float) else v for k2, v in row.items()})
                    print(json.dumps(rows[-1]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
