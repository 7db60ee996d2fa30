"""``facesr predict``: restore files, folders or glob patterns into a folder of x4 PNGs.

Outputs are 8-bit PNGs named ``<stem>.png``: RGB for RGB, gray and 16-bit inputs,
RGBA (alpha upscaled bicubically) for inputs with transparency.  Inputs are read
with :func:`facesr.io.read_any` (EXIF rotation applied, 16-bit scaled to
8-bit).  All checks that can fail (output inside an input folder, clashing
stems, existing outputs) run before the model is loaded.  Unreadable files are
skipped, listed on stderr at the end, and make the exit status 1.

Under ``torchrun --nproc_per_node=N -m facesr.cli predict ...`` the sorted inputs
are sharded by rank (rank r restores inputs r, r+N, ...) on ``cuda:LOCAL_RANK``
(NCCL) or on CPU processes (gloo); every rank writes its own outputs, and after a
barrier rank 0 writes the zip and reports the skipped files of all ranks.
``--skip-existing`` leaves outputs that are already there alone, so a preempted
or interrupted run can be restarted and only does what is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import (
    add_backend_options,
    add_max_pixels_option,
    add_model_options,
    check_backend_args,
    check_outputs,
    load_restorer,
    max_pixels_arg,
    report_skipped,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="restore images (x4); default model is the shipped one")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or glob patterns")
    p.add_argument("--out", required=True, help="output folder")
    add_model_options(p)
    p.add_argument("--zip", help="also write a flat zip of the outputs (challenge layout)")
    p.add_argument(
        "--tile",
        type=int,
        default=0,
        help="LQ tile size for big images (0 = auto / no tiling; at least half the model's receptive field, 14 for the shipped model)",
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=None,
        help="LQ context pixels around each tile (default: the model's receptive field, exact)",
    )
    p.add_argument("--batch-size", type=int, default=4)
    add_backend_options(p)
    p.add_argument(
        "--tta",
        choices=["none", "flip"],
        default="none",
        help="flip: average with the prediction of the mirrored input (2x the compute)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_max_pixels_option(p)
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave outputs that already exist and restore only the missing ones (restart a job); "
        "the zip is rebuilt from all outputs",
    )
    p.set_defaults(func=run)


def _check_args(a) -> None:
    from ..errors import FacesrError

    if a.tile < 0:
        raise FacesrError(f"--tile must be >= 0, got {a.tile}")
    if a.tile_overlap is not None and a.tile_overlap < 0:
        raise FacesrError(f"--tile-overlap must be >= 0, got {a.tile_overlap}")
    a.max_pixels = max_pixels_arg(a)
    if a.batch_size < 1:
        raise FacesrError(f"--batch-size must be >= 1, got {a.batch_size}")
    check_backend_args(a)
    if a.overwrite and a.skip_existing:
        raise FacesrError("give --overwrite or --skip-existing, not both")


def _make_restorer(a, device=None):
    return load_restorer(a, device=device, tile=a.tile, tile_overlap=a.tile_overlap, batch_size=a.batch_size, tta=a.tta)


def _distributed(a):
    """(DistInfo, device or None): a process group under torchrun (one rank per GPU or CPU process)."""
    import os

    from ..devices import resolve_device
    from ..distributed import DistInfo, init_distributed

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return DistInfo(), None
    dev_type = "cpu" if a.backend != "torch" else resolve_device(a.device, option="--device").type
    if dev_type not in ("cpu", "cuda"):
        dev_type = "cpu"
    info = init_distributed(dev_type)
    return info, (f"cuda:{info.local_rank}" if dev_type == "cuda" else None)


def run(a) -> int:
    """Run ``facesr predict`` with parsed arguments ``a``; returns the exit status (0, or 1 if files were skipped)."""
    from ..distributed import cleanup
    from ..io.files import expand_inputs

    _check_args(a)
    files = expand_inputs(a.inputs)
    out = Path(a.out)
    zip_path = Path(a.zip) if a.zip else None
    mapping = check_outputs(a, files, out, zip_path)

    info, device = _distributed(a)
    try:
        return _predict(a, files, out, zip_path, mapping, info, device)
    finally:
        cleanup(info)


def _decoded(files, max_pixels: int, skipped: list[str], bar):
    """``(file, uint8 image HxWx3 or HxWx4)`` for each readable file, in order; unreadable or over-cap ones go to
    ``skipped`` (one line each) and still count on ``bar``."""
    import numpy as np

    from ..errors import ImageError, one_line
    from ..io.images import read_any, warn_large_input

    for f in files:
        try:
            rgb, alpha = read_any(f, max_pixels=max_pixels)
        except ImageError as exc:
            skipped.append(one_line(exc))
            bar.update(1)
            continue
        warn_large_input(f, rgb.shape, "predict")
        yield f, (rgb if alpha is None else np.dstack([rgb, alpha]))


def _complete_png(path: Path) -> bool:
    """True for a whole, valid PNG at ``path`` (what --skip-existing keeps); an empty, truncated or foreign
    file there is restored again, with a note."""
    from PIL import Image

    if not path.exists():
        return False
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise OSError("not a PNG")
            im.load()  # decodes every chunk: a truncated file fails here
        return True
    except Exception as exc:
        print(
            f"facesr predict: note: {path} exists but is not a complete PNG ({type(exc).__name__}); restoring it again",
            file=sys.stderr,
        )
        return False


def _predict(a, files, out, zip_path, mapping, info, device) -> int:
    from ..batching import same_size_batches
    from ..distributed import barrier, gather_objects
    from ..io.files import atomic_write_bytes, write_zip
    from ..io.images import encode_png
    from ..io.progress import progress

    if info.enabled:  # rank r restores inputs r, r+N, ... of the sorted list
        files = sorted(files, key=str)[info.rank :: info.world_size]
    # --skip-existing: complete outputs already there are left as they are (an empty or truncated one is
    # restored again).  Checked after sharding, so the shards never depend on what other ranks write meanwhile.
    present: list[Path] = []
    if a.skip_existing:
        complete = {f for f in files if _complete_png(mapping[f])}
        present = [mapping[f] for f in files if f in complete]
        files = [f for f in files if f not in complete]

    restorer = _make_restorer(a, device=device)
    out.mkdir(parents=True, exist_ok=True)

    skipped: list[str] = []
    written: list[Path] = []
    desc = f"facesr predict [rank {info.rank}/{info.world_size}]" if info.enabled else "facesr predict"
    with progress(len(files), desc, "img", quiet=not info.is_main) as bar:
        images = _decoded(files, a.max_pixels, skipped, bar)
        # consecutive same-size images share forward passes; the files are read as they are needed
        for batch in same_size_batches(images, lambda fi: fi[1].shape[:2], a.batch_size, restorer.MAX_BATCH_PIXELS):
            for (f, _), sr in zip(batch, restorer.restore_batch([img for _, img in batch])):
                atomic_write_bytes(mapping[f], encode_png(sr))
                written.append(mapping[f])
                bar.update(1)

    barrier(info)  # every rank's outputs are on disk before the zip is made
    per_rank = gather_objects(info, ([str(p) for p in written], [str(p) for p in present], skipped))
    written = [Path(p) for w, _, _ in per_rank for p in w]
    present = [Path(p) for _, e, _ in per_rank for p in e]
    skipped = [m for _, _, s in per_rank for m in s]
    if not info.is_main:
        return 1 if skipped else 0
    members = written + present
    if zip_path is not None and members:
        write_zip(zip_path, sorted(members, key=lambda p: p.name))
    msg = f"wrote {len(written)} image(s) to {out}"
    if info.enabled:
        msg += f" ({info.world_size} processes)"
    if present:
        msg += f"; kept {len(present)} existing"
    if zip_path is not None:
        msg += f" and {zip_path}" if members else f" (no zip written: nothing to put in {zip_path})"
    print(msg)
    return report_skipped("predict", "file(s) (unreadable, or over the --max-pixels cap)", skipped)
