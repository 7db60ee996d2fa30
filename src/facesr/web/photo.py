"""Whole-photo mode of ``facesr serve``: find the faces, restore each, paste them back over the enlarged photo.

The pipeline is :func:`facesr.faces.restore_photo` (through ``Restorer.restore_photo``); this module
only adapts it to a web job: the detector is loaded once and shared by all jobs, progress is counted
in faces (and checked for cancellation right after detection too), and the detections go back to the
page as JSON with boxes in *output* pixels.

Coordinates sent to the page: ``box`` = ``[left, top, right, bottom]`` edges in pixels of the output
image, measured from its top-left corner (0 .. width, 0 .. height), so the page only multiplies by its
zoom.  (:class:`facesr.faces.Face` boxes are pixel-centre edges of the input: pixel ``i`` spans
``i - 0.5 .. i + 0.5``; the output edge is ``(x + 0.5) * upscale``.)
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import NamedTuple

import numpy as np

from ..errors import FacesrError, MissingExtraError, one_line
from .images import InputError
from .jobs import Cancelled

log = logging.getLogger("facesr.web")

#: Output pixels per input pixel in whole-photo mode (as ``facesr restore``).
PHOTO_UPSCALE = 2
#: Pictures with a side longer than this are suggested for whole-photo mode by the page.
PHOTO_SUGGEST_SIDE = 256

NO_DETECTOR = (
    "Whole-photo mode is not available on this server because its face detector is not installed. "
    "Crop the picture to one face and restore that instead. (For whoever runs the server: "
    'pip install "facesr[faces]".)'
)
NO_PHOTO_MODE = (
    "Whole-photo restoration is not available in this version of facesr. Crop the picture to the face and restore that."
)


class PhotoOutcome(NamedTuple):
    """What :func:`call_restore_photo` returns.  ``image``: uint8 RGB(A) output; ``faces``: restored faces;
    ``skipped``: faces found but not restored (too small, not alignable, or over the cap); ``upscale``:
    output pixels per input pixel; ``over_cap``: the skipped faces left out by the ``max_faces`` cap.
    ``faces``, ``skipped`` and ``over_cap`` are None when the restorer returned a bare image."""

    image: np.ndarray
    faces: list | None
    skipped: list | None
    upscale: int
    over_cap: list | None = None


def detector_failed(shape: tuple[int, ...]) -> InputError:
    """The 400 answer when the face detector raised on a photo of this shape (the traceback goes to the log)."""
    h, w = shape[:2]
    return InputError(
        f"The face detector could not search this {w} × {h} picture, so no face was restored. "
        f"Try a larger photo, or crop the picture to one face and restore it in face mode."
    )


def too_small_for_photo_mode(shape: tuple[int, ...], min_face: float) -> InputError | None:
    """A 400 answer when a photo is too small to hold a face that whole-photo mode would restore, else None."""
    h, w = shape[:2]
    if min(h, w) >= min_face:
        return None
    return InputError(
        f"This {w} × {h} picture is too small for whole-photo mode: a face must be at least "
        f"{min_face:g} pixels wide to be restored. Restore it in face mode instead."
    )


def default_detector_missing() -> str | None:
    """Why the default (dlib) detector cannot be used here, for the server log; None when it can.

    Only imports dlib and looks for the landmark file; the detector itself is loaded at the first job.
    """
    try:
        from ..faces.detect import _import_dlib, models_dir

        _import_dlib()
        models_dir()
    except MissingExtraError as exc:
        return one_line(exc)
    except Exception as exc:  # a broken dlib install: no photo mode, and the log says why
        return f"the face detector could not be loaded ({one_line(exc)})"
    return None


class SharedDetector:
    """The face detector for all jobs, loaded at first use (about a second) and then kept.

    ``detector``: a callable ``rgb -> list[Face]``, or None for dlib's HOG detector (the ``faces`` extra).
    """

    def __init__(self, detector=None):
        self._detector = detector
        self._lock = threading.Lock()

    def __call__(self, rgb):
        return self.get()(rgb)

    def get(self):
        with self._lock:
            if self._detector is None:
                from ..faces.detect import load_detector

                try:
                    self._detector = load_detector("hog")
                except MissingExtraError as exc:
                    log.error("whole-photo mode: %s", one_line(exc))
                    raise InputError(NO_DETECTOR, 503) from None
            return self._detector


def _accepts(fn) -> tuple[set[str], bool]:
    """(named parameters, takes **kwargs) of ``fn``; (empty, False) when it cannot be inspected."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set(), False
    return (
        {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)},
        any(p.kind == p.VAR_KEYWORD for p in params),
    )


