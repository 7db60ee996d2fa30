"""Restore the faces of a video: detect per frame, smooth over time, restore in batches, keep the sound.

Two passes over the file, so that nothing is written before the whole range is known to decode:

1. **scan**: decode each frame of the range and detect its faces (boxes and landmarks only are
   kept); this counts the frames, refuses a 0-frame, truncated or over-long video, and yields the
   per-frame detections, which are linked into tracks and smoothed over time
   (:mod:`facesr.video.track`);
2. **write**: decode again, upscale each frame (``background``), restore the aligned faces of
   several frames in one batch, paste them back as :func:`facesr.faces.restore_photo` does, encode
   (H.264, same frame rate and timestamps) and copy the audio packets untouched, into a temporary
   file renamed over the output at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..faces.align import TEMPLATE_SIZE, crop_face
from ..faces.detect import Face
from ..faces.paste import paste_face, paste_order
from ..faces.photo import (
    DEFAULT_CONTEXT,
    DEFAULT_MIN_FACE,
    MAX_OUTPUT_PIXELS,
    UPSCALES,
    upscale_background,
)
from . import io as vio
from .temporal import DEFAULT_STRENGTH, TemporalBlend
from .track import DEFAULT_MAX_GAP, DEFAULT_SMOOTH, smooth_tracks

#: Largest frame (pixels) read by default: 3840 x 2160.
DEFAULT_MAX_PIXELS = 3840 * 2160
#: Most frames restored in one call by default: 30 minutes at 30 frames per second.
DEFAULT_FRAME_CAP = 54_000
#: Frames whose faces go to the model together (the restorer splits them into its own batches).
FRAMES_PER_BATCH = 8

Progress = Callable[[str, int, int | None], None]


@dataclass
class VideoResult:
    """What :func:`restore_video` did.

    Attributes:
        path: the output file.
        frames: frames written (= frames read in the range).
        fps: frame rate of the output (that of the input).
        width, height: output frame size in pixels.
        tracks: faces followed over time; ``face_frames``: restored faces summed over frames.
        small: face-frames narrower than ``min_face`` left as background.
        audio_streams: audio streams copied.
        encoder: the video encoder used.
        seconds: wall time of the whole call.
    """

    path: Path
    frames: int
    fps: Fraction
    width: int
    height: int
    tracks: int
    face_frames: int
    small: int
    audio_streams: int
    encoder: str
    seconds: float


def scan(
    path: Path, info: vio.VideoInfo, span: vio.Span, detector, frame_cap: int, progress: Progress | None = None
) -> tuple[list[list[Face]], float]:
    """Pass 1: detections per frame of the span, and the time (s) just after its last frame.

    :class:`VideoError` for a range without frames, more than ``frame_cap`` frames, or a truncated
    file (fewer frames than its header promises, or packets that stop well before its duration).
    """
    expected = info.frames_in(span.start, span.duration, span.max_frames)
    per_frame: list[list[Face]] = []
    end = span.start
    data_end = 0.0  # end of the last packet of any stream (seconds)
    if progress is not None:
        progress("detect", 0, expected)
    for item in vio.read(path, info, span, audio=True):
        if not isinstance(item, vio.Frame):
            if item.pts is not None:
                data_end = max(data_end, float((item.pts + (item.duration or 0)) * item.time_base))
            continue
        if len(per_frame) >= frame_cap:
            raise vio.VideoError(
                f"{path}: more than {frame_cap} frames (frame cap); restore a part of it "
                f"(a start, a duration or a frame count)"
            )
        per_frame.append(list(detector(item.rgb)))
        end = item.time + 1.0 / float(info.fps)
        data_end = max(data_end, end)
        if progress is not None:
            progress("detect", len(per_frame), expected)
    if not per_frame:
        raise vio.VideoError(
            f"{path}: no frame decodes in the range asked for (0-frame or truncated file)"
            if span.start == 0
            else f"{path}: no frame after {span.start:g} s"
        )
    if span.start == 0 and span.duration is None and span.max_frames is None:
        _check_complete(path, info, len(per_frame), data_end)
    return per_frame, end


def _check_complete(path: Path, info: vio.VideoInfo, frames: int, data_end: float) -> None:
    """VideoError when a whole file decodes to much less than its header says (a truncated download)."""
    if info.frames and frames < 0.9 * info.frames - 1:
        raise vio.VideoError(f"{path}: truncated: the header says {info.frames} frames, only {frames} decode")
    if info.duration and data_end < 0.9 * info.duration - 0.1:
        raise vio.VideoError(
            f"{path}: truncated: the header says {info.duration:.2f} s, the data stops at {data_end:.2f} s"
        )


def _affine(face: Face) -> np.ndarray:
    """The face's photo -> 512 aligned transform (set by the tracking)."""
    assert face.affine is not None
    return face.affine


