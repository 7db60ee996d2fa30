"""Offline face detection with 5-point landmarks (the ``faces`` extra: dlib + face-recognition-models).

Detectors are callables ``detector(rgb) -> list[Face]`` taking a uint8 RGB HxWx3
photo (0-255).  :class:`DlibDetector` uses dlib's HOG frontal-face detector
(no model file) or its CNN (MMOD) detector, and dlib's 5-point landmark
predictor; both model files ship inside the ``face-recognition-models`` wheel,
so nothing is downloaded at run time.  Boxes and landmarks are pixel-centre
coordinates of the photo that was passed in (see :mod:`facesr.faces.align`).

Tilted heads: besides the upright photo, copies turned by a few angles are
searched (:data:`DEFAULT_ANGLES`); hits are mapped back through the rotation and
duplicates across angles suppressed, and the landmarks of each face are fitted on
a crop turned so that the face is upright, then mapped back, so the FFHQ
alignment carries the roll.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..errors import ImageError, MissingExtraError, one_line
from .align import apply, compose, invert, linear_scale, warp_affine

EXTRA = "faces"
PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
CNN_FILE = "mmod_human_face_detector.dat"
DETECTORS = ("hog", "cnn")
#: Roll angles (degrees) of the rotated copies searched besides the upright photo (docs/faces.md).
DEFAULT_ANGLES = (-25.0, 25.0)


@dataclass
class Face:
    """One detected face.

    Attributes:
        box: ``(x0, y0, x1, y1)`` outer edges of the detector's box, in pixel-centre coordinates
            of the input photo (a box covering pixels 10..19 has x0 = 9.5, x1 = 19.5).
        landmarks: float64 (5, 2) dlib 5-point landmarks (x, y), same coordinates, in the order of
            :data:`facesr.faces.align.FFHQ_TEMPLATE_512`.
        score: detector confidence (HOG: SVM margin, > 0 = face; CNN: MMOD confidence).
        affine: float64 2x3 map from input-photo coordinates to the 512x512 FFHQ-aligned face,
            set by the photo pipeline (None until then).
        angle: degrees (counter-clockwise) by which the photo was rotated in the search that found
            the face (0 = the upright photo).  For a face found in a rotated copy, ``box`` is the
            upright square of the detector's box side around its centre.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float
    affine: np.ndarray | None = field(default=None, repr=False)
    angle: float = 0.0

    @property
    def size(self) -> float:
        """Face size in input-photo pixels: the larger side of :attr:`box`."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    def to_dict(self) -> dict:
        """JSON-ready dict: box, landmarks, score, size and affine (lists of floats, photo pixels)."""
        d = {
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(self.landmarks)],
            "score": round(float(self.score), 4),
            "size": round(self.size, 2),
        }
        if self.affine is not None:
            d["affine_to_aligned_512"] = [[round(float(v), 6) for v in row] for row in np.asarray(self.affine)]
        return d


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise MissingExtraError(EXTRA, "face detection") from None
    return dlib


def models_dir() -> Path:
    """Folder of the ``face-recognition-models`` package's model files (MissingExtraError if absent).

    Found without importing the package (its ``__init__`` needs ``pkg_resources``, which recent
    setuptools no longer ships).
    """
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(EXTRA, "face landmarks (face-recognition-models)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    if not (folder / PREDICTOR_FILE).is_file():
        raise MissingExtraError(EXTRA, f"face landmarks ({folder / PREDICTOR_FILE} is missing)")
    return folder


def _dlib_rect(dlib, x0: float, y0: float, x1: float, y1: float):
    """dlib rectangle (inclusive integer pixel indices) covering the edge box ``x0..x1``, ``y0..y1``."""
    return dlib.rectangle(int(round(x0 + 0.5)), int(round(y0 + 0.5)), int(round(x1 - 0.5)), int(round(y1 - 0.5)))


def _grid_scale_xy(kx: float, ky: float) -> np.ndarray:
    """2x3 matrix of resizing a pixel grid by ``kx`` across and ``ky`` down (pixel-centre coordinates)."""
    return np.array([[kx, 0.0, 0.5 * kx - 0.5], [0.0, ky, 0.5 * ky - 0.5]], dtype=np.float64)


class _Hit(NamedTuple):
    """One detection of the search, in photo pixel-centre coordinates (``box``: see :attr:`Face.box`)."""

    cx: float
    cy: float
    side: float
    angle: float
    score: float
    box: tuple[float, float, float, float]


def rotation_canvas(angle_deg: float, w: int, h: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Rotation of a ``w`` x ``h`` image by ``angle_deg`` (counter-clockwise on screen) about its centre.

    Returns the 2x3 map from image to canvas (pixel-centre coordinates) and the canvas
    ``(width, height)``, just large enough to hold the whole rotated image.
    """
    a = math.radians(angle_deg)
    c, s = abs(math.cos(a)), abs(math.sin(a))
    cw, ch = int(math.ceil(w * c + h * s - 1e-9)), int(math.ceil(w * s + h * c - 1e-9))
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle_deg, 1.0).astype(np.float64)
    m[0, 2] += (cw - w) / 2.0
    m[1, 2] += (ch - h) / 2.0
    return m, (cw, ch)