def _detect_with_progress(detector, progress, min_face: float, max_faces: int | None):
    """The detector wrapped for a web job: checks for cancellation before and after detecting, sets the
    total (faces that will be restored) and turns a detector crash into a 400 :class:`InputError`."""

    def detect(rgb):
        progress(0, 0)  # cancelled while waiting for the detector?
        try:
            faces = list(detector(rgb))
        except (Cancelled, FacesrError):
            raise
        except Exception as exc:  # e.g. dlib's RuntimeError on a tiny picture: the picture's fault
            log.warning("face detector failed on a %dx%d photo: %s", rgb.shape[1], rgb.shape[0], one_line(exc))
            raise detector_failed(rgb.shape) from None
        n = sum(1 for f in faces if f.size >= min_face)
        progress(0, n if max_faces is None else min(n, max_faces))  # total known; cancelled while detecting?
        return faces

    return detect


def takes_detector(fn) -> bool:
    """True when the whole-photo restorer ``fn`` takes a ``detector`` (so faces are found by this server)."""
    names, any_kw = _accepts(fn)
    return any_kw or "detector" in names


def call_restore_photo(
    fn,
    image: np.ndarray,
    progress,
    detector=None,
    upscale: int = PHOTO_UPSCALE,
    min_face: float | None = None,
    max_faces: int | None = None,
) -> PhotoOutcome:
    """Call a whole-photo restorer with the options it takes; returns a :class:`PhotoOutcome`.

    ``fn`` is ``Restorer.restore_photo`` (returns a :class:`facesr.faces.PhotoResult`) or any callable
    ``fn(image, ...)`` returning an image (then faces and skipped are None and ``upscale`` is read off the
    sizes).  ``progress(done, total)`` counts faces: ``(0, n)`` once the detector found ``n`` faces big
    enough to restore (at most ``max_faces``), then after each batch of restored faces; it raises to cancel.
    ``max_faces``: most faces restored (the largest; default :data:`facesr.faces.photo.DEFAULT_MAX_FACES`).
    A photo too small to hold a restorable face, or one the detector fails on, raises a 400 :class:`InputError`.
    """
    from ..faces.photo import DEFAULT_MAX_FACES, DEFAULT_MIN_FACE

    names, any_kw = _accepts(fn)
    min_face = DEFAULT_MIN_FACE if min_face is None else float(min_face)
    max_faces = DEFAULT_MAX_FACES if max_faces is None else int(max_faces)
    kwargs: dict[str, object] = {}
    if detector is not None and (any_kw or "detector" in names):
        refusal = too_small_for_photo_mode(image.shape, min_face)
        if refusal is not None:
            raise refusal
        kwargs["detector"] = _detect_with_progress(detector, progress, min_face, max_faces)
    for key, value in (("upscale", upscale), ("min_face", min_face), ("progress", progress), ("max_faces", max_faces)):
        if any_kw or key in names:
            kwargs[key] = value
    if "progress" not in kwargs:
        progress(0, 1)
    res = fn(image, **kwargs)
    if "progress" not in kwargs:
        progress(1, 1)
    if hasattr(res, "image") and hasattr(res, "faces"):
        over = list(getattr(res, "over_cap", []) or [])
        return PhotoOutcome(
            np.asarray(res.image),
            list(res.faces),
            list(getattr(res, "skipped", []) or []) + over,
            int(res.upscale),
            over,
        )
    out = np.asarray(res)
    return PhotoOutcome(out, None, None, max(1, round(out.shape[1] / max(1, image.shape[1]))))


def face_boxes(faces, skipped, upscale: float, min_face: float | None = None, over_cap=()) -> list[dict]:
    """JSON-ready detections for the page: restored faces (detection order), then the skipped ones.

    Each: ``{"box": [left, top, right, bottom] in output pixels (0 = the image's top-left corner),
    "landmarks": [[x, y] * 5] (same coordinates), "score", "size" (input pixels), "restored": bool,
    "skipped": None, "small" (narrower than ``min_face`` input pixels), "cap" (one of ``over_cap``: left
    out because the photo had more faces than the cap) or "pose" (could not be aligned)}``.
    """
    from ..faces.photo import DEFAULT_MIN_FACE

    min_face = DEFAULT_MIN_FACE if min_face is None else float(min_face)
    capped = {id(f) for f in over_cap}

    def why(f) -> str:
        return "cap" if id(f) in capped else ("small" if f.size < min_face else "pose")

    def one(f, restored: bool) -> dict:
        x0, y0, x1, y1 = (float(v) for v in f.box)
        box = [round((v + 0.5) * upscale, 1) for v in (x0, y0, x1, y1)]
        lms = [
            [round((float(x) + 0.5) * upscale, 1), round((float(y) + 0.5) * upscale, 1)]
            for x, y in np.asarray(f.landmarks, np.float64).reshape(-1, 2)
        ]
        return {
            "box": box,
            "landmarks": lms,
            "score": round(float(f.score), 3),
            "size": round(float(f.size), 1),
            "restored": restored,
            "skipped": None if restored else why(f),
        }

    return [one(f, True) for f in faces] + [one(f, False) for f in skipped]
