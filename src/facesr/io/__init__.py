"""Reading and writing: images (:mod:`.images`) and files and folders (:mod:`.files`).

Images are uint8 RGB, 0-255, HxWx3 everywhere in facesr.
"""

from .files import (
    IMAGE_EXTS,
    OutputsExistError,
    atomic_write_bytes,
    check_outputs,
    expand_inputs,
    first,
    images_by_stem,
    list_images,
    same_dir,
    write_zip,
)
from .images import CLASSICAL, encode_png, pil_to_rgb, read_any, read_rgb, upscale_classical, write_png

__all__ = [
    "IMAGE_EXTS",
    "OutputsExistError",
    "atomic_write_bytes",
    "check_outputs",
    "expand_inputs",
    "first",
    "images_by_stem",
    "list_images",
    "same_dir",
    "write_zip",
    "CLASSICAL",
    "encode_png",
    "pil_to_rgb",
    "read_any",
    "read_rgb",
    "upscale_classical",
    "write_png",
]
