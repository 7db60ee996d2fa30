"""Faces followed across the frames of a video, with their alignment smoothed over time.

A face detected in every frame on its own gets a slightly different alignment each
time (landmark noise of a pixel or so), so the aligned crops jitter and the restored
face shimmers.  Here per-frame detections are linked into tracks (nearest centre,
frame to frame), brief dropouts are bridged by interpolation, and the similarity
transform to the FFHQ template is smoothed along each track by a local-linear
Gaussian filter (the position: a straight, steady motion passes unchanged) and a wider plain
Gaussian mean (scale and roll), so frame-to-frame noise is averaged away.  Numpy only; no video
library needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..faces.align import TEMPLATE_SIZE, estimate_alignment
from ..faces.detect import Face

#: Frames a face may go undetected and still be the same track (bridged by interpolation).
DEFAULT_MAX_GAP = 6
#: Standard deviation, in frames, of the Gaussian weights of the temporal smoothing of the face's position
#: and box (0 = none; local-linear: a pan passes unchanged); its scale and roll, which the detector
#: estimates less steadily than they change in a video (on a still face, compressed frame by frame, they
#: wander by a few degrees), get a plain weighted mean over :data:`SHAPE_SMOOTH_FACTOR` times this.
DEFAULT_SMOOTH = 3.0
SHAPE_SMOOTH_FACTOR = 2.0
#: Tracks detected in fewer frames than this are dropped as false positives (in clips at least this long).
DEFAULT_MIN_TRACK = 3


@dataclass
class Track:
    """One face over time: per frame index the state vector (see :func:`face_state`)."""

    states: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)

    @property
    def last(self) -> int:
        return max(self.states)

    def centre_size(self, t: int) -> tuple[float, float, float]:
        """Box centre x, y and side (pixels) at frame ``t``."""
        x0, y0, x1, y1 = self.states[t][4:]
        return (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)


#: Aligned-grid point whose photo position is tracked as the face centre (the 512 template's centre).
_CENTRE = np.array([255.5, 255.5])


def face_state(face: Face) -> np.ndarray | None:
    """float64 (8,) state of a detected face: its similarity transform photo -> 512 aligned face as
    ``(a, b)`` (matrix ``[[a, -b], [b, a]]``: scale and rotation) and the photo point ``(cx, cy)`` that
    lands on the aligned face's centre, then the box ``(x0, y0, x1, y1)``; None when its landmarks fit
    no transform."""
    try:
        m = estimate_alignment(face.landmarks, TEMPLATE_SIZE, robust=False)
    except ValueError:
        return None
    a, b = (m[0, 0] + m[1, 1]) / 2, (m[1, 0] - m[0, 1]) / 2
    r = np.array([[a, -b], [b, a]])
    cx, cy = np.linalg.solve(r, _CENTRE - m[:, 2])
    return np.array([a, b, cx, cy, *face.box], dtype=np.float64)


def state_face(state: np.ndarray, score: float) -> Face:
    """The :class:`Face` of a state vector, its ``affine`` set (landmarks: the template carried back)."""
    from ..faces.align import FFHQ_TEMPLATE_512, apply, invert

    a, b, cx, cy = state[:4]
    r = np.array([[a, -b], [b, a]])
    m = np.hstack([r, (_CENTRE - r @ np.array([cx, cy]))[:, None]])
    box = tuple(float(v) for v in state[4:])
    return Face(box=box, landmarks=apply(invert(m), FFHQ_TEMPLATE_512), score=float(score), affine=m)  # type: ignore[arg-type]


def link(per_frame: list[list[Face]], max_gap: int = DEFAULT_MAX_GAP, reach: float = 0.5) -> list[Track]:
    """Link per-frame detections into tracks.

    A detection joins the track last seen within ``max_gap`` frames whose box centre is nearest,
    if closer than ``reach`` x the track's box side; otherwise it starts a new track.  Each track
    takes at most one detection per frame (nearest pairs first).
    """
    tracks: list[Track] = []
    for t, faces in enumerate(per_frame):
        states = [(s, f.score) for f in faces if (s := face_state(f)) is not None]
        pairs = []
        for j, (s, _) in enumerate(states):
            cx, cy = (s[4] + s[6]) / 2, (s[5] + s[7]) / 2
            for i, tr in enumerate(tracks):
                if t - tr.last <= max_gap + 1:
                    tx, ty, side = tr.centre_size(tr.last)
                    d = math.hypot(cx - tx, cy - ty)
                    if d < reach * side:
                        pairs.append((d, i, j))
        used_t, used_d = set(), set()
        for _, i, j in sorted(pairs):
            if i not in used_t and j not in used_d:
                used_t.add(i)
                used_d.add(j)
                tracks[i].states[t], tracks[i].scores[t] = states[j]
        for j, (s, sc) in enumerate(states):
            if j not in used_d:
                tracks.append(Track({t: s}, {t: sc}))
    return tracks


def fill_gaps(track: Track) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame indices from the track's first to last frame, their states (linearly interpolated where the
    face was not detected) and whether each frame had a detection."""
    seen = np.array(sorted(track.states))
    frames = np.arange(seen[0], seen[-1] + 1)
    known = np.stack([track.states[t] for t in seen])
    states = np.stack([np.interp(frames, seen, known[:, k]) for k in range(known.shape[1])], axis=1)
    return frames, states, np.isin(frames, seen)