#: Added to the score of upright hits when duplicates are suppressed: for a face found in the upright
#: photo and in a rotated copy the upright box (dlib's calibrated one) is kept unless the other is clearly better.
UPRIGHT_BONUS = 0.25
#: Second look: a hit scoring below ``verify_below`` is searched for again on a crop levelled by its landmarks'
#: roll and resampled so that the face is this many pixels wide; it is kept only if found there with a score > 0.
CONFIRM_FACE_PX = 90


def suppress_duplicates(hits: list[_Hit], overlap: float = 0.5) -> list[_Hit]:
    """Greedy non-maximum suppression across search angles: best score first (upright hits get
    :data:`UPRIGHT_BONUS`), a hit is dropped when its centre lies within ``overlap`` x the larger
    side of a kept hit's centre."""
    kept: list[_Hit] = []
    for h in sorted(hits, key=lambda t: -(t.score + (UPRIGHT_BONUS if t.angle == 0 else 0.0))):
        if all(math.hypot(h.cx - k.cx, h.cy - k.cy) >= overlap * max(h.side, k.side) for k in kept):
            kept.append(h)
    return kept


def eye_roll(landmarks: np.ndarray) -> float:
    """Degrees by which to turn the photo (counter-clockwise on screen, as ``cv2.getRotationMatrix2D``)
    to level the line through the face's eye centres (dlib 5-point order); 0 for level eyes.  A face
    found in the copy turned by ``a`` degrees has a roll near ``a``."""
    lm = np.asarray(landmarks, np.float64)
    right, left = lm[0:2].mean(axis=0), lm[2:4].mean(axis=0)  # image-right and image-left eye
    return float(math.degrees(math.atan2(right[1] - left[1], right[0] - left[0])))


