"""``facesr predict``: restore files, folders or glob patterns into a folder of x4 PNGs.

Outputs are 8-bit PNGs named ``<stem>.png``: RGB for RGB, gray and 16-bit inputs,
RGBA (alpha upscaled bicubically) for inputs with transparency.  Inputs are read
with :func:`facesr.io.read_any` (EXIF rotation applied, 16-bit scaled to
8-bit).  All checks that can fail (output inside an input folder, clashing
stems, existing outputs) run before the model is loaded.  Unreadable files are
skipped, listed on stderr at the end, and make the exit status 1.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import add_model_options, check_outputs, load_restorer, report_skipped


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="restore images (x4); default model is the shipped one")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or glob patterns")
    p.add_argument("--out", required=True, help="output folder")
    add_model_options(p)
    p.add_argument("--zip", help="also write a flat zip of the outputs (challenge layout)")
    p.add_argument("--tile", type=int, default=0, help="LQ tile size for big images (0 = auto / no tiling)")
    p.add_argument("--tile-overlap", type=int, default=None,
                   help="LQ context pixels around each tile (default: the model's receptive field, exact)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch")
    p.add_argument("--onnx", help="with --backend onnxruntime: the .onnx file (default: export the model on the fly)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--max-pixels", type=float, default=64, metavar="MPX",
                   help="skip inputs whose header announces more than MPX megapixels (default 64; 0 = no cap)")
    p.set_defaults(func=run)


def _check_args(a) -> None:
    from ..errors import FacesrError, MissingExtraError
    if a.tile < 0:
        raise FacesrError(f"--tile must be >= 0, got {a.tile}")
    if a.tile_overlap is not None and a.tile_overlap < 0:
        raise FacesrError(f"--tile-overlap must be >= 0, got {a.tile_overlap}")
    if not a.max_pixels >= 0:
        raise FacesrError(f"--max-pixels must be >= 0, got {a.max_pixels}")
    if a.batch_size < 1:
        raise FacesrError(f"--batch-size must be >= 1, got {a.batch_size}")
    if a.backend == "onnxruntime":
        if a.onnx and a.checkpoint:
            raise FacesrError("give --checkpoint or --onnx, not both")
        if a.amp:
            raise FacesrError("--amp applies to --backend torch only")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise MissingExtraError("onnx", "--backend onnxruntime") from None
    elif a.onnx:
        raise FacesrError("--onnx needs --backend onnxruntime")


def _make_restorer(a):
    from ..inference import Restorer
    kw = dict(tile=a.tile, tile_overlap=a.tile_overlap, batch_size=a.batch_size)
    if a.backend == "torch":
        return load_restorer(a, **kw)
    if a.onnx:
        return Restorer.from_onnx(a.onnx, **kw)
    return Restorer.from_checkpoint(a.checkpoint, ema=a.ema, backend="onnxruntime", **kw)


def run(a) -> int:
    """Run ``facesr predict`` with parsed arguments ``a``; returns the exit status (0, or 1 if files were skipped)."""
    import numpy as np
    from tqdm import tqdm

    from ..errors import ImageError, one_line
    from ..io.files import atomic_write_bytes, expand_inputs, write_zip
    from ..io.images import encode_png, read_any, warn_large_input

    _check_args(a)
    files = expand_inputs(a.inputs)
    out = Path(a.out)
    zip_path = Path(a.zip) if a.zip else None
    mapping = check_outputs(a, files, out, zip_path)

    restorer = _make_restorer(a)
    out.mkdir(parents=True, exist_ok=True)

    skipped: list[str] = []
    written: list[Path] = []
    pending: list[tuple[Path, object]] = []  # consecutive same-size images

    def flush():
        if not pending:
            return
        results = restorer.restore_batch([img for _, img in pending])
        for (f, _), sr in zip(pending, results):
            atomic_write_bytes(mapping[f], encode_png(sr))
            written.append(mapping[f])
            bar.update(1)
        pending.clear()

    with tqdm(total=len(files), unit="img", desc="facesr predict", file=sys.stderr, disable=None,
              dynamic_ncols=True) as bar:
        for f in files:
            try:
                rgb, alpha = read_any(f, max_pixels=int(a.max_pixels * 1e6))
            except ImageError as exc:
                skipped.append(one_line(exc))
                bar.update(1)
                continue
            warn_large_input(f, rgb.shape, "predict")
            img = rgb if alpha is None else np.dstack([rgb, alpha])
            if pending and (pending[0][1].shape[:2] != img.shape[:2] or len(pending) >= a.batch_size):
                flush()
            pending.append((f, img))
        flush()

    if zip_path is not None and written:
        write_zip(zip_path, sorted(written, key=lambda p: p.name))
    msg = f"wrote {len(written)} image(s) to {out}"
    if zip_path is not None:
        msg += f" and {zip_path}" if written else f" (no zip written: nothing to put in {zip_path})"
    print(msg)
    return report_skipped("predict", "unreadable file(s)", skipped)
