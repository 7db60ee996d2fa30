"""Whole-photo face restoration: detection, FFHQ alignment, restoration and seamless paste-back.

``facesr.load().restore_photo(img)`` is the one-call entry point; the command is
``facesr restore``.  Detection needs the ``faces`` extra (``pip install "facesr[faces]"``:
dlib and the landmark model files of ``face-recognition-models``, all from PyPI, nothing
downloaded at run time); alignment and paste-back need only OpenCV and run without it.

Modules: :mod:`.detect` (faces and landmarks), :mod:`.align` (template, similarity
transforms, anti-aliased warps), :mod:`.paste` (feathered mask, compositing),
:mod:`.photo` (the pipeline, photo reading with a pixel cap).
"""

from .align import FFHQ_TEMPLATE_512, crop_face, estimate_alignment, template, warp_affine
from .detect import DETECTORS, DlibDetector, Face, load_detector
from .paste import face_mask, paste_face
from .photo import BACKGROUNDS, UPSCALES, PhotoResult, read_photo, restore_photo, upscale_background

__all__ = [
    "FFHQ_TEMPLATE_512",
    "crop_face",
    "estimate_alignment",
    "template",
    "warp_affine",
    "DETECTORS",
    "DlibDetector",
    "Face",
    "load_detector",
    "face_mask",
    "paste_face",
    "BACKGROUNDS",
    "UPSCALES",
    "PhotoResult",
    "read_photo",
    "restore_photo",
    "upscale_background",
]
