"""Offline face detection with 5-point landmarks (the ``faces`` extra: dlib + face-recognition-models).

Detectors are callables ``detector(rgb) -> list[Face]`` taking a uint8 RGB HxWx3
photo (0-255).  :class:`DlibDetector` uses dlib's HOG frontal-face detector
(no model file) or its CNN (MMOD) detector, and dlib's 5-point landmark
predictor; both model files ship inside the ``face-recognition-models`` wheel,
so nothing is downloaded at run time.  Boxes and landmarks are pixel-centre
coordinates of the photo that was passed in (see :mod:`facesr.faces.align`).
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import MissingExtraError

EXTRA = "faces"
PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
CNN_FILE = "mmod_human_face_detector.dat"
DETECTORS = ("hog", "cnn")


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
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float
    affine: np.ndarray | None = field(default=None, repr=False)

    @property
    def size(self) -> float:
        """Face size in input-photo pixels: the larger side of :attr:`box`."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    def to_dict(self) -> dict:
        """JSON-ready dict: box, landmarks, score, size and affine (lists of floats, photo pixels)."""
        d = {"box": [round(float(v), 2) for v in self.box],
             "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(self.landmarks)],
             "score": round(float(self.score), 4), "size": round(self.size, 2)}
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


class DlibDetector:
    """dlib face detector + 5-point landmark predictor, fully offline.

    Args:
        model: ``"hog"`` (default: HOG + linear SVM, frontal faces, fast on a CPU) or ``"cnn"``
            (dlib's MMOD CNN: more poses, far slower on a CPU; measured in the README).
        upsample: times the detector doubles the image before searching (1 finds faces down to
            about 40 pixels wide; each step costs about 4x the time).
        max_side: photos whose longer side exceeds this many pixels are area-downscaled to it for
            the box search (landmarks are still fitted on the full-size photo).
        threshold: minimum detector score (HOG: SVM margin; 0 = dlib's default).
    """

    LANDMARK_FACE_PX = 200  # landmarks are fitted on a crop resampled so the face box is about this wide

    def __init__(self, model: str = "hog", upsample: int = 1, max_side: int = 2048, threshold: float = 0.0):
        if model not in DETECTORS:
            raise ValueError(f"detector model must be one of {', '.join(DETECTORS)}, got {model!r}")
        if upsample < 0 or max_side < 64:
            raise ValueError(f"upsample must be >= 0 and max_side >= 64, got {upsample} and {max_side}")
        dlib = _import_dlib()
        folder = models_dir()
        self.dlib, self.model, self.upsample = dlib, model, int(upsample)
        self.max_side, self.threshold = int(max_side), float(threshold)
        self.predictor = dlib.shape_predictor(str(folder / PREDICTOR_FILE))
        if model == "hog":
            self.detector = dlib.get_frontal_face_detector()
        else:
            if not (folder / CNN_FILE).is_file():
                raise MissingExtraError(EXTRA, f"the CNN face detector ({folder / CNN_FILE} is missing)")
            self.detector = dlib.cnn_face_detection_model_v1(str(folder / CNN_FILE))

    def __repr__(self) -> str:
        return f"DlibDetector(model={self.model!r}, upsample={self.upsample}, max_side={self.max_side})"

    def boxes(self, rgb: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """Face boxes ``((x0, y0, x1, y1), score)`` in ``rgb``'s pixel-centre coordinates (edges)."""
        h, w = rgb.shape[:2]
        k = min(1.0, self.max_side / max(h, w))
        small = rgb if k >= 1.0 else cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))),
                                                interpolation=cv2.INTER_AREA)
        ky, kx = small.shape[0] / h, small.shape[1] / w
        small = np.ascontiguousarray(small)
        if self.model == "hog":
            rects, scores, _ = self.detector.run(small, self.upsample, self.threshold)
        else:
            dets = self.detector(small, self.upsample)
            rects = [d.rect for d in dets]
            scores = [d.confidence for d in dets]
        out = []
        for r, sc in zip(rects, scores):
            if sc < self.threshold:
                continue
            # inclusive pixel indices -> edges; small grid -> photo grid
            x0, y0 = (r.left() - 0.5 + 0.5) / kx - 0.5, (r.top() - 0.5 + 0.5) / ky - 0.5
            x1, y1 = (r.right() + 0.5 + 0.5) / kx - 0.5, (r.bottom() + 0.5 + 0.5) / ky - 0.5
            out.append(((x0, y0, x1, y1), float(sc)))
        return out

    def landmarks(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """dlib 5-point landmarks (float64 (5, 2), photo coordinates) of the face in ``box``.

        The predictor runs on a crop around the box resampled so the face is about
        :attr:`LANDMARK_FACE_PX` wide, which gives sub-pixel landmarks for small faces.
        """
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0, 1.0)
        k = self.LANDMARK_FACE_PX / side
        cx0 = max(0, int(math.floor(x0 - 0.5 * side)))
        cy0 = max(0, int(math.floor(y0 - 0.5 * side)))
        cx1 = min(w, int(math.ceil(x1 + 0.5 * side)))
        cy1 = min(h, int(math.ceil(y1 + 0.5 * side)))
        roi = rgb[cy0:cy1, cx0:cx1]
        nw, nh = max(1, round(roi.shape[1] * k)), max(1, round(roi.shape[0] * k))
        interp = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
        crop = np.ascontiguousarray(cv2.resize(roi, (nw, nh), interpolation=interp))
        kx, ky = nw / roi.shape[1], nh / roi.shape[0]

        def to_crop(x, y):  # photo edge coordinates -> crop edge coordinates
            return (x - cx0 + 0.5) * kx - 0.5, (y - cy0 + 0.5) * ky - 0.5

        bx0, by0 = to_crop(x0, y0)
        bx1, by1 = to_crop(x1, y1)
        shape = self.predictor(crop, _dlib_rect(self.dlib, bx0, by0, bx1, by1))
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        pts[:, 0] = (pts[:, 0] + 0.5) / kx - 0.5 + cx0
        pts[:, 1] = (pts[:, 1] + 0.5) / ky - 0.5 + cy0
        return pts

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        """Faces in a uint8 RGB HxWx3 photo (0-255), sorted left to right (then top to bottom)."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"detector takes uint8 HxWx3 RGB images, got {rgb.dtype} {tuple(rgb.shape)}")
        faces = [Face(box=box, landmarks=self.landmarks(rgb, box), score=sc) for box, sc in self.boxes(rgb)]
        return sorted(faces, key=lambda f: (round(f.box[0]), round(f.box[1])))


def load_detector(name: str = "hog", **kwargs) -> DlibDetector:
    """A face detector by name (``"hog"`` or ``"cnn"``); MissingExtraError when the ``faces`` extra is absent."""
    return DlibDetector(model=name, **kwargs)
