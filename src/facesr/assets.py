"""Files shipped inside the package: the sample face and the default model weights."""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from .errors import CheckpointError

SHIPPED_PACKAGE = "facesr"
SHIPPED_RELPATH = ("weights", "facesr_default.safetensors")


def _pkg_file(*parts: str) -> Path:
    # An editable or plain install keeps package data as real files.
    return Path(str(resources.files(SHIPPED_PACKAGE).joinpath(*parts)))


def sample_face_path() -> Path:
    """512x512 RGB PNG of a public-domain face (NASA portrait of Eileen Collins, see assets/README.md)."""
    return _pkg_file("assets", "astronaut_face.png")


def shipped_checkpoint() -> Path:
    """Path of the default model shipped inside the package; CheckpointError if none is installed."""
    path = _pkg_file(*SHIPPED_RELPATH)
    if not path.is_file():
        raise CheckpointError(
            f"no shipped model is installed ({'/'.join((SHIPPED_PACKAGE, *SHIPPED_RELPATH))} "
            f"is missing); give a checkpoint file"
        )
    return path


def builtin_faces_dir() -> Path:
    """A folder of 512x512 HQ faces made from the bundled sample face (flips, shifts and zooms).

    It is the fallback training/validation data of ``configs/quickstart.yaml``
    when ``../shared/data`` is absent.  Created once under the user cache dir.
    """
    from .io.images import read_rgb, write_png

    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facesr" / "builtin_faces_v1"
    if (root / "done").exists():
        return root
    tmp = Path(tempfile.mkdtemp(prefix="builtin_faces_", dir=_ensure(root.parent)))
    face = read_rgb(sample_face_path())
    variants = {"face_00": face, "face_01": face[:, ::-1]}
    for i, (zoom, dx, dy) in enumerate([(1.1, 0, 0), (1.2, 20, -10), (1.15, -25, 15), (1.3, 10, 25)], start=2):
        m = cv2.getRotationMatrix2D((256 + dx, 256 + dy), 0, zoom)
        v = cv2.warpAffine(face, m, (512, 512), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT_101)
        variants[f"face_{i:02d}"] = v if i % 2 == 0 else np.ascontiguousarray(v[:, ::-1])
    for name, img in variants.items():
        write_png(tmp / f"{name}.png", np.ascontiguousarray(img))
    (tmp / "done").write_text("ok\n")
    try:
        os.replace(tmp, root)
    except OSError:  # another process won the race
        pass
    return root


def _ensure(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