def _restore_batch(
    restorer,
    frames: list,
    faces: list[list[tuple[int, Face]]],
    upscale: int,
    background: str,
    context: int,
    blend: TemporalBlend,
) -> list[np.ndarray]:
    """Upscaled frames with their faces restored (one model call for the faces of all ``frames``, which
    are consecutive) and blended over time per track (``blend``)."""
    s = restorer.scale
    lq = TEMPLATE_SIZE // s
    crops = [crop_face(fr.rgb, _affine(f), lq, margin=context) for fr, fs in zip(frames, faces) for _, f in fs]
    restored = restorer.restore_rgb(crops) if crops else []
    k = 0
    out = []
    for fr, fs in zip(frames, faces):
        img = upscale_background(fr.rgb, upscale, background, restorer)
        mine = []
        for (track, _), crop, r in zip(fs, crops[k : k + len(fs)], restored[k : k + len(fs)]):
            face = np.ascontiguousarray(
                r[context * s : context * s + TEMPLATE_SIZE, context * s : context * s + TEMPLATE_SIZE]
            )
            mine.append(blend(track, fr.index, crop[context : context + lq, context : context + lq], face))
        k += len(fs)
        for i in paste_order([f.size for _, f in fs]):
            paste_face(img, mine[i], _affine(fs[i][1]), upscale)
        out.append(img)
    return out


def _pts(fr: vio.Frame, span: vio.Span, info: vio.VideoInfo) -> int:
    """Output pts of a frame in input time-base ticks: its own, moved ``span.start`` earlier (never < 0)."""
    if fr.pts is not None:
        return max(0, int(fr.pts - round(span.start / info.time_base)))
    return int(round(fr.index / float(info.fps) / float(info.time_base)))


def write(
    path_in: Path,
    path_out: Path,
    info: vio.VideoInfo,
    span: vio.Span,
    faces: list[list[tuple[int, Face]]],
    end: float,
    restorer,
    upscale: int,
    background: str,
    context: int,
    crf: int,
    temporal: float,
    progress: Progress | None = None,
) -> vio.AtomicVideoWriter:
    """Pass 2: restore and encode the frames of the span, copying the audio of [start, end) (all of it for
    the whole video)."""
    av = vio.import_av()
    whole = span.start == 0 and span.duration is None and span.max_frames is None
    blend = TemporalBlend(temporal)
    with av.open(str(path_in)) as c:
        templates = list(c.streams.audio)
        writer = vio.AtomicVideoWriter(
            path_out, info.width * upscale, info.height * upscale, info.fps, info.time_base, templates, crf
        )
    try:
        batch: list[vio.Frame] = []
        if progress is not None:
            progress("restore", 0, len(faces))

        def flush():
            for fr, img in zip(
                batch,
                _restore_batch(restorer, batch, [faces[f.index] for f in batch], upscale, background, context, blend),
            ):
                writer.write(img, _pts(fr, span, info))
            if progress is not None:
                progress("restore", writer.frames, len(faces))
            batch.clear()

        for item in vio.read(path_in, info, span, audio=True):
            if isinstance(item, vio.Frame):
                if item.index < len(faces):
                    batch.append(item)
                if len(batch) >= FRAMES_PER_BATCH:
                    flush()
            else:
                t = float(item.pts * item.time_base) if item.pts is not None else None
                if whole or (t is not None and t < end and (span.start == 0 or t >= span.start - 1e-6)):
                    writer.copy(item, int(round(span.start / item.time_base)))
        if batch:
            flush()
        if writer.frames != len(faces):
            raise vio.VideoError(
                f"{path_in}: {len(faces)} frames decoded in the first pass, {writer.frames} in the "
                f"second (the file changed while it was read?)"
            )
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer


def _check_values(upscale: int, background: str, min_face: float, crf: int, smooth: float, max_gap: int) -> None:
    """BadValueError (one line) for arguments out of range."""
    from ..errors import BadValueError
    from ..faces.photo import BACKGROUNDS

    if upscale not in UPSCALES:
        raise BadValueError(f"upscale must be one of {', '.join(map(str, UPSCALES))}, got {upscale!r}")
    if background not in BACKGROUNDS:
        raise BadValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    if min_face < 0 or smooth < 0 or max_gap < 0:
        raise BadValueError(f"min_face, smooth and max_gap must be >= 0, got {min_face}, {smooth}, {max_gap}")
    if not 0 <= crf <= 51:
        raise BadValueError(f"crf must be 0..51, got {crf}")


