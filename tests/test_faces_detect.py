"""Face detection with the 'faces' extra (dlib + face-recognition-models) on synthetic photos.

Skipped cleanly when the extra is not installed.  The aligned face is made from the bundled
sample portrait: the detector's own landmarks on it give the transform to the FFHQ template.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytest.importorskip("dlib")
if __import__("importlib.util").util.find_spec("face_recognition_models") is None:
    pytest.skip("face-recognition-models is not installed", allow_module_level=True)

import faces_synth as S
from facesr.faces import align
from facesr.faces.align import apply, compose, grid_scale
from facesr.faces.detect import DlibDetector, eye_roll, load_detector, rotation_canvas, suppress_duplicates


@functools.lru_cache(maxsize=1)
def detector() -> DlibDetector:
    return load_detector("hog")


@functools.lru_cache(maxsize=1)
def aligned_face() -> np.ndarray:
    """The sample portrait warped onto the FFHQ template by its own detected landmarks (512x512)."""
    faces = detector()(S.hq_face())
    assert len(faces) == 1
    return align.crop_face(S.hq_face(), align.estimate_alignment(faces[0].landmarks), 512)


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _expected_box(t_512):
    """The detector's box on the aligned face, carried into the photo (axis-aligned hull)."""
    ((box, _),) = detector().boxes(aligned_face())
    x0, y0, x1, y1 = box
    pts = apply(t_512, [[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
    return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()


def _check_face(found, scale, angle, centre, box=True, scale_tol=0.05):
    t_512 = compose(S.similarity(scale, angle, centre, 128), grid_scale(128 / 512))
    if box:  # (for a rolled face the upright detector's box is no hull of the rotated one)
        assert _iou(found.box, _expected_box(t_512)) > 0.6
    err = compose(align.estimate_alignment(found.landmarks), t_512)  # identity if perfectly recovered
    assert abs(align.linear_scale(err) - 1) < scale_tol
    assert abs(np.degrees(np.arctan2(err[1, 0], err[0, 0]))) < 3.0
    assert np.abs(apply(err, [[255.5, 255.5]]) - 255.5).max() < 12  # pixels of the 512 grid


def test_aligned_face_lands_on_the_template():
    (f,) = detector()(aligned_face())
    assert np.abs(f.landmarks - align.FFHQ_TEMPLATE_512).max() < 6


@pytest.mark.parametrize("scale,angle", [(1.0, 12.0), (0.7, -8.0), (1.6, 0.0)])
def test_finds_the_pasted_face_and_recovers_its_transform(scale, angle):
    centre = (170.3, 121.6)
    lq, _, _ = S.make_photo([(scale, angle, centre)], hq=aligned_face())
    found = detector()(lq)
    assert len(found) == 1
    assert found[0].score > 0
    _check_face(found[0], scale, angle, centre)


def test_two_faces_one_at_the_border():
    placements = [(1.0, 5.0, (90.0, 130.0)), (0.9, -6.0, (262.0, 60.0))]  # the second crop leaves the photo
    lq, _, _ = S.make_photo(placements, hq=aligned_face())
    found = detector()(lq)
    assert len(found) == 2
    for f, (scale, angle, centre) in zip(found, placements):  # detections are sorted left to right
        _check_face(f, scale, angle, centre)


def test_no_face_in_a_plain_background():
    assert detector()(S.background(240, 320)) == []


def test_large_photo_is_searched_downscaled_but_landmarks_stay_full_size():
    lq, _, _ = S.make_photo([(1.0, 0.0, (170.3, 121.6))], hq=aligned_face())
    big = np.kron(lq, np.ones((4, 4, 1), np.uint8))  # 960x1280, searched at max_side 640
    small_search = DlibDetector("hog", max_side=640)
    (f,) = small_search(big)
    t_big = compose(grid_scale(4), compose(S.similarity(1.0, 0.0, (170.3, 121.6), 128), grid_scale(0.25)))
    err = compose(align.estimate_alignment(f.landmarks), t_big)
    assert abs(align.linear_scale(err) - 1) < 0.05


@pytest.mark.parametrize("angle", [-30.0, 24.0, 30.0])
def test_tilted_small_face_is_found_and_its_roll_recovered(angle):
    """A face about 52 px wide rolled by up to 30 degrees, blurred and JPEG'd (q75): the default search
    finds it and the alignment fitted to its landmarks undoes the roll."""
    import cv2

    centre = (170.3, 121.6)
    lq, _, _ = S.make_photo([(0.7, angle, centre)], hq=aligned_face())
    lq = cv2.GaussianBlur(lq, (0, 0), 0.8)
    ok, buf = cv2.imencode(".jpg", lq, [cv2.IMWRITE_JPEG_QUALITY, 75])
    lq = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    found = load_detector("hog")(lq)
    assert len(found) == 1
    _check_face(found[0], 0.7, angle, centre, box=False, scale_tol=0.08)  # blurred small faces land less exactly


def test_upright_only_search_is_the_old_detector():
    d = load_detector("hog-upright")
    assert d.angles == () and load_detector("hog").angles != ()
    with pytest.raises(ValueError, match="hog-upright"):
        load_detector("retina")


def test_rotation_canvas_holds_the_whole_photo():
    m, (cw, ch) = rotation_canvas(30.0, 200, 100)
    corners = apply(m, [[-0.5, -0.5], [199.5, -0.5], [-0.5, 99.5], [199.5, 99.5]])
    assert corners.min() >= -0.5 - 1e-6 and corners[:, 0].max() <= cw - 0.5 + 1e-6
    assert corners[:, 1].max() <= ch - 0.5 + 1e-6 and cw < 240 and ch < 190


def test_duplicates_across_angles_keep_the_best_hit():
    from facesr.faces.detect import UPRIGHT_BONUS, _Hit

    box = (0.0, 0.0, 50.0, 50.0)
    upright = _Hit(25, 25, 50, 0.0, 1.0, box)
    turned = _Hit(28, 24, 56, 25.0, 1.0 + UPRIGHT_BONUS / 2, box)
    other = _Hit(120, 25, 50, -25.0, 0.3, box)
    assert suppress_duplicates([turned, upright, other]) == [upright, other]
    better = turned._replace(score=1.0 + 2 * UPRIGHT_BONUS)
    assert suppress_duplicates([upright, better]) == [better]


def test_eye_roll_is_the_turn_that_levels_the_eyes():
    import cv2

    lm = align.FFHQ_TEMPLATE_512
    for a in (-30.0, 0.0, 12.0):
        m = cv2.getRotationMatrix2D((255.5, 255.5), a, 1.0)  # turn an upright face by a
        assert abs(eye_roll(apply(m, lm)) - (-a)) < 1e-6  # turning by -a levels it again


def test_cnn_detector_finds_the_face():
    import cv2

    cnn = load_detector("cnn", upsample=0)
    img = cv2.resize(aligned_face(), (256, 256), interpolation=cv2.INTER_AREA)
    assert len(cnn(img)) == 1


def test_restore_photo_with_the_real_detector(tmp_path):
    import torch

    from facesr.cli import main
    from facesr.io.images import read_rgb
    from facesr.models import MSRResNet, save_weights

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.safetensors"
    save_weights(ckpt, MSRResNet(mid_channels=8, num_blocks=1))
    lq, _, _ = S.make_photo([(1.0, 5.0, (90.0, 130.0)), (0.9, -6.0, (230.0, 110.0))], hq=aligned_face())
    src = tmp_path / "in"
    src.mkdir()
    photo = src / "group.png"
    import cv2

    cv2.imwrite(str(photo), lq[..., ::-1])
    rc = main(
        [
            "restore",
            str(photo),
            "--out",
            str(tmp_path / "out"),
            "--checkpoint",
            str(ckpt),
            "--save-faces",
            "--upscale",
            "2",
        ]
    )
    assert rc == 0
    assert read_rgb(tmp_path / "out" / "group.png").shape == (480, 640, 3)
    import json

    doc = json.loads((tmp_path / "out" / "group_faces" / "faces.json").read_text())
    assert len(doc["faces"]) == 2 and doc["detector"] == "dlib-hog"
