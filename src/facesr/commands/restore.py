"""``facesr restore``: restore the faces in whole photos (detect, align, restore, paste back).

For each photo: find the faces and their landmarks (dlib, the ``faces`` extra), cut each
face out aligned to the FFHQ template at the model's input size, restore it, and paste
it back with a feathered mask over the photo upscaled by ``--upscale`` (1, 2 or 4) with
``--bg`` (bicubic by default).  Outputs are 8-bit PNGs ``<stem>.png`` in ``--out``
(RGBA when the input has alpha).  Inputs are read as ``facesr predict`` reads them (EXIF
rotation, 16-bit, gray, alpha), after a check of the pixel count in the file header.
Unreadable or too large photos are skipped and listed at the end (exit status 1); the
output folder checks (not an input folder, no overwriting without ``--overwrite``) run
before anything is loaded, and every file is written atomically.

Why a separate command and not ``predict --faces``: ``predict`` maps each image to the
model's own x4 output pixel for pixel (the challenge layout, tiling that equals an
untiled run, ``--zip``), and its outputs are always x4.  ``restore`` composes a new photo
at a chosen scale from a classical upscale and the restored faces, needs the ``faces``
extra, and has options (detector, background, minimum face size, saved crops) that mean
nothing to ``predict``.  Keeping them apart keeps ``predict``'s contract exact.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import add_model_options, check_outputs, load_restorer, report_skipped

NAME = "restore"


def add_parser(subparsers) -> None:
    """Register ``facesr restore`` and its arguments."""
    p = subparsers.add_parser(NAME, help="restore the faces in whole photos (detect, align, restore, paste back)",
                              description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("inputs", nargs="+", metavar="PHOTO", help="photo files, folders or glob patterns")
    p.add_argument("--out", required=True, help="output folder (never an input folder)")
    p.add_argument("--upscale", type=int, choices=[1, 2, 4], default=2,
                   help="output size = photo size x this (default 2)")
    p.add_argument("--bg", choices=["bicubic", "lanczos", "model"], default="bicubic",
                   help="how the rest of the photo is upscaled (default bicubic; 'model' runs the face model "
                        "over every pixel, slow on a CPU)")
    p.add_argument("--detector", choices=["hog", "cnn"], default="hog",
                   help="dlib detector: hog (default, fast, frontal faces) or cnn (more poses; its search takes "
                        "60-100x the CPU time of hog's)")
    p.add_argument("--min-face", type=float, default=32, metavar="PX",
                   help="faces narrower than PX photo pixels are left as background and counted (default 32)")
    p.add_argument("--save-faces", action="store_true",
                   help="also write <stem>_faces/: aligned model inputs, restored faces and faces.json "
                        "(boxes, landmarks, scores, transforms)")
    add_model_options(p)
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="skip photos with more than N pixels, checked before decoding (default 48000000)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def run(a) -> int:
    """Run ``facesr restore`` with parsed arguments ``a``; exit status 0, or 1 if photos were skipped."""
    import numpy as np
    from tqdm import tqdm

    from ..errors import FacesrError, one_line
    from ..faces.detect import load_detector
    from ..faces.photo import DEFAULT_MAX_PIXELS, read_photo, restore_photo
    from ..io.files import atomic_write_bytes, expand_inputs
    from ..io.images import encode_png

    if a.min_face < 0:
        raise FacesrError(f"--min-face must be >= 0, got {a.min_face}")
    max_pixels = DEFAULT_MAX_PIXELS if a.max_pixels is None else a.max_pixels
    if max_pixels < 1:
        raise FacesrError(f"--max-pixels must be >= 1, got {max_pixels}")
    out = Path(a.out)
    files = expand_inputs(a.inputs)
    mapping = check_outputs(a, files, out)
    face_dirs = {f: out / f"{f.stem}_faces" for f in files} if a.save_faces else {}
    if not a.overwrite:
        clashes = [str(d) for d in face_dirs.values() if d.exists()]
        if clashes:
            raise FacesrError(f"{len(clashes)} output folder(s) exist (use --overwrite to replace): "
                              f"{', '.join(clashes[:5])}")

    detector = load_detector(a.detector)  # fails fast, in one line, without the 'faces' extra
    restorer = load_restorer(a)
    out.mkdir(parents=True, exist_ok=True)

    skipped: list[str] = []
    n_written = n_faces = n_small = 0
    no_face: list[str] = []
    with tqdm(total=len(files), unit="photo", desc=f"facesr {NAME}", file=sys.stderr, disable=None,
              dynamic_ncols=True) as bar:
        for f in files:
            try:
                rgb, alpha = read_photo(f, max_pixels=max_pixels)
                img = rgb if alpha is None else np.dstack([rgb, alpha])
                res = restore_photo(restorer, img, detector=detector, upscale=a.upscale, background=a.bg,
                                    min_face=a.min_face, keep_crops=a.save_faces)
            except FacesrError as exc:
                skipped.append(one_line(exc))
                bar.update(1)
                continue
            atomic_write_bytes(mapping[f], encode_png(res.image))
            if a.save_faces:
                _save_faces(face_dirs[f], f, rgb.shape, res, a, atomic_write_bytes, encode_png)
            n_written += 1
            n_faces += len(res.faces)
            n_small += len(res.skipped)
            if not res.faces:
                no_face.append(f.name)
                tqdm.write(f"facesr {NAME}: note: {f}: no face restored"
                           f"{f' ({len(res.skipped)} too small)' if res.skipped else ''}; "
                           f"wrote a plain {a.bg} upscale", file=sys.stderr)
            bar.set_postfix(faces=n_faces, refresh=False)
            bar.update(1)

    msg = f"wrote {n_written} photo(s) to {out}: {n_faces} face(s) restored"
    if n_small:
        msg += f", {n_small} face(s) narrower than {a.min_face:g} px left as background"
    if no_face:
        msg += f", {len(no_face)} photo(s) without a face (plain upscale)"
    print(msg)
    return report_skipped(NAME, "photo(s)", skipped)


def _save_faces(folder: Path, photo: Path, shape, res, a, atomic_write_bytes, encode_png) -> None:
    """Write aligned inputs, restored faces and faces.json for one photo into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (face, (lq, sr)) in enumerate(zip(res.faces, res.crops)):
        names = {"input": f"face{i:02d}_input.png", "restored": f"face{i:02d}_restored.png"}
        atomic_write_bytes(folder / names["input"], encode_png(lq))
        atomic_write_bytes(folder / names["restored"], encode_png(sr))
        records.append({"index": i, **face.to_dict(), "files": names})
    doc = {
        "photo": str(photo), "width": int(shape[1]), "height": int(shape[0]), "upscale": res.upscale,
        "background": a.bg, "detector": f"dlib-{a.detector}", "min_face": a.min_face,
        "coordinates": "input-photo pixels, pixel-centre convention (pixel i spans i-0.5..i+0.5); "
                       "box = (x0, y0, x1, y1) edges; affine_to_aligned_512 maps photo (x, y, 1) to the "
                       "512x512 FFHQ-aligned face",
        "landmark_order": ["right_eye_outer", "right_eye_inner", "left_eye_outer", "left_eye_inner", "nose_base"],
        "faces": records,
        "skipped_small": [s.to_dict() for s in res.skipped],
    }
    atomic_write_bytes(folder / "faces.json", (json.dumps(doc, indent=1) + "\n").encode())
