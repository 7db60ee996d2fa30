"""Synthetic whole photos for the face tests: a degraded aligned face pasted at a known place.

Everything is built from the bundled public-domain sample face; no real data is needed.
Coordinates are pixel-centre (see facesr.faces.align).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from facesr.assets import sample_face_path
from facesr.faces.align import apply, compose, grid_scale, template
from facesr.faces.detect import Face
from facesr.io.images import read_rgb

LQ = 128  # the x4 model's input size


def similarity(scale: float, angle_deg: float, centre_xy: tuple[float, float], size: int) -> np.ndarray:
    """2x3 map from a ``size`` x ``size`` aligned crop to a photo: rotate by ``angle_deg``, scale by
    ``scale`` and put the crop's centre at ``centre_xy`` (photo pixels)."""
    c = (size - 1) / 2.0
    a = math.radians(angle_deg)
    r = scale * np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    t = np.asarray(centre_xy, np.float64) - r @ np.array([c, c])
    return np.hstack([r, t[:, None]])


def background(h: int, w: int, upscale: int = 1) -> np.ndarray:
    """Smooth uint8 RGB background (gradients and slow waves), defined so that the ``upscale`` version is
    the same scene sampled on a finer grid."""
    yy, xx = np.mgrid[0 : h * upscale, 0 : w * upscale].astype(np.float64)
    x, y = (xx + 0.5) / upscale - 0.5, (yy + 0.5) / upscale - 0.5  # photo coordinates of each pixel centre
    base = np.stack(
        [
            90 + 60 * np.sin(x / 37.0) + 0.2 * y,
            110 + 50 * np.cos(y / 29.0 + x / 71.0),
            140 + 40 * np.sin((x + y) / 53.0),
        ],
        axis=-1,
    )
    return np.clip(np.rint(base), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def hq_face() -> np.ndarray:
    """The bundled 512x512 sample face, uint8 RGB; treated as the aligned face in geometry tests."""
    return read_rgb(sample_face_path())


@functools.lru_cache(maxsize=2)
def lq_face(seed: int = 0) -> np.ndarray:
    """The sample face degraded to 128x128 by the course pipeline (``facesr degrade --seed seed``)."""
    from facesr.data.datasets import degrade_offline
    from facesr.data.degradations import DegradationCfg

    lq, _ = degrade_offline(hq_face(), DegradationCfg(), seed, "sample_face")
    return lq


def degrade_face(hq: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 512x512 face degraded to 128x128 by the course pipeline."""
    from facesr.data.datasets import degrade_offline
    from facesr.data.degradations import DegradationCfg

    return degrade_offline(hq, DegradationCfg(), seed, "sample_face")[0]


def paste_square(photo: np.ndarray, face: np.ndarray, crop_to_photo: np.ndarray) -> None:
    """Paste the square ``face`` into ``photo`` (in place) through the 2x3 map ``crop_to_photo``, with a
    soft round-cornered edge so the photo has no hard square."""
    h, w = photo.shape[:2]
    f = cv2.warpAffine(face, crop_to_photo, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    n = face.shape[0]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    c = (n - 1) / 2
    r = np.sqrt(((xx - c) / c) ** 2 + ((yy - c) / c) ** 2)
    m = np.clip((0.7 - r) / 0.15, 0, 1).astype(np.float32)  # 1 inside 0.55 of the half-side, 0 beyond 0.7
    mw = cv2.warpAffine(m, crop_to_photo, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    photo[:] = np.clip(np.rint(photo * (1 - mw) + f * mw), 0, 255).astype(np.uint8)


def face_box(to_photo_512: np.ndarray) -> tuple[float, float, float, float]:
    """Axis-aligned box around the central face area of the aligned crop (dlib-box-like, 58% of the crop)."""
    pts = apply(to_photo_512, [[107, 147], [402, 147], [107, 441], [402, 441]])
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def make_photo(
    placements: list[tuple[float, float, tuple[float, float]]],
    h: int = 240,
    w: int = 320,
    upscale: int = 4,
    seed: int = 0,
    hq: np.ndarray | None = None,
):
    """A low-quality photo with degraded aligned faces, and its clean ``upscale`` x version.

    ``placements``: per face ``(scale, angle_deg, centre_xy)`` of the 128x128 LQ crop in the photo.
    ``hq``: the 512x512 aligned face to use (default: the sample face); its LQ is made with the
    course degradation at ``seed``.
    Returns ``(lq_photo, gt_photo, faces)``: uint8 RGB ``h`` x ``w`` and ``upscale*h`` x ``upscale*w``,
    and the exact :class:`Face` records (landmarks = the template mapped into the photo; ``affine``
    unset), as a perfect detector would report them.
    """
    lq = background(h, w)
    gt = background(h, w, upscale)
    hq_img = hq_face() if hq is None else hq
    lq_img = lq_face(seed) if hq is None else degrade_face(hq, seed)
    faces = []
    for scale, angle, centre in placements:
        t_lq = similarity(scale, angle, centre, LQ)  # 128 crop -> LQ photo
        paste_square(lq, lq_img, t_lq)
        t_512 = compose(t_lq, grid_scale(LQ / 512))  # 512 aligned face -> LQ photo
        paste_square(gt, hq_img, compose(grid_scale(upscale), t_512))
        faces.append(Face(box=face_box(t_512), landmarks=apply(t_512, template(512)), score=1.0))
    return lq, gt, faces


class FakeDetector:
    """A perfect detector: returns copies of the given faces."""

    def __init__(self, faces):
        self.faces = faces
        self.calls = 0

    def __call__(self, rgb):
        self.calls += 1
        return [Face(box=f.box, landmarks=f.landmarks.copy(), score=f.score) for f in self.faces]


def crowd_photo() -> tuple[np.ndarray, list[Face]]:
    """A 400 x 200 photo of five faces of different sizes (36 to 66 pixels wide) and a perfect detector's faces."""
    placements = [
        (0.5, 0.0, (45.0, 60.0)),
        (0.9, 4.0, (130.0, 100.0)),
        (0.6, -3.0, (215.0, 60.0)),
        (0.8, 0.0, (290.0, 120.0)),
        (0.7, 2.0, (360.0, 70.0)),
    ]
    lq, _, faces = make_photo(placements, h=200, w=400)
    return lq, faces


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = d[mask].mean() if mask is not None else d.mean()
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def gradient_energy(img: np.ndarray, region: np.ndarray) -> float:
    """Mean squared Sobel gradient magnitude (all channels) over the boolean ``region``."""
    f = img.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    return float((gx**2 + gy**2).sum(axis=-1)[region].mean())


# ----------------------------------------------------------------------------- video clips (PyAV)


def write_clip(
    path,
    frames: list[np.ndarray],
    fps=25,
    audio: bool = True,
    codec: str = "libx264",
    fmt: str | None = None,
    audio_seconds: float | None = None,
    options: dict | None = None,
    crf: int | None = None,
) -> None:
    """Write uint8 RGB ``frames`` as a video at ``fps`` (H.264 yuv420p by default) with, if ``audio``, a
    mono 16 kHz AAC 440 Hz tone as long as the video (or ``audio_seconds``); ``options``: muxer options
    (e.g. ``{"movflags": "+faststart"}``: the MP4 index before the data); ``crf``: x264 quality (0 keeps
    per-frame noise, as a camera's high-bitrate file does; default x264's 23).  Needs PyAV."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        vs = out.add_stream(codec, rate=Fraction(fps))
        h, w = frames[0].shape[:2] if frames else (48, 64)
        vs.width, vs.height = w, h
        vs.pix_fmt = "yuv420p"
        if crf is not None:
            vs.options = {"crf": str(crf)}
        a = None
        if audio:
            a = out.add_stream("aac", rate=16000)
            a.layout = "mono"
        if not frames:
            out.start_encoding()  # a file with its header and streams but no frame
        for f in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if a is not None:
            n = int(16000 * (audio_seconds if audio_seconds is not None else len(frames) / float(fps)))
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)[None]
            fr = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            fr.sample_rate = 16000
            for p in [*a.encode(fr), *a.encode()]:
                out.mux(p)


def read_clip(path) -> tuple[list[np.ndarray], dict]:
    """Decoded uint8 RGB frames of a video and facts about it: fps, size, audio codecs and audio seconds."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {
            "fps": v.average_rate,
            "width": v.codec_context.width,
            "height": v.codec_context.height,
            "audio": [s.codec_context.name for s in c.streams.audio],
            "codec": v.codec_context.name,
            "audio_seconds": max((float(s.duration * s.time_base) for s in c.streams.audio if s.duration), default=0.0),
        }
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return frames, info


def face_clip(
    n: int,
    pan_px: float = 0.0,
    noise: float = 3.0,
    quality: int = 75,
    h: int = 120,
    w: int = 160,
    scale: float = 0.6,
    angle: float = 8.0,
    seed: int = 0,
    upscale: int = 2,
):
    """A clip of one degraded face (the course degradation of the sample face, fixed over time) moving
    ``pan_px`` LQ pixels to the right per frame, with fresh Gaussian noise (sigma ``noise``) and JPEG
    (``quality``) in every frame.  Returns ``(lq_frames, gt_frames, faces_per_frame)``: uint8 RGB
    ``h`` x ``w`` frames, their clean ``upscale`` x versions, and the exact :class:`Face` of each frame."""
    rng = np.random.default_rng(seed)
    lqs, gts, faces = [], [], []
    for t in range(n):
        centre = (w / 2 - 0.5 * pan_px * n + pan_px * t, h / 2)
        lq, gt, fs = make_photo([(scale, angle, centre)], h=h, w=w, upscale=upscale, seed=seed)
        noisy = np.clip(lq + rng.normal(0, noise, lq.shape), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", noisy[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        lqs.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy())
        gts.append(gt)
        faces.append(fs)
    return lqs, gts, faces


class FrameDetector:
    """A detector for clips: frame ``i`` (counted by calls) gets ``faces[i]``, its landmarks moved by
    Gaussian noise of ``jitter`` pixels (a real detector's frame-to-frame wobble); frames past the
    list, or listed in ``missing``, get no face."""

    def __init__(self, faces_per_frame, jitter: float = 0.0, missing=(), seed: int = 0):
        self.faces, self.jitter, self.missing = faces_per_frame, jitter, set(missing)
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def __call__(self, rgb):
        i = self.calls
        self.calls += 1
        if i >= len(self.faces) or i in self.missing:
            return []
        return [
            Face(box=f.box, landmarks=f.landmarks + self.rng.normal(0, self.jitter, f.landmarks.shape), score=f.score)
            for f in self.faces[i]
        ]


def temporal_difference(frames: list[np.ndarray], region: np.ndarray) -> float:
    """Mean absolute difference between consecutive frames inside the boolean ``region`` (grey levels)."""
    d = [np.abs(a.astype(np.float32) - b.astype(np.float32))[region].mean() for a, b in zip(frames, frames[1:])]
    return float(np.mean(d))
