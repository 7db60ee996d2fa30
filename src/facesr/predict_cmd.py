"""``facesr predict``: restore files, folders or glob patterns into a folder of x4 PNGs.

Outputs are 8-bit PNGs named ``<stem>.png``: RGB for RGB, gray and 16-bit inputs,
RGBA (alpha upscaled bicubically) for inputs with transparency.  Inputs are read
with :func:`facesr.imageio.read_any` (EXIF rotation applied, 16-bit scaled to
8-bit).  All checks that can fail (output inside an input folder, clashing
stems, existing outputs) run before the model is loaded.  Unreadable files are
skipped, listed on stderr at the end, and make the exit status 1.
"""
from __future__ import annotations

import glob
import os
import sys
import zipfile
from pathlib import Path

from .cli import UserError, report_skipped
from .imageio import IMAGE_EXTS, ImageError, atomic_write_bytes, encode_png, read_any

_GLOB_CHARS = set("*?[")


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, folders -> their image files (sorted), globs -> matching image files (sorted).

    Duplicates (same resolved path) are dropped; order is kept.  A name that is neither
    an existing path nor a pattern with matches raises UserError.
    """
    files: list[Path] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise UserError(f"{spec}: folder holds no images ({', '.join(sorted(IMAGE_EXTS))})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif _GLOB_CHARS & set(spec):
            found = sorted(Path(q) for q in glob.glob(spec)
                           if os.path.isfile(q) and Path(q).suffix.lower() in IMAGE_EXTS)
            if not found:
                raise UserError(f"{spec}: pattern matches no image files")
            files.extend(found)
        else:
            raise UserError(f"{spec}: no such file or folder")
    seen, unique = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _first(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def check_outputs(files: list[Path], inputs: list[str], out: Path, zip_path: Path | None,
                  overwrite: bool) -> dict[Path, Path]:
    """Map each input to its output path, refusing unsafe layouts (UserError, one line).

    Refuses: two inputs with the same stem; ``out`` equal to an input folder or holding an
    input file; ``--zip`` equal to an input; existing outputs without ``overwrite``.
    """
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem, []).append(f)
    dup = [f"{s} ({', '.join(p.name for p in ps)})" for s, ps in by_stem.items() if len(ps) > 1]
    if dup:
        raise UserError(f"inputs share a stem, so their outputs would collide: {_first(dup, 3)}")
    out_r = out.resolve()
    for spec in inputs:
        if Path(spec).is_dir() and Path(spec).resolve() == out_r:
            raise UserError(f"--out {out} is the input folder {spec}; choose another folder")
    inside = [str(f) for f in files if f.resolve().parent == out_r]
    if inside:
        raise UserError(f"--out {out} holds input file(s) {_first(inside, 3)}; choose another folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    mapping = {f: out / f"{f.stem}.png" for f in files}
    resolved_inputs = {f.resolve() for f in files}
    if zip_path is not None:
        if zip_path.resolve() in resolved_inputs:
            raise UserError(f"--zip {zip_path} is one of the inputs")
        if zip_path.is_dir():
            raise UserError(f"--zip {zip_path} is a folder; give a file name")
        if zip_path.exists() and not overwrite:
            raise UserError(f"--zip {zip_path} exists (use --overwrite to replace it)")
        if not zip_path.parent.is_dir():
            raise UserError(f"--zip {zip_path}: folder {zip_path.parent} does not exist")
    if not overwrite:
        clashes = [str(o) for o in mapping.values() if o.exists()]
        if clashes:
            raise UserError(f"{len(clashes)} output(s) exist (use --overwrite to replace): {_first(clashes)}")
    return mapping


def _make_restorer(a):
    from .inference import Restorer, resolve_device
    kw = dict(tile=a.tile, tile_overlap=a.tile_overlap, batch_size=a.batch_size)
    if a.backend == "onnxruntime":
        if a.onnx and a.checkpoint:
            raise UserError("give --checkpoint or --onnx, not both")
        if a.amp:
            raise UserError("--amp applies to --backend torch only")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise UserError("--backend onnxruntime needs onnxruntime (pip install 'facesr[onnx]')") from None
        if a.onnx:
            return Restorer.from_onnx(a.onnx, **kw)
        return Restorer.from_checkpoint(a.checkpoint, ema=a.ema, backend="onnxruntime", **kw)
    if a.onnx:
        raise UserError("--onnx needs --backend onnxruntime")
    try:
        device = resolve_device(a.device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return Restorer.from_checkpoint(a.checkpoint, device=device, ema=a.ema, amp=a.amp, **kw)


def _load_restorer(a):
    from .models.weights import CheckpointError
    try:
        return _make_restorer(a)
    except (UserError, CheckpointError, ImageError):
        raise
    except ValueError as exc:  # unknown architecture, failed export, ...
        raise UserError(str(exc)) from None


def write_zip(zip_path: Path, members: list[Path]) -> None:
    """Atomically write a flat zip holding ``members`` under their bare file names (PNG: stored)."""
    tmp = zip_path.with_name(f".{zip_path.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for m in members:
                zf.write(m, arcname=m.name)
        os.replace(tmp, zip_path)
    finally:
        if tmp.exists():
            tmp.unlink()


def run_predict(a) -> int:
    """Run ``facesr predict`` with parsed arguments ``a``; returns the exit status (0, or 1 if files were skipped)."""
    from tqdm import tqdm

    if a.tile < 0:
        raise UserError(f"--tile must be >= 0, got {a.tile}")
    if a.tile_overlap is not None and a.tile_overlap < 0:
        raise UserError(f"--tile-overlap must be >= 0, got {a.tile_overlap}")
    if a.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {a.batch_size}")
    files = expand_inputs(a.inputs)
    out = Path(a.out)
    zip_path = Path(a.zip) if a.zip else None
    mapping = check_outputs(files, a.inputs, out, zip_path, a.overwrite)

    restorer = _load_restorer(a)
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
                rgb, alpha = read_any(f)
            except ImageError as exc:
                skipped.append(str(exc))
                bar.update(1)
                continue
            img = rgb if alpha is None else _rgba(rgb, alpha)
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
    return report_skipped("predict", "unreadable file(s)", [str(m) for m in skipped])


def _rgba(rgb, alpha):
    import numpy as np
    return np.concatenate([rgb, alpha[..., None]], axis=2)
