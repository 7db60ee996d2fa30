"""Video in, video out: ``facesr restore clip.mp4`` and :func:`facesr.restore_video` (the ``video`` extra: PyAV).

Modules: :mod:`.io` (probing, decoding a time range, the atomic H.264 writer that copies the audio),
:mod:`.track` (faces linked across frames, alignments smoothed over time; numpy only),
:mod:`.restore` (the two-pass pipeline).  Importing this package does not import PyAV.
"""

from .io import VIDEO_EXTS, VideoError, VideoInfo, output_name, probe
from .restore import DEFAULT_FRAME_CAP, DEFAULT_MAX_PIXELS, VideoResult, restore_video

__all__ = [
    "DEFAULT_FRAME_CAP",
    "DEFAULT_MAX_PIXELS",
    "VIDEO_EXTS",
    "VideoError",
    "VideoInfo",
    "VideoResult",
    "output_name",
    "probe",
    "restore_video",
]