def restore_video(
    path_in: str | os.PathLike,
    path_out: str | os.PathLike,
    restorer=None,
    detector=None,
    upscale: int = 2,
    background: str = "bicubic",
    min_face: float = DEFAULT_MIN_FACE,
    start: float = 0.0,
    duration: float | None = None,
    max_frames: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    frame_cap: int = DEFAULT_FRAME_CAP,
    crf: int = vio.DEFAULT_CRF,
    smooth: float = DEFAULT_SMOOTH,
    max_gap: int = DEFAULT_MAX_GAP,
    context: int = DEFAULT_CONTEXT,
    temporal: float = DEFAULT_STRENGTH,
    progress: Progress | None = None,
) -> VideoResult:
    """Restore every face of a video file and write it upscaled, with its frame rate, frame count and audio.

    Args:
        path_in: a video file (anything FFmpeg reads: mp4, mov, mkv, webm, avi, ...).
        path_out: the output file (``.mp4``/``.mov``/``.mkv``; other suffixes get Matroska).  Written
            through a temporary file in the same folder; existing files are replaced.
        restorer: a :class:`facesr.inference.Restorer` (default: ``facesr.load()``).
        detector: callable uint8 RGB -> list of :class:`Face` (default: dlib, the ``faces`` extra).
        upscale: output pixels per input pixel, 1, 2 or 4.
        background: ``"bicubic"``, ``"lanczos"`` or ``"model"`` (as for photos).
        min_face: faces narrower than this many input pixels stay background.
        start, duration, max_frames: the part to restore (seconds, seconds, frames); default all.
        max_pixels: refuse frames larger than this (checked from the header).
        frame_cap: refuse ranges with more frames than this.
        crf: x264 quality (0 lossless .. 51; 18 is visually lossless for most content).
        smooth: Gaussian sigma, in frames, of the temporal smoothing of face alignments (0 = off).
        max_gap: frames a face may go undetected and still be restored (its alignment interpolated).
        context: model-input pixels of surroundings around each aligned crop (as for photos).
        temporal: weight of the previous frame's restored face where the aligned input did not change
            (:mod:`facesr.video.temporal`; 0 = each frame on its own).
        progress: called as ``progress(stage, done, total)``, stage ``"detect"`` then ``"restore"``;
            ``total`` is None where the header gives no frame count.
    """
    t0 = time.perf_counter()
    _check_values(upscale, background, min_face, crf, smooth, max_gap)
    if not 0 <= temporal < 1:
        from ..errors import BadValueError

        raise BadValueError(f"temporal must be in [0, 1), got {temporal}")
    path_in, path_out = Path(path_in), Path(path_out)
    span = vio.Span(start, duration, max_frames)
    info = vio.probe(path_in, max_pixels)
    if info.width * info.height * upscale * upscale > MAX_OUTPUT_PIXELS:
        raise vio.VideoError(
            f"{path_in}: {info.width}x{info.height} at upscale {upscale} is above "
            f"{MAX_OUTPUT_PIXELS / 1e6:.0f} megapixels a frame; use a smaller upscale"
        )
    estimate = info.frames_in(span.start, span.duration, span.max_frames)
    if estimate is not None and estimate > frame_cap * 1.05 + 1:
        raise vio.VideoError(
            f"{path_in}: about {estimate} frames, above the frame cap of {frame_cap}; restore a "
            f"part of it (a start, a duration or a frame count)"
        )
    if detector is None:
        from ..faces.detect import load_detector

        detector = load_detector()
    if restorer is None:
        import facesr

        restorer = facesr.load()
    detections, end = scan(path_in, info, span, detector, frame_cap, progress)
    tracked = smooth_tracks(detections, max_gap=max_gap, sigma=smooth)
    kept = [[(i, f) for i, f in fs if f.size >= min_face] for fs in tracked]
    small = sum(len(fs) - len(k) for fs, k in zip(tracked, kept))
    n_tracks = len({i for fs in kept for i, _ in fs})
    writer = write(
        path_in, path_out, info, span, kept, end, restorer, upscale, background, context, crf, temporal, progress
    )
    return VideoResult(
        path_out,
        writer.frames,
        info.fps,
        info.width * upscale,
        info.height * upscale,
        n_tracks,
        sum(len(k) for k in kept),
        small,
        info.audio_streams,
        writer.encoder,
        time.perf_counter() - t0,
    )
