"""Reading and writing videos with PyAV (FFmpeg inside its wheels; the ``video`` extra).

:func:`probe` checks a file from its header before any frame is decoded (not a video, no video
stream, an unsupported codec, frames over a pixel cap); :func:`read` decodes the frames of a
time range as uint8 RGB and, on request, hands over the audio packets of the same range untouched;
:class:`AtomicVideoWriter` encodes frames (H.264 by default) and copies audio packets into a
temporary file in the output folder, renamed over the output only when everything was written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FacesrError, MissingExtraError, OutputError, one_line
from ..io.files import temp_name, track_temp, untrack_temp

EXTRA = "video"
#: File extensions taken as videos by ``facesr restore`` (anything else is read as a photo).
VIDEO_EXTS = {
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".3gp",
    ".ts",
    ".mts",
    ".m2ts",
    ".ogv",
}
#: FFmpeg demuxers of still images: such a file is a photo, not a video.
IMAGE_FORMATS = ("image2", "_pipe", "gif", "apng")
#: Encoders tried in order; the first one the PyAV wheel has is used.
ENCODERS = ("libx264", "h264", "mpeg4")
#: Output containers: kept for these input extensions, Matroska (which holds any audio codec) otherwise.
KEEP_CONTAINER = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
DEFAULT_CRF = 18


class VideoError(FacesrError, ValueError):
    """A video file cannot be read or is refused (its message is one line naming the file)."""


def import_av():
    """The ``av`` module, or :class:`MissingExtraError` naming the ``video`` extra."""
    try:
        import av
    except ImportError:
        raise MissingExtraError(EXTRA, "video input and output") from None
    return av


def output_name(path_in: str | os.PathLike) -> str:
    """Output file name of a restored video: the input's stem with ``.mp4``, ``.mov`` or ``.mkv``."""
    p = Path(path_in)
    fmt = KEEP_CONTAINER.get(p.suffix.lower(), "matroska")
    return p.stem + {"mp4": ".mp4", "mov": ".mov", "matroska": ".mkv"}[fmt]


@dataclass
class VideoInfo:
    """What the header says: frame size (pixels), frame rate, stream time base (seconds per tick),
    frame count and duration (None where the container does not say), codec, audio stream count."""

    path: Path
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    frames: int | None
    duration: float | None
    codec: str
    audio_streams: int
    format: str

    def frames_in(self, start: float, duration: float | None, max_frames: int | None) -> int | None:
        """Estimated number of frames in a range (None when unknown)."""
        total = self.frames if self.frames else (round(self.duration * float(self.fps)) if self.duration else None)
        n = None if total is None else max(0, total - int(start * float(self.fps)))
        if duration is not None:
            d = int(math.ceil(duration * float(self.fps)))
            n = d if n is None else min(n, d)
        if max_frames is not None:
            n = max_frames if n is None else min(n, max_frames)
        return n


def _open(path: Path):
    av = import_av()
    try:
        return av.open(str(path))
    except FileNotFoundError:
        raise VideoError(f"{path}: file not found") from None
    except av.error.EOFError:
        raise VideoError(f"{path}: empty or truncated: the file ends before its first frame") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: not a readable video ({getattr(exc, 'strerror', None) or one_line(exc)})") from None


def probe(path: str | os.PathLike, max_pixels: int | None = None) -> VideoInfo:
    """Check ``path`` from its header (nothing decoded) and describe it; :class:`VideoError` (one line) when
    it is not a video, has no video stream, a codec this FFmpeg cannot decode, or frames over
    ``max_pixels`` pixels."""
    path = Path(path)
    with _open(path) as c:
        fmt = c.format.name
        if any(tag in fmt for tag in IMAGE_FORMATS):
            raise VideoError(f"{path}: a still image ({fmt}), not a video")
        if not c.streams.video:
            raise VideoError(f"{path}: no video stream ({len(c.streams.audio)} audio stream(s))")
        v = c.streams.video[0]
        ctx = v.codec_context
        if ctx is None or ctx.codec is None or not getattr(ctx.codec, "is_decoder", True):
            raise VideoError(f"{path}: unsupported video codec ({_codec_name(v)}): this FFmpeg cannot decode it")
        w, h = int(ctx.width), int(ctx.height)
        if w < 1 or h < 1:
            raise VideoError(f"{path}: the video stream has no frame size (empty or broken file)")
        if max_pixels is not None and w * h > max_pixels:
            raise VideoError(
                f"{path}: {w}x{h} frames are {w * h / 1e6:.3g} Mpx, over the cap of "
                f"{max_pixels / 1e6:g} Mpx (--max-pixels)"
            )
        rate = v.average_rate or v.guessed_rate or v.base_rate
        if not rate or rate <= 0:
            raise VideoError(f"{path}: the video stream has no frame rate")
        duration = float(c.duration) / 1e6 if c.duration else None
        return VideoInfo(
            path,
            w,
            h,
            Fraction(rate),
            Fraction(v.time_base or Fraction(1, 90000)),
            int(v.frames) or None,
            duration,
            ctx.name,
            len(c.streams.audio),
            fmt,
        )


def _codec_name(stream) -> str:
    try:
        return stream.codec_context.name or "unknown"
    except Exception:
        return "unknown"