def smooth(states: np.ndarray, sigma: float, linear: bool = True) -> np.ndarray:
    """Gaussian smoothing along axis 0 (frames).

    ``linear``: at each frame a line is fitted to the frames within 3 ``sigma`` by weighted least
    squares and evaluated there, so steady linear motion is kept exactly (also at the ends) and noise
    is averaged; otherwise a weighted mean (steadier, but it flattens trends).  ``sigma`` 0 returns a copy.
    """
    n = len(states)
    if sigma <= 0 or n < 3:
        return states.copy()
    r = int(math.ceil(3 * sigma))
    out = np.empty_like(states)
    for t in range(n):
        idx = np.arange(max(0, t - r), min(n, t + r + 1))
        d = (idx - t).astype(np.float64)
        w = np.exp(-0.5 * (d / sigma) ** 2)
        sw, swd, swdd = w.sum(), (w * d).sum(), (w * d * d).sum()
        y = states[idx]
        swy, swdy = w @ y, (w * d) @ y
        det = sw * swdd - swd * swd
        out[t] = (swdd * swy - swd * swdy) / det if linear and det > 1e-9 else swy / sw
    return out


def smooth_tracks(
    per_frame: list[list[Face]],
    max_gap: int = DEFAULT_MAX_GAP,
    sigma: float = DEFAULT_SMOOTH,
    min_track: int = DEFAULT_MIN_TRACK,
) -> list[list[tuple[int, Face]]]:
    """Per frame the faces to restore, as ``(track number, face)``: detections linked into tracks, gaps of up to ``max_gap`` frames
    bridged, transforms smoothed over time (position ``sigma`` frames, scale and roll twice that), each with
    its ``affine`` (photo -> 512
    aligned face) set.  Tracks detected in fewer than ``min_track`` frames are dropped when the clip
    has at least that many frames."""
    out: list[list[tuple[int, Face]]] = [[] for _ in per_frame]
    min_seen = min(min_track, len(per_frame))
    for number, tr in enumerate(link(per_frame, max_gap)):
        if len(tr.states) < min_seen:
            continue
        frames, states, _ = fill_gaps(tr)
        states = np.concatenate(
            [smooth(states[:, :2], SHAPE_SMOOTH_FACTOR * sigma, linear=False), smooth(states[:, 2:], sigma)], axis=1
        )
        score = float(np.median(list(tr.scores.values())))
        for t, s in zip(frames, states):
            out[int(t)].append((number, state_face(s, tr.scores.get(int(t), score))))
    return out
