"""Whole-photo face restoration without a detector: alignment, warps, mask, paste-back and the pipeline.

None of these tests needs the 'faces' extra: a perfect fake detector reports the faces that the
test itself pasted into a synthetic photo (faces_synth.py).  Coordinates are pixel-centre.
"""

from __future__ import annotations

import math
import sys

import cv2
import numpy as np
import pytest

import faces_synth as S
from facesr.errors import ImageError, MissingExtraError
from facesr.faces import align, paste
from facesr.faces.align import apply, compose, estimate_alignment, grid_scale, invert, template
from facesr.faces.detect import Face
from facesr.faces.photo import restore_photo, upscale_background

# GFPGAN / facexlib 5-point FFHQ template at 512 (eye centres, nose tip, mouth corners), for comparison only.
GFPGAN_EYES_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936]])


def test_template_is_symmetric_and_matches_gfpgan_eyes():
    t = align.FFHQ_TEMPLATE_512
    assert np.allclose(t[0, 0] + t[2, 0], 2 * 255.5) and np.allclose(t[1, 0] + t[3, 0], 2 * 255.5)
    eyes = np.array([(t[2] + t[3]) / 2, (t[0] + t[1]) / 2])  # image-left eye, image-right eye
    assert np.abs(eyes - GFPGAN_EYES_512).max() < 8.0
    # the same template on the 128 grid is the 512 one shrunk about the pixel-centre grid
    assert np.allclose(template(128), (t + 0.5) / 4 - 0.5)


@pytest.mark.parametrize(
    "scale,angle,centre",
    [(1.0, 0.0, (100.0, 80.0)), (0.37, 23.0, (210.25, 97.5)), (2.5, -41.0, (55.5, 300.75)), (0.8, 179.0, (0.0, 0.0))],
)
def test_alignment_recovers_the_similarity(scale, angle, centre):
    to_photo = S.similarity(scale, angle, centre, 512)
    m = estimate_alignment(apply(to_photo, template(512)))
    assert np.allclose(compose(m, to_photo), [[1, 0, 0], [0, 1, 0]], atol=1e-3)  # a thousandth of a pixel
    noisy = apply(to_photo, template(512)) + np.random.default_rng(0).normal(0, 0.2, (5, 2))
    err = compose(estimate_alignment(noisy), to_photo) - np.array([[1.0, 0, 0], [0, 1, 0]])
    assert np.abs(err[:, :2]).max() < 0.02 / min(1.0, scale) and np.abs(err[:, 2]).max() < 8 / min(1.0, scale)


def test_alignment_rejects_bad_landmarks():
    with pytest.raises(ValueError):
        estimate_alignment(np.zeros((5, 2)))
    with pytest.raises(ValueError):
        estimate_alignment(np.zeros((4, 2)))