@dataclass
class Span:
    """Which frames to read: from ``start`` seconds, for ``duration`` seconds and at most ``max_frames``."""

    start: float = 0.0
    duration: float | None = None
    max_frames: int | None = None

    def __post_init__(self):
        if self.start < 0 or (self.duration is not None and self.duration <= 0):
            raise VideoError(f"the start must be >= 0 s and the duration > 0 s, got {self.start} and {self.duration}")
        if self.max_frames is not None and self.max_frames < 1:
            raise VideoError(f"the number of frames must be >= 1, got {self.max_frames}")


@dataclass
class Frame:
    """A decoded frame: index in the span, presentation time (seconds), pts (stream ticks), uint8 RGB."""

    index: int
    time: float
    pts: int | None
    rgb: np.ndarray


def read(path: str | os.PathLike, info: VideoInfo, span: Span, audio: bool = False) -> Iterator[Any]:
    """Decode the frames of ``span`` in order as :class:`Frame`; with ``audio`` also yield the audio
    packets (``av.Packet``, untouched) between them, as the file interleaves them.

    Raises :class:`VideoError` (one line) when a frame cannot be decoded (corrupt or truncated data).
    """
    av = import_av()
    path = Path(path)
    end = None if span.duration is None else span.start + span.duration
    with _open(path) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        streams = [vs, *c.streams.audio] if audio else [vs]
        if span.start > 0:
            c.seek(int(span.start / vs.time_base), stream=vs, backward=True)
        n = 0
        try:
            for packet in c.demux(streams):
                if packet.stream.type == "audio":
                    if packet.dts is not None:
                        yield packet
                    continue
                for f in packet.decode():
                    t = float(f.time) if f.time is not None else (n / float(info.fps))
                    if t < span.start - 0.5 / float(info.fps):
                        continue
                    if (end is not None and t >= end - 1e-6) or (span.max_frames is not None and n >= span.max_frames):
                        return
                    yield Frame(n, t, f.pts, f.to_ndarray(format="rgb24"))
                    n += 1
        except av.FFmpegError as exc:
            raise VideoError(f"{path}: corrupt or truncated at frame {n} ({one_line(exc)})") from None


def choose_encoder() -> str:
    """The first encoder of :data:`ENCODERS` that this PyAV wheel ships."""
    av = import_av()
    for name in ENCODERS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    raise VideoError("this PyAV build has no H.264 or MPEG-4 encoder")


class AtomicVideoWriter:
    """Write a video to a temporary file beside ``path`` and rename it over ``path`` in :meth:`close`.

    Video frames (uint8 RGB, ``width`` x ``height``) are encoded with :func:`choose_encoder` (libx264,
    ``crf``; yuv420p, or yuv444p for odd sizes), time-stamped in ``time_base`` ticks; audio packets of
    the ``audio_templates`` input streams are copied as they are.  Any failure (a full disk,
    Ctrl-C) calls :meth:`abort`, which removes the temporary file: nothing half-written is left.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: Fraction,
        time_base: Fraction,
        audio_templates=(),
        crf: int = DEFAULT_CRF,
    ):
        av = import_av()
        self.path = Path(path)
        self.tmp = temp_name(self.path)
        track_temp(self.tmp)
        fmt = KEEP_CONTAINER.get(self.path.suffix.lower(), "matroska")
        self.encoder = choose_encoder()
        self.last_pts: int | None = None
        self.frames = 0
        try:
            self.c = av.open(str(self.tmp), "w", format=fmt)
            self.v = self.c.add_stream(self.encoder, rate=fps)
            self.v.width, self.v.height = width, height
            self.v.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            self.v.codec_context.time_base = time_base
            self.v.time_base = time_base
            if self.encoder == "libx264":
                self.v.options = {"crf": str(crf), "preset": "medium"}
            elif self.encoder == "mpeg4":
                self.v.options = {"qscale": "2"}
            self.audio = {t.index: self.c.add_stream_from_template(t) for t in audio_templates}
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise OutputError(f"cannot write {self.path}: {one_line(exc)}") from None
            raise

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one uint8 RGB frame at ``pts`` ticks (made strictly increasing)."""
        av = import_av()
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1
        self.last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, self.v.codec_context.time_base
        self._mux(self.v.encode(frame))
        self.frames += 1

    def copy(self, packet, shift: int) -> None:
        """Mux one input audio packet, its timestamps moved ``shift`` ticks earlier (its own time base)."""
        out = self.audio.get(packet.stream.index)
        if out is None:
            return
        if packet.pts is not None:
            packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        packet.stream = out
        self._mux([packet])

    def _mux(self, packets) -> None:
        try:
            for p in packets:
                self.c.mux(p)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {one_line(exc)}") from None

    def close(self) -> None:
        """Flush the encoder, finish the file and rename it to :attr:`path`."""
        try:
            self._mux(self.v.encode())
            self.c.close()
            os.replace(self.tmp, self.path)
            untrack_temp(self.tmp)
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {one_line(exc)}") from None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Close without finishing and delete the temporary file (safe to call twice)."""
        c = getattr(self, "c", None)
        if c is not None:
            try:
                c.close()
            except Exception:
                pass
            self.c = None
        try:
            self.tmp.unlink()
        except OSError:
            pass
        untrack_temp(self.tmp)