class DlibDetector:
    """dlib face detector + 5-point landmark predictor, fully offline, searching rotated copies for roll.

    Args:
        model: ``"hog"`` (default: HOG + linear SVM, frontal faces, fast on a CPU) or ``"cnn"``
            (dlib's MMOD CNN: more poses, far slower on a CPU; measured in the README).
        upsample: times the detector doubles the image before searching (1 finds faces down to
            about 40 pixels wide; each step costs about 4x the time).
        max_side: photos whose longer side exceeds this many pixels are area-downscaled to it for
            the box search (landmarks are still fitted on the full-size photo).
        threshold: minimum detector score (HOG: SVM margin; 0 = dlib's default) on the upright photo.
        angles: degrees (counter-clockwise) by which the photo is turned for the extra searches;
            () searches the upright photo only.  dlib's frontal detector finds most faces rolled by up
            to about 20 degrees, so the default copies at +-25 degrees reach +-40 (docs/faces.md).
            Each copy costs about as much as the upright search again, or more (the turned canvas
            is larger).
        rotated_threshold: minimum score of a hit in a turned copy (default: ``threshold``).
        rotated_upsample: ``upsample`` for the turned copies (default: ``upsample``; 0 halves the
            total time and misses more small tilted faces).
        verify_below: hits scoring below this get a second look (see :data:`CONFIRM_FACE_PX`) and are
            dropped unless it confirms them; 0 turns it off.  HOG only.
    """

    LANDMARK_FACE_PX = 200  # landmarks are fitted on a crop resampled so the face box is about this wide

    def __init__(
        self,
        model: str = "hog",
        upsample: int = 1,
        max_side: int = 2048,
        threshold: float = 0.0,
        angles: tuple[float, ...] = DEFAULT_ANGLES,
        rotated_threshold: float | None = None,
        rotated_upsample: int | None = None,
        verify_below: float = 0.5,
    ):
        if model not in DETECTORS:
            raise ValueError(f"detector model must be one of {', '.join(DETECTORS)}, got {model!r}")
        if upsample < 0 or max_side < 64:
            raise ValueError(f"upsample must be >= 0 and max_side >= 64, got {upsample} and {max_side}")
        dlib = _import_dlib()
        folder = models_dir()
        self.dlib, self.model, self.upsample = dlib, model, int(upsample)
        self.max_side, self.threshold = int(max_side), float(threshold)
        self.angles = tuple(float(a) for a in angles if float(a) != 0.0)
        self.rotated_threshold = self.threshold if rotated_threshold is None else float(rotated_threshold)
        self.rotated_upsample = self.upsample if rotated_upsample is None else int(rotated_upsample)
        self.verify_below = float(verify_below) if model == "hog" else -math.inf
        self.predictor = dlib.shape_predictor(str(folder / PREDICTOR_FILE))
        if model == "hog":
            self.detector = dlib.get_frontal_face_detector()
        else:
            if not (folder / CNN_FILE).is_file():
                raise MissingExtraError(EXTRA, f"the CNN face detector ({folder / CNN_FILE} is missing)")
            self.detector = dlib.cnn_face_detection_model_v1(str(folder / CNN_FILE))

    def __repr__(self) -> str:
        return (
            f"DlibDetector(model={self.model!r}, upsample={self.upsample}, max_side={self.max_side}, "
            f"angles={self.angles})"
        )

    def _run(
        self, img: np.ndarray, threshold: float, upsample: int
    ) -> list[tuple[tuple[float, float, float, float], float]]:
        """dlib on one uint8 RGB image: ``((x0, y0, x1, y1), score)`` edge boxes in its pixel-centre coordinates."""
        # A fresh C-order copy: numpy calls tiny slices (1 x 1 of an RGBA photo) contiguous whatever their
        # strides, and dlib refuses those strides.
        img = np.array(img, dtype=np.uint8, order="C", copy=True)
        try:
            if self.model == "hog":
                rects, scores, _ = self.detector.run(img, upsample, threshold)
            else:
                dets = self.detector(img, upsample)
                rects, scores = [d.rect for d in dets], [d.confidence for d in dets]
        except RuntimeError as exc:  # dlib's own refusals (sizes, strides): one line, not a traceback
            raise ImageError(
                f"the face detector could not search this {img.shape[1]}x{img.shape[0]} image ({one_line(exc)})"
            ) from None
        return [
            ((r.left() - 0.5, r.top() - 0.5, r.right() + 0.5, r.bottom() + 0.5), float(sc))
            for r, sc in zip(rects, scores)
            if sc >= threshold
        ]

    def _search(self, rgb: np.ndarray) -> list[_Hit]:
        """Hits of every searched copy (upright and rotated), in ``rgb``'s coordinates, duplicates removed."""
        h, w = rgb.shape[:2]
        k = min(1.0, self.max_side / max(h, w))
        small = (
            rgb
            if k >= 1.0
            else cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
        )
        to_photo = _grid_scale_xy(w / small.shape[1], h / small.shape[0])  # search grid -> photo grid
        hits = []
        for (x0, y0, x1, y1), sc in self._run(small, self.threshold, self.upsample):
            (px0, py0), (px1, py1) = apply(to_photo, np.array([[x0, y0], [x1, y1]]))
            hits.append(
                _Hit((px0 + px1) / 2, (py0 + py1) / 2, max(px1 - px0, py1 - py0), 0.0, sc, (px0, py0, px1, py1))
            )
        sh, sw = small.shape[:2]
        for angle in self.angles:
            m, size = rotation_canvas(angle, sw, sh)
            rotated = cv2.warpAffine(small, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            back = compose(to_photo, invert(m))
            for (x0, y0, x1, y1), sc in self._run(rotated, self.rotated_threshold, self.rotated_upsample):
                ((cx, cy),) = apply(back, np.array([[(x0 + x1) / 2, (y0 + y1) / 2]]))
                side = max(x1 - x0, y1 - y0) * linear_scale(back)
                if -0.5 <= cx <= w - 0.5 and -0.5 <= cy <= h - 0.5:
                    hits.append(
                        _Hit(cx, cy, side, angle, sc, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
                    )
        return suppress_duplicates(hits)

    def boxes(self, rgb: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """Face boxes ``((x0, y0, x1, y1), score)`` in ``rgb``'s pixel-centre coordinates (edges, see :attr:`Face.box`)."""
        return [(hit.box, hit.score) for hit in self._search(rgb)]

    def landmarks(self, rgb: np.ndarray, box: tuple[float, float, float, float], angle: float = 0.0) -> np.ndarray:
        """dlib 5-point landmarks (float64 (5, 2), photo coordinates) of the face in ``box``.

        The predictor runs on a crop around the box, rotated by ``angle`` degrees (so that a face
        found in a rotated copy is upright) and resampled so the face is about
        :attr:`LANDMARK_FACE_PX` wide, which gives sub-pixel landmarks for small faces.
        """
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0, 1.0)
        n = 2 * self.LANDMARK_FACE_PX
        c = (n - 1) / 2.0
        m = cv2.getRotationMatrix2D(((x0 + x1) / 2, (y0 + y1) / 2), angle, self.LANDMARK_FACE_PX / side)
        m = m.astype(np.float64)
        m[:, 2] += np.array([c - (x0 + x1) / 2, c - (y0 + y1) / 2])  # the box centre lands on the crop centre
        crop = np.ascontiguousarray(warp_affine(rgb, m, (n, n), border=cv2.BORDER_REPLICATE))
        half = self.LANDMARK_FACE_PX * (x1 - x0) / side / 2, self.LANDMARK_FACE_PX * (y1 - y0) / side / 2
        shape = self.predictor(crop, _dlib_rect(self.dlib, c - half[0], c - half[1], c + half[0], c + half[1]))
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        return apply(invert(m), pts)

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        """Faces in a uint8 RGB HxWx3 photo (0-255), sorted left to right (then top to bottom)."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"detector takes uint8 HxWx3 RGB images, got {rgb.dtype} {tuple(rgb.shape)}")
        faces = []
        for hit in self._search(rgb):
            lm = self._fit(rgb, hit)
            if hit.score < self.verify_below and not self._confirm(rgb, hit, lm):
                continue
            faces.append(Face(box=hit.box, landmarks=lm, score=hit.score, angle=hit.angle))
        return sorted(faces, key=lambda f: (round(f.box[0]), round(f.box[1])))

    def _confirm(self, rgb: np.ndarray, hit: _Hit, landmarks: np.ndarray) -> bool:
        """Second look at a weak hit: is a face found (score > 0) near the centre of a crop levelled by
        the landmarks' roll and resampled so that the face is :data:`CONFIRM_FACE_PX` wide?"""
        n = int(2.4 * CONFIRM_FACE_PX)
        c = (n - 1) / 2.0
        m = cv2.getRotationMatrix2D((hit.cx, hit.cy), eye_roll(landmarks), CONFIRM_FACE_PX / max(hit.side, 1.0))
        m = m.astype(np.float64)
        m[:, 2] += np.array([c - hit.cx, c - hit.cy])
        crop = warp_affine(rgb, m, (n, n), border=cv2.BORDER_REPLICATE)
        return any(
            math.hypot((x0 + x1) / 2 - c, (y0 + y1) / 2 - c) < 0.35 * CONFIRM_FACE_PX
            for (x0, y0, x1, y1), _ in self._run(crop, 0.0, 0)
        )

    def _fit(self, rgb: np.ndarray, hit: _Hit) -> np.ndarray:
        """Landmarks of a hit: fitted on a crop turned by the search angle, then once more on a crop turned
        by the face's own roll (from the eye line), always, so that the landmarks of a face do not depend on
        which search found it (a threshold on the difference made a face rolled by about that much switch
        between two fits from frame to frame in a video)."""
        lm = self.landmarks(rgb, hit.box, hit.angle)
        return self.landmarks(rgb, hit.box, eye_roll(lm))


#: Names :func:`load_detector` takes: ``hog`` (upright photo and its turned copies, weak hits checked twice),
#: ``hog-upright`` (the upright photo only, as facesr 0.2 did) and ``cnn`` (dlib's MMOD CNN, upright).
DETECTOR_NAMES = ("hog", "hog-upright", "cnn")


def load_detector(name: str = "hog", **kwargs) -> DlibDetector:
    """A face detector by name (:data:`DETECTOR_NAMES`); MissingExtraError when the ``faces`` extra is absent."""
    if name not in DETECTOR_NAMES:
        raise ValueError(f"detector must be one of {', '.join(DETECTOR_NAMES)}, got {name!r}")
    if name != "hog":
        kwargs.setdefault("angles", ())
        kwargs.setdefault("verify_below", 0.0)
    return DlibDetector(model=name.split("-")[0], **kwargs)
