"""Faces followed across video frames and their alignments smoothed over time (numpy only: runs without
the 'video' and 'faces' extras)."""

from __future__ import annotations

import numpy as np

from facesr.video import track


def _faces_along(points: np.ndarray, size: float = 60.0):
    """One face per frame whose landmarks are the template scaled to ``size`` and moved to ``points``."""
    from facesr.faces.align import template
    from facesr.faces.detect import Face

    base = template(512) * (size / 512)
    out = []
    for x, y in points:
        lm = base + [x - size / 2, y - size / 2]
        out.append([Face(box=(x - size / 2, y - size / 2, x + size / 2, y + size / 2), landmarks=lm, score=1.0)])
    return out


def _translation(per_frame):
    return np.array([fs[0][1].affine[:, 2] for fs in per_frame])


def test_smoothing_keeps_steady_motion_and_removes_wobble():
    t = np.arange(30, dtype=np.float64)
    path = np.stack([100 + 0.7 * t, 80 + 0.2 * t], axis=1)
    clean = track.smooth_tracks(_faces_along(path))
    raw = track.smooth_tracks(_faces_along(path), sigma=0)
    assert np.allclose(_translation(clean), _translation(raw), atol=1e-6)  # a straight pan passes unchanged
    rng = np.random.default_rng(0)
    noisy = path + rng.normal(0, 1.0, path.shape)
    wobbly = track.smooth_tracks(_faces_along(noisy), sigma=0)
    smoothed = track.smooth_tracks(_faces_along(noisy))
    err_raw = np.abs(_translation(wobbly) - _translation(raw)).mean()
    err_smooth = np.abs(_translation(smoothed) - _translation(raw)).mean()
    assert err_smooth < 0.6 * err_raw


def test_brief_dropouts_are_bridged_and_lone_detections_dropped():
    path = np.stack([np.linspace(100, 110, 12), np.full(12, 90.0)], axis=1)
    faces = _faces_along(path)
    for i in (4, 5, 6):
        faces[i] = []
    stray = _faces_along(np.array([[20.0, 20.0]]))[0]
    faces[9] = faces[9] + stray  # a one-frame false positive far from the face
    out = track.smooth_tracks(faces, max_gap=3)
    assert [len(fs) for fs in out] == [1] * 12
    xs = _translation(out)[:, 0]
    assert np.all(np.diff(xs) < 0)  # the bridged frames move on smoothly (translation falls as x grows)
    assert len(track.smooth_tracks(faces, max_gap=2)[5]) == 0  # a longer gap than allowed stays empty


def test_two_faces_keep_their_own_tracks():
    a = _faces_along(np.stack([np.linspace(60, 70, 8), np.full(8, 60.0)], axis=1))
    b = _faces_along(np.stack([np.linspace(200, 190, 8), np.full(8, 60.0)], axis=1))
    out = track.smooth_tracks([fa + fb for fa, fb in zip(a, b)])
    assert all(sorted(i for i, _ in fs) == [0, 1] for fs in out)


def test_temporal_blend_steadies_a_static_face_and_follows_a_change():
    from facesr.video.temporal import TemporalBlend

    rng = np.random.default_rng(0)
    lq = np.full((32, 32, 3), 60, np.uint8)
    base = rng.integers(40, 200, (512, 512, 3)).astype(np.float64)
    blend = TemporalBlend(0.6)
    outs = [blend(7, t, lq, np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)) for t in range(12)]
    raw_diff = 3 * np.sqrt(2) * np.sqrt(2 / np.pi)  # mean |difference| of two independent N(0, 3) samples
    blended_diff = np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(outs[4:], outs[5:])])
    assert blended_diff < 0.7 * raw_diff
    changed = lq + 100  # the input changes everywhere: the new restoration passes unblended
    new = np.full((512, 512, 3), 17, np.uint8)
    assert np.array_equal(blend(7, 12, changed, new), new)
    assert np.array_equal(blend(7, 20, changed, new + 1), new + 1)  # after a gap: no blending
    assert np.array_equal(TemporalBlend(0.0)(1, 1, lq, new), new)


def test_least_squares_alignment_recovers_a_similarity_and_moves_smoothly():
    import cv2

    from facesr.faces.align import FFHQ_TEMPLATE_512, apply, estimate_alignment, fit_similarity

    m = cv2.getRotationMatrix2D((40.0, 30.0), 17.0, 0.3)
    pts = apply(m, FFHQ_TEMPLATE_512)
    assert np.allclose(fit_similarity(FFHQ_TEMPLATE_512, pts), m, atol=1e-9)
    rng = np.random.default_rng(0)
    rolls = []
    for _ in range(20):  # a face 50 px wide, landmarks wobbling by 0.2 px: the fit wobbles by a fraction of a degree
        a = estimate_alignment(pts + rng.normal(0, 0.2, pts.shape), robust=False)
        rolls.append(np.degrees(np.arctan2(a[1, 0], a[0, 0])))
    assert np.ptp(rolls) < 1.0