def test_grid_scale_matches_opencv_resize():
    img = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for k in (2, 4):
        ref = cv2.resize(img, (30 * k, 20 * k), interpolation=cv2.INTER_LINEAR)
        got = cv2.warpAffine(
            img, grid_scale(k), (30 * k, 20 * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        assert np.abs(got.astype(int) - ref).max() <= 1


def _smooth_photo(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack(
        [128 + 90 * np.sin(xx / 9.0 + yy / 23.0), 128 + 90 * np.cos(yy / 11.0), 128 + 80 * np.sin((xx - yy) / 13.0)], -1
    )
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_cut_and_paste_back_unchanged_reproduces_the_photo_exactly():
    photo = np.random.default_rng(2).integers(0, 256, (600, 700, 3), dtype=np.uint8)
    to_photo = S.similarity(1.0, 0.0, (350.5, 290.5), 512)  # integer shift: no resampling at all
    a = invert(to_photo)
    crop = align.crop_face(photo, a, 512)
    out = photo // 2
    paste.paste_face(out, crop, a, 1)
    m = np.zeros((600, 700, 3), np.uint8)
    paste.paste_face(m, np.full((512, 512, 3), 255, np.uint8), a, 1)
    inside, outside = m[..., 0] == 255, m[..., 0] == 0
    assert inside.sum() > 0.4 * 512 * 512 and outside.sum() > 0
    assert np.array_equal(out[inside], photo[inside])
    assert np.array_equal(out[outside], (photo // 2)[outside])


@pytest.mark.parametrize("scale,angle,upscale", [(0.6, 17.0, 1), (0.45, -33.0, 2), (0.3, 8.0, 4)])
def test_cut_and_paste_back_is_subpixel_exact(scale, angle, upscale):
    h, w = 360, 400
    photo = _smooth_photo(h, w)
    to_photo = S.similarity(scale, angle, (190.3, 170.6), 512)
    a = estimate_alignment(apply(to_photo, template(512)))
    crop = align.crop_face(photo, a, 512)
    bg = upscale_background(photo, upscale, "bicubic")
    out = bg.copy()
    paste.paste_face(out, crop, a, upscale)
    m = np.zeros_like(bg)
    paste.paste_face(m, np.full((512, 512, 3), 255, np.uint8), a, upscale)
    inside = m[..., 0] == 255
    err = np.abs(out.astype(int) - bg)[inside]
    assert inside.sum() > 1000 and err.mean() < 0.6 and err.max() <= 6
    # half a pixel off is clearly visible on the same image: the test can see sub-pixel errors
    off = a.copy()
    off[0, 2] += 0.5 * align.linear_scale(a)
    out2 = bg.copy()
    paste.paste_face(out2, align.crop_face(photo, a, 512), off, upscale)
    assert np.abs(out2.astype(int) - bg)[inside].mean() > 3 * err.mean() + 1.0


def test_minified_crop_is_antialiased():
    # a fine checkerboard shrunk 4x must average to grey, not alias into stripes
    board = ((np.indices((800, 800)).sum(0) % 2) * 255).astype(np.uint8)
    photo = np.repeat(board[..., None], 3, 2)
    a = invert(S.similarity(4.0, 11.0, (400.0, 400.0), 128))  # photo -> 128 crop shrinks 4x
    crop = align.warp_affine(photo, a, (128, 128))
    assert abs(float(crop.mean()) - 127.5) < 3 and float(crop.std()) < 12


def test_mask_is_zero_at_the_crop_edge_one_inside_and_scales_with_the_face():
    m = paste.face_mask(512)
    assert m.dtype == np.float32 and m.min() == 0.0 and m.max() == 1.0
    assert m[0].max() == 0 and m[:, -1].max() == 0 and m[256, 256] == 1.0
    assert m[150:370, 150:370].min() == 1.0
    ramps = []
    for scale in (0.15, 0.6):
        a = invert(S.similarity(scale, 0.0, (300.0, 300.0), 512))
        out = np.zeros((600, 600, 3), np.uint8)
        paste.paste_face(out, np.full((512, 512, 3), 255, np.uint8), a, 1)
        row = out[300, :, 0].astype(float) / 255
        ramps.append(int(((row > 0.05) & (row < 0.95)).sum()))
        assert row.max() == 1.0
    assert 0.6 * 4 < ramps[1] / ramps[0] < 1.5 * 4  # the face is 4x larger, so is the feather


def test_paste_order_puts_the_largest_face_on_top():
    assert paste.paste_order([50.0, 10.0, 80.0, 10.0]) == [1, 3, 0, 2]


# ----------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def restorer():
    import facesr

    return facesr.load(device="cpu", precision="fp32")  # not auto: the same numbers on every CPU


@pytest.fixture(scope="module")
def tiny():
    """A small random MSRResNet: fast, for tests of shapes and bookkeeping rather than quality."""
    import torch

    from facesr.inference import Restorer
    from facesr.models import MSRResNet

    torch.manual_seed(0)
    return Restorer(MSRResNet(mid_channels=8, num_blocks=1), device="cpu")


@pytest.fixture(scope="module")
def one_face(restorer):
    lq, gt, faces = S.make_photo([(1.0, 12.0, (150.3, 118.7))])
    res = restore_photo(restorer, lq, detector=S.FakeDetector(faces), upscale=4, keep_crops=True)
    return lq, gt, faces, res


def _mask_in_output(affine, upscale, shape):
    m = np.zeros(shape, np.uint8)
    paste.paste_face(m, np.full((512, 512, 3), 255, np.uint8), affine, upscale)
    return m[..., 0].astype(np.float32) / 255


def test_restore_photo_recovers_the_transform_and_beats_bicubic(one_face):
    lq, gt, faces, res = one_face
    assert res.image.shape == (lq.shape[0] * 4, lq.shape[1] * 4, 3) and res.image.dtype == np.uint8
    assert len(res.faces) == 1 and res.skipped == []
    t_512 = compose(S.similarity(1.0, 12.0, (150.3, 118.7), 128), grid_scale(128 / 512))
    assert np.allclose(compose(res.faces[0].affine, t_512), [[1, 0, 0], [0, 1, 0]], atol=1e-3)
    lq_in, sr = res.crops[0]
    assert lq_in.shape == (128, 128, 3) and sr.shape == (512, 512, 3)
    core = _mask_in_output(res.faces[0].affine, 4, res.image.shape) > 0.99
    bic = cv2.resize(lq, (lq.shape[1] * 4, lq.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
    gain = S.psnr(res.image, gt, core) - S.psnr(bic, gt, core)
    assert gain > 0.5, gain
    assert np.array_equal(
        res.image[~(_mask_in_output(res.faces[0].affine, 4, res.image.shape) > 0)],
        bic[~(_mask_in_output(res.faces[0].affine, 4, res.image.shape) > 0)],
    )


def test_paste_back_leaves_no_seam(one_face):
    """Gradient energy along the mask boundary is no higher than in the bicubic upscale.

    Energies are taken on images smoothed by a 2-pixel Gaussian: 8-bit rounding of a blend of two
    smooth images makes staircases that a 3x3 Sobel reads as gradient, and the model adds texture
    of about one grey level even to flat backgrounds; neither is a seam.  A tolerance of 5% covers
    the model's own sub-level colour offset over the smooth background.  The control pastes the
    same face brightened by 3 grey levels (a mild version of the colour mismatch that makes seams
    visible in other tools): with a hard-edged square mask the measure triples at the square's edge,
    with the feathered mask it stays within the same 5% of bicubic.
    """
    lq, gt, faces, res = one_face
    a = res.faces[0].affine
    m = _mask_in_output(a, 4, res.image.shape)
    bic = cv2.resize(lq, (lq.shape[1] * 4, lq.shape[0] * 4), interpolation=cv2.INTER_CUBIC)

    def energy(img, region):
        return S.gradient_energy(cv2.GaussianBlur(img.astype(np.float32), (0, 0), 2.0), region)

    band = (m > 0.05) & (m < 0.95)
    assert band.sum() > 5000
    assert energy(res.image, band) <= 1.05 * energy(bic, band)

    brighter = np.clip(res.crops[0][1].astype(int) + 3, 0, 255).astype(np.uint8)
    hard_mask = np.zeros((512, 512), np.float32)
    hard_mask[16:-16, 16:-16] = 1
    hard = bic.copy()
    paste.paste_face(hard, brighter, a, 4, mask=hard_mask)
    edge_m = np.zeros(res.image.shape, np.uint8)
    paste.paste_face(edge_m, np.full((512, 512, 3), 255, np.uint8), a, 4, mask=hard_mask)
    edge = cv2.morphologyEx((edge_m[..., 0] > 127).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8)) > 0
    assert energy(hard, edge) > 2.5 * energy(bic, edge)
    soft = bic.copy()
    paste.paste_face(soft, brighter, a, 4)
    assert energy(soft, band) <= 1.05 * energy(bic, band)
    assert energy(soft, edge) <= 1.05 * energy(bic, edge)


def test_two_overlapping_faces_one_at_the_border(restorer):
    # the crops overlap, and the second one sticks out of the photo's right and top edges
    lq, gt, faces = S.make_photo([(1.0, 0.0, (150.0, 130.0)), (0.8, -10.0, (262.0, 70.0))])
    det = S.FakeDetector(faces)
    res = restore_photo(restorer, lq, detector=det, upscale=2)
    assert det.calls == 1 and len(res.faces) == 2 and res.image.shape == (480, 640, 3)
    bic = cv2.resize(lq, (640, 480), interpolation=cv2.INTER_CUBIC)
    gt2 = cv2.resize(gt, (640, 480), interpolation=cv2.INTER_AREA)
    for f in res.faces:
        core = _mask_in_output(f.affine, 2, res.image.shape) > 0.99
        assert core.sum() > 2000
        assert S.psnr(res.image, gt2, core) > S.psnr(bic, gt2, core)


def test_no_face_gives_the_plain_upscale(restorer):
    lq = S.background(100, 140)
    for bg, interp in (("bicubic", cv2.INTER_CUBIC), ("lanczos", cv2.INTER_LANCZOS4)):
        res = restore_photo(restorer, lq, detector=S.FakeDetector([]), upscale=2, background=bg)
        assert res.faces == [] and np.array_equal(res.image, cv2.resize(lq, (280, 200), interpolation=interp))
    res = restore_photo(restorer, lq, detector=S.FakeDetector([]), upscale=1)
    assert np.array_equal(res.image, lq)


def test_model_background_and_sizes(tiny):
    lq = S.background(40, 50)
    for up in (1, 2, 4):
        res = restore_photo(tiny, lq, detector=S.FakeDetector([]), upscale=up, background="model")
        assert res.image.shape == (40 * up, 50 * up, 3)
    with pytest.raises(ValueError):
        restore_photo(tiny, lq, detector=S.FakeDetector([]), upscale=3)
    with pytest.raises(ImageError, match="upscale"):
        restore_photo(tiny, lq, detector=S.FakeDetector([]), upscale=4, max_output_pixels=1000)


def test_small_faces_are_skipped_and_counted(tiny):
    lq, gt, faces = S.make_photo([(0.3, 0.0, (100.0, 100.0)), (1.0, 0.0, (220.0, 120.0))])
    res = restore_photo(tiny, lq, detector=S.FakeDetector(faces), upscale=1, min_face=32)
    assert len(res.faces) == 1 and len(res.skipped) == 1 and res.skipped[0].size < 32
    assert res.faces[0].affine is not None and res.skipped[0].affine is None


def test_alpha_gray_and_pil_inputs(tiny):
    from PIL import Image

    lq, gt, faces = S.make_photo([(1.0, 0.0, (120.0, 110.0))], h=200, w=240)
    alpha = np.tile(np.linspace(0, 255, 240).astype(np.uint8), (200, 1))
    res = restore_photo(tiny, np.dstack([lq, alpha]), detector=S.FakeDetector(faces), upscale=2)
    assert res.image.shape == (400, 480, 4)
    assert (
        np.abs(res.image[..., 3].astype(int) - cv2.resize(alpha, (480, 400), interpolation=cv2.INTER_CUBIC)).max() == 0
    )
    res = restore_photo(tiny, Image.fromarray(lq), detector=S.FakeDetector(faces), upscale=1)
    assert isinstance(res.image, Image.Image) and res.image.size == (240, 200)
    res = restore_photo(tiny, lq[..., 1], detector=S.FakeDetector([]), upscale=1)
    assert res.image.shape == (200, 240, 3)


def test_restorer_hook(tiny):
    lq, gt, faces = S.make_photo([(1.0, 0.0, (120.0, 110.0))], h=200, w=240)
    res = tiny.restore_photo(lq, detector=S.FakeDetector(faces), upscale=1)
    assert res.image.shape == lq.shape and len(res.faces) == 1
    d = res.faces[0].to_dict()
    assert set(d) == {"box", "landmarks", "score", "size", "affine_to_aligned_512"} and len(d["landmarks"]) == 5


def test_missing_extra_gives_one_line(monkeypatch):
    from facesr.faces import detect

    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(MissingExtraError) as exc:
        detect.load_detector()
    msg = str(exc.value)
    assert "\n" not in msg and 'pip install "facesr[faces]"' in msg


def test_missing_landmark_models_gives_one_line(monkeypatch):
    from facesr.faces import detect

    real = detect.importlib.util.find_spec
    monkeypatch.setattr(
        detect.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "face_recognition_models" else real(name, *a),
    )
    with pytest.raises(MissingExtraError, match=r"facesr\[faces\]"):
        detect.models_dir()


def test_face_record_json_roundtrip():
    import json

    f = Face(box=(1.0, 2.0, 3.0, 4.5), landmarks=np.arange(10.0).reshape(5, 2), score=0.5)
    d = json.loads(json.dumps(f.to_dict()))
    assert d["box"] == [1.0, 2.0, 3.0, 4.5] and d["size"] == 2.5 and "affine_to_aligned_512" not in d
    assert math.isclose(d["score"], 0.5)
