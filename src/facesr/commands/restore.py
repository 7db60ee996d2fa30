"""``facesr restore``: restore the faces in whole photos and videos (detect, align, restore, paste back).

For each photo: find the faces and their landmarks (dlib, the ``faces`` extra), cut each
face out aligned to the FFHQ template at the model's input size, restore it, and paste
it back with a feathered mask over the photo upscaled by ``--upscale`` (1, 2 or 4) with
``--bg`` (bicubic by default).  Outputs are 8-bit PNGs ``<stem>.png`` in ``--out``
(RGBA when the input has alpha).  Inputs are read as ``facesr predict`` reads them (EXIF
rotation, 16-bit, gray, alpha), after a check of the pixel count in the file header.
Unreadable or too large photos are skipped and listed at the end (exit status 1); the
output folder checks (not an input folder, no overwriting without ``--overwrite``) run
before anything is loaded, and every file is written atomically.

Videos (``.mp4``, ``.mov``, ``.mkv``, ``.webm``, ``.avi``, ...; the ``video`` extra, PyAV) come out
as ``<stem>.mp4`` (``.mov``/``.mkv`` for those inputs, ``.mkv`` for other containers) with the same
frame rate, frame count and audio (copied, not re-encoded), H.264 at ``--crf``; faces are
detected in every frame, followed and smoothed over time, and restored in batches
(:mod:`facesr.video`).  ``--start``/``--duration``/``--max-frames`` restore a part first.

Why a separate command and not ``predict --faces``: ``predict`` maps each image to the
model's own x4 output pixel for pixel (the challenge layout, tiling that equals an
untiled run, ``--zip``), and its outputs are always x4.  ``restore`` composes a new photo
at a chosen scale from a classical upscale and the restored faces, needs the ``faces``
extra, and has options (detector, background, minimum face size, saved crops) that mean
nothing to ``predict``.  Keeping them apart keeps ``predict``'s contract exact.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..io.guard import WriteGuard
from . import add_max_pixels_option, add_model_options, check_outputs, load_restorer, max_pixels_arg, report_skipped

NAME = "restore"
#: --detector choices (facesr.faces.detect.load_detector names), spelled out so --help does not import dlib
DETECTOR_CHOICES = ("hog", "hog-upright", "cnn")


def add_parser(subparsers) -> None:
    """Register ``facesr restore`` and its arguments."""
    p = subparsers.add_parser(
        NAME,
        help="restore the faces in whole photos and videos (detect, align, restore, paste back)",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
    )
    p.add_argument("inputs", nargs="+", metavar="PHOTO_OR_VIDEO", help="photo or video files, folders or glob patterns")
    p.add_argument("--out", required=True, help="output folder (never an input folder)")
    p.add_argument(
        "--upscale", type=int, choices=[1, 2, 4], default=2, help="output size = photo size x this (default 2)"
    )
    p.add_argument(
        "--bg",
        choices=["bicubic", "lanczos", "model"],
        default="bicubic",
        help="how the rest of the photo is upscaled (default bicubic; 'model' runs the face model "
        "over every pixel, slow on a CPU)",
    )
    p.add_argument(
        "--detector",
        choices=list(DETECTOR_CHOICES),
        default="hog",
        help="dlib detector: hog (default: the photo and copies rotated by +-30 degrees, for tilted "
        "heads), hog-upright (the photo only, ~4x faster, misses heads tilted past ~20 degrees) "
        "or cnn (more poses; its search takes 60-100x the CPU time of one hog pass)",
    )
    p.add_argument(
        "--min-face",
        type=float,
        default=32,
        metavar="PX",
        help="faces narrower than PX photo pixels are left as background and counted (default 32)",
    )
    p.add_argument(
        "--max-faces",
        type=int,
        default=32,
        metavar="N",
        help="restore at most the N largest faces of a photo; the others stay as background and are counted "
        "(default 32)",
    )
    p.add_argument(
        "--save-faces",
        action="store_true",
        help="also write <stem>_faces/: aligned model inputs, restored faces and faces.json "
        "(boxes, landmarks, scores, transforms)",
    )
    add_model_options(p)
    add_max_pixels_option(p, None, "48 for photos, 8.3 (3840x2160) for video frames")
    v = p.add_argument_group("videos")
    v.add_argument("--start", type=float, default=0.0, metavar="SEC", help="restore from this time on (default 0)")
    v.add_argument("--duration", type=float, default=None, metavar="SEC", help="restore this many seconds")
    v.add_argument(
        "--max-frames",
        type=int,
        default=None,
        metavar="N",
        help="restore only the first N frames (of --start/--duration): try a few seconds first",
    )
    v.add_argument(
        "--frame-cap",
        type=int,
        default=None,
        metavar="N",
        help="skip videos with more than N frames to restore (default 54000, 30 min at 30 fps)",
    )
    v.add_argument("--crf", type=int, default=18, metavar="Q", help="H.264 quality, 0 (lossless) .. 51 (default 18)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def run(a) -> int:
    """Run ``facesr restore`` with parsed arguments ``a``; exit status 0, or 1 if inputs were skipped."""
    from ..faces.detect import load_detector

    _check_args(a)
    out = Path(a.out)
    photos, videos = split_inputs(a.inputs)
    mapping = check_outputs(a, photos, out)
    video_map = _video_outputs(a, videos, out)
    face_dirs = {f: out / f"{f.stem}_faces" for f in photos} if a.save_faces else {}
    guard = WriteGuard().protect([*photos, *videos], "input")
    for d in face_dirs.values():  # --save-faces never writes into a folder that holds an input, --overwrite or not
        guard.check_tree(d, "write --save-faces crops into")
    if not a.overwrite:
        from ..errors import FacesrError

        clashes = [str(d) for d in face_dirs.values() if os.path.lexists(d)]
        if clashes:
            raise FacesrError(
                f"{len(clashes)} output folder(s) exist (use --overwrite to replace): {', '.join(clashes[:5])}"
            )
    if videos:
        from ..video.io import import_av

        import_av()  # fails fast, in one line, without the 'video' extra
    detector = load_detector(a.detector)  # fails fast, in one line, without the 'faces' extra
    restorer = load_restorer(a)
    out.mkdir(parents=True, exist_ok=True)

    skipped: list[str] = []
    if photos:
        _restore_photos(a, photos, mapping, face_dirs, detector, restorer, skipped)
    if videos:
        _restore_videos(a, video_map, detector, restorer, skipped)
    return report_skipped(NAME, "input(s)" if videos and photos else "video(s)" if videos else "photo(s)", skipped)


def _check_args(a) -> None:
    """One-line errors for option values out of range."""
    from ..errors import FacesrError

    if a.min_face < 0:
        raise FacesrError(f"--min-face must be >= 0, got {a.min_face}")
    if not 1 <= a.max_faces <= 10_000:
        raise FacesrError(f"--max-faces must be in 1..10000, got {a.max_faces}")
    a.max_pixels = max_pixels_arg(a)  # pixels (or None) from here on
    if a.start < 0 or (a.duration is not None and a.duration <= 0):
        raise FacesrError(f"--start must be >= 0 and --duration > 0, got {a.start} and {a.duration}")
    for flag, value in (("--max-frames", a.max_frames), ("--frame-cap", a.frame_cap)):
        if value is not None and value < 1:
            raise FacesrError(f"{flag} must be >= 1, got {value}")
    if not 0 <= a.crf <= 51:
        raise FacesrError(f"--crf must be 0..51, got {a.crf}")


def split_inputs(inputs: list[str]) -> tuple[list[Path], list[Path]]:
    """(photos, videos) named by ``inputs``: files by extension (videos: :data:`facesr.video.VIDEO_EXTS`, anything
    else is a photo), folders and glob patterns -> their image and video files (sorted); duplicates dropped."""
    import glob
    import os

    from ..errors import FacesrError
    from ..io.files import IMAGE_EXTS, expand_inputs, not_an_input, real
    from ..video.io import VIDEO_EXTS

    photos: list[Path] = []
    videos: list[Path] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_file():
            (videos if p.suffix.lower() in VIDEO_EXTS else photos).append(p)
            continue
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in VIDEO_EXTS | IMAGE_EXTS)
        elif set("*?[") & set(spec):
            found = sorted(Path(q) for q in glob.glob(spec) if Path(q).suffix.lower() in VIDEO_EXTS | IMAGE_EXTS)
        else:
            raise FacesrError(f"{spec}: {not_an_input(spec)}")
        vids = [q for q in found if q.suffix.lower() in VIDEO_EXTS and os.path.isfile(q)]
        has_images = any(q.suffix.lower() in IMAGE_EXTS for q in found)
        if not vids and not has_images:
            raise FacesrError(f"{spec}: {'folder holds' if p.is_dir() else 'pattern matches'} no images or videos")
        if has_images:
            photos.extend(expand_inputs([spec]))
        videos.extend(vids)
    seen: set = set()
    unique: tuple[list[Path], list[Path]] = ([], [])
    for kind, files in enumerate((photos, videos)):
        for f in files:
            if real(f) not in seen:
                seen.add(real(f))
                unique[kind].append(f)
    return unique


def _video_outputs(a, videos: list[Path], out: Path) -> dict[Path, Path]:
    """``{video: out/<stem>.mp4 (.mov, .mkv)}``, refusing two videos with one output name, a video inside
    the output folder, and existing outputs without ``--overwrite``."""
    from ..errors import FacesrError
    from ..io.files import first, real
    from ..video.io import output_name

    mapping = {f: out / output_name(f) for f in videos}
    names: dict[Path, Path] = {}
    for f, o in mapping.items():
        if o in names:
            raise FacesrError(f"videos {names[o].name} and {f.name} would both be written to {o}")
        names[o] = f
    inside = [str(f) for f in videos if real(f).parent == real(out)]
    if inside:
        raise FacesrError(f"output folder {out} holds input file(s) {first(inside, 3)}; choose another folder")
    if not a.overwrite:
        clashes = [str(o) for o in mapping.values() if os.path.lexists(o)]
        if clashes:
            raise FacesrError(f"{len(clashes)} output(s) exist: {first(clashes)} (use --overwrite to replace)")
    return mapping


def _restore_photos(
    a, files: list[Path], mapping: dict, face_dirs: dict, detector, restorer, skipped: list[str]
) -> None:
    """Restore each photo of ``files`` into ``mapping[photo]`` (the photo half of :func:`run`)."""
    import numpy as np

    from ..errors import FacesrError, one_line
    from ..faces.photo import DEFAULT_MAX_PIXELS, read_photo, restore_photo
    from ..io.files import atomic_write_bytes
    from ..io.images import encode_png
    from ..io.progress import progress

    max_pixels = DEFAULT_MAX_PIXELS if a.max_pixels is None else a.max_pixels
    n_written = n_faces = n_small = 0
    no_face: list[str] = []
    with progress(len(files), f"facesr {NAME}", "photo") as bar:
        for f in files:
            try:
                rgb, alpha = read_photo(f, max_pixels=max_pixels)
                img = rgb if alpha is None else np.dstack([rgb, alpha])
                res = restore_photo(
                    restorer,
                    img,
                    detector=detector,
                    upscale=a.upscale,
                    background=a.bg,
                    min_face=a.min_face,
                    keep_crops=a.save_faces,
                    max_faces=a.max_faces,
                )
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
                bar.write(
                    f"facesr {NAME}: note: {f}: no face restored"
                    f"{f' ({len(res.skipped)} too small)' if res.skipped else ''}; "
                    f"wrote a plain {a.bg} upscale"
                )
            if res.over_cap:
                bar.write(
                    f"facesr {NAME}: note: {f}: restored the {len(res.faces)} largest faces; "
                    f"{len(res.over_cap)} more left as background (--max-faces {a.max_faces})"
                )
            bar.set_postfix_str(f"faces={n_faces}")
            bar.update(1)

    msg = f"wrote {n_written} photo(s) to {a.out}: {n_faces} face(s) restored"
    if n_small:
        msg += f", {n_small} face(s) narrower than {a.min_face:g} px left as background"
    if no_face:
        msg += f", {len(no_face)} photo(s) without a face (plain upscale)"
    print(msg)


def _restore_videos(a, mapping: dict[Path, Path], detector, restorer, skipped: list[str]) -> None:
    """Restore each video into ``mapping[video]`` with a progress bar per pass (the video half of :func:`run`)."""
    from ..errors import FacesrError, one_line
    from ..video import DEFAULT_FRAME_CAP, DEFAULT_MAX_PIXELS, restore_video

    if a.save_faces:
        print(f"facesr {NAME}: note: --save-faces applies to photos; videos are written without it", file=sys.stderr)
    n_written = 0
    for f, o in mapping.items():
        progress = _VideoBars(f.name)
        try:
            res = restore_video(
                f,
                o,
                restorer=restorer,
                detector=detector,
                upscale=a.upscale,
                background=a.bg,
                min_face=a.min_face,
                start=a.start,
                duration=a.duration,
                max_frames=a.max_frames,
                max_pixels=DEFAULT_MAX_PIXELS if a.max_pixels is None else (a.max_pixels or None),
                frame_cap=DEFAULT_FRAME_CAP if a.frame_cap is None else a.frame_cap,
                crf=a.crf,
                progress=progress,
            )
        except FacesrError as exc:
            skipped.append(one_line(exc))
            continue
        finally:
            progress.close()
        n_written += 1
        audio = f"{res.audio_streams} audio stream(s) copied" if res.audio_streams else "no audio"
        faces = (
            f"{res.tracks} face(s) restored in {res.face_frames} face-frames"
            if res.face_frames
            else f"no face restored; wrote a plain {a.bg} upscale"
        )
        print(
            f"{o}: {res.frames} frames at {float(res.fps):.3f} fps, {res.width}x{res.height}, {faces}, {audio} "
            f"({res.seconds:.1f} s)"
        )
        if not res.face_frames:
            print(
                f"facesr {NAME}: note: {f}: no face restored"
                f"{f' ({res.small} face-frames too small)' if res.small else ''}",
                file=sys.stderr,
            )
    print(f"wrote {n_written} video(s) to {a.out}")


class _VideoBars:
    """``progress(stage, done, total)`` for :func:`facesr.video.restore_video`: one progress bar (or plain log lines) per stage
    (frames done, frames per second, ETA when the frame count is known)."""

    def __init__(self, name: str):
        self.name = name
        self.bar: Any = None
        self.stage: str | None = None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        from ..io.progress import progress

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = progress(total, f"{self.name}: {stage}", "frame")
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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
        "photo": str(photo),
        "width": int(shape[1]),
        "height": int(shape[0]),
        "upscale": res.upscale,
        "background": a.bg,
        "detector": f"dlib-{a.detector}",
        "min_face": a.min_face,
        "coordinates": "input-photo pixels, pixel-centre convention (pixel i spans i-0.5..i+0.5); "
        "box = (x0, y0, x1, y1) edges; affine_to_aligned_512 maps photo (x, y, 1) to the "
        "512x512 FFHQ-aligned face",
        "landmark_order": ["right_eye_outer", "right_eye_inner", "left_eye_outer", "left_eye_inner", "nose_base"],
        "faces": records,
        "skipped_small": [s.to_dict() for s in res.skipped],
    }
    atomic_write_bytes(folder / "faces.json", (json.dumps(doc, indent=1) + "\n").encode())
