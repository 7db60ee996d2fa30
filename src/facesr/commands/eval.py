"""``facesr eval``: PSNR/SSIM of saved predictions, or of a model on LQ/GT pairs.

Two modes:

* ``facesr eval PRED_DIR GT_DIR`` scores image files against ground truth,
  matched by file stem.  Both are read as uint8 RGB (0-255).  Because PNG
  predictions are already uint8, the reference (MMagic) PSNR and the challenge
  PSNR coincide here (up to float32 vs float64 accumulation, ~1e-6 dB) unless
  ``--crop-border`` or ``--y`` is given: those options apply to the reference
  PSNR/SSIM only, the challenge PSNR is always full-image RGB.
* ``facesr eval --checkpoint P --lq DIR --gt DIR`` runs the model (the shipped
  one when ``--checkpoint`` is omitted) and reports both conventions: the
  reference PSNR/SSIM on the unrounded float prediction (0-255 scale, clamped)
  and the challenge PSNR on the prediction rounded to uint8, plus the bicubic
  x4 baseline (OpenCV INTER_CUBIC of the uint8 LQ) on the same pairs.

The scoring is :mod:`facesr.evaluation`.  PSNR is in dB; SSIM is in [-1, 1]
(1 = identical).  Identical images give a PSNR of +inf, written as ``Infinity``
in ``--json`` (Python's JSON dialect).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from . import (
    add_backend_options,
    add_max_pixels_option,
    add_precision_options,
    check_backend_args,
    load_restorer,
    max_pixels_arg,
    precision_arg,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="PSNR/SSIM of predictions (PRED_DIR GT_DIR) or of a checkpoint (--checkpoint --lq --gt)"
    )
    p.add_argument("pred_dir", nargs="?")
    p.add_argument("gt_dir", nargs="?")
    p.add_argument("--checkpoint", help="evaluate this model on --lq/--gt pairs (omit for the shipped model)")
    p.add_argument("--lq", help="LQ folder (with --checkpoint mode)")
    p.add_argument("--gt", help="GT folder (with --checkpoint mode)")
    p.add_argument("--save", help="also write the predictions (PNG) here")
    p.add_argument("--ema", action="store_true")
    p.add_argument("--device", default="auto")
    add_precision_options(p)
    add_backend_options(p)
    p.add_argument(
        "--tta",
        choices=["none", "flip"],
        default="none",
        help="flip: average with the prediction of the mirrored input (2x the compute)",
    )
    p.add_argument("--crop-border", type=int, default=0)
    add_max_pixels_option(p)
    p.add_argument("--y", action="store_true", help="score the BT.601 Y channel only")
    p.add_argument("--csv", help="write per-image rows to this CSV")
    p.add_argument("--json", help="write {mean, per_image} to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace existing --json/--csv files and --save images")
    p.set_defaults(func=run)


def _check_outputs(args, pairs, save_dir: Path | None = None) -> None:
    """Before any work: --json/--csv/--save never replace an input or GT file (nor each other), and replace
    existing files only with --overwrite."""
    from ..errors import FacesrError
    from ..io.files import first, real
    from . import check_output_file, model_files

    protected = [p for pair in pairs for p in pair] + model_files(args)  # the model file, in model mode
    outs: list[Path] = []
    if save_dir is not None:
        outs = [save_dir / f"{lq.stem}.png" for lq, _ in pairs]
        bad = [str(o) for o in outs if real(o) in {real(p) for p in protected}]
        if bad:
            raise FacesrError(f"--save would replace input or GT file(s): {first(bad, 3)}")
        there = [str(o) for o in outs if os.path.lexists(o)]
        if there and not args.overwrite:
            raise FacesrError(f"--save: {len(there)} image(s) exist: {first(there, 3)} (use --overwrite to replace)")
    for flag, val in (("--json", args.json), ("--csv", args.csv)):
        if val:
            outs.append(check_output_file(val, [*protected, *outs], args.overwrite, flag))


# ----------------------------------------------------------------------------- output


def _fmt(v: float, nd: int = 4) -> str:
    return "inf" if math.isinf(v) else f"{v:.{nd}f}"


def _json_safe(value):
    """``value`` with non-finite floats (PSNR of identical images is +inf) as null: strict JSON has no Infinity."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_json(path: str, payload: dict) -> None:
    """Strict JSON (non-finite numbers written as null, e.g. the infinite PSNR of a perfect prediction)."""
    import json

    from ..io.files import atomic_write_bytes

    text = json.dumps(_json_safe(payload), indent=2, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def _write_csv(path: str, per: dict, extra: dict | None = None) -> None:
    import csv
    import io

    from ..evaluation import KEYS
    from ..io.files import atomic_write_bytes, text_name

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    extra_cols = [f"bicubic_{k}" for k in KEYS] if extra else []
    w.writerow(["stem", *KEYS, *extra_cols])
    for stem, v in per.items():
        row = [text_name(stem), *(repr(float(v[k])) for k in KEYS)]  # UTF-8 text whatever the file name's bytes
        if extra:
            row += [repr(float(extra[stem][k])) for k in KEYS]
        w.writerow(row)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _print_table(res: dict, out=None) -> None:
    from ..errors import printable

    out = out or sys.stdout
    per = {printable(stem): v for stem, v in res["per_image"].items()}  # one row per image, whatever its name
    width = max([len("mean")] + [len(s) for s in per]) + 2
    print(f"{'image':<{width}}{'PSNR':>10}{'SSIM':>9}{'PSNR(challenge)':>17}", file=out)
    for stem, v in per.items():
        print(f"{stem:<{width}}{_fmt(v['psnr']):>10}{_fmt(v['ssim']):>9}{_fmt(v['psnr_challenge']):>17}", file=out)
    m = res["mean"]
    print(
        f"{'mean':<{width}}{_fmt(m['psnr']):>10}{_fmt(m['ssim']):>9}{_fmt(m['psnr_challenge']):>17}"
        f"   ({len(per)} images)",
        file=out,
    )


def _progress(total: int):
    from ..io.progress import progress

    return progress(total, "facesr eval", "img")


# ----------------------------------------------------------------------------- checkpoint mode


def _load(args):
    """(Restorer, description, precision in words) for ``--checkpoint`` or, without it, the shipped model."""
    from .. import assets
    from ..devices import resolve_device
    from ..inference import Restorer
    from ..models import load_model

    check_backend_args(args)
    if args.backend != "torch":
        restorer = load_restorer(args, tta=args.tta)
        what = args.model_file or args.checkpoint or f"shipped model {assets.shipped_checkpoint().name}"
        int8 = getattr(restorer.model, "int8", False)
        return restorer, f"{what} on {args.backend}", "int8 (quantized model file)" if int8 else "fp32"
    path = Path(args.checkpoint) if args.checkpoint else assets.shipped_checkpoint()
    model, lw = load_model(path, ema=args.ema)
    if args.checkpoint:
        cfg = ", ".join(f"{k}={v}" for k, v in lw.arch_config.items())
        desc = f"{path} ({lw.source_format}, {lw.arch}: {cfg}; {'EMA' if lw.used_ema else 'raw'} weights)"
    else:
        desc = f"shipped model {path.name} ({'EMA' if args.ema else 'raw'} weights)"
    restorer = Restorer(
        model, device=resolve_device(args.device, option="--device"), precision=precision_arg(args), tta=args.tta
    )
    return restorer, desc, f"{restorer.precision} ({restorer.precision_reason})"


def eval_checkpoint(args) -> int:
    from ..errors import FacesrError
    from ..evaluation import bicubic_baseline, evaluate_pairs, load_pairs, pair_files
    from ..io.files import same_dir
    from ..io.images import write_png

    if not (args.lq and args.gt):
        raise FacesrError("checkpoint mode needs both --lq DIR and --gt DIR")
    if args.pred_dir or args.gt_dir:
        raise FacesrError("give either PRED_DIR GT_DIR or --lq/--gt (with --checkpoint), not both")
    lq_dir, gt_dir = Path(args.lq), Path(args.gt)
    save_dir = Path(args.save) if args.save else None
    if save_dir is not None:
        for d, what in ((lq_dir, "--lq"), (gt_dir, "--gt")):
            if same_dir(save_dir, d):
                raise FacesrError(f"{save_dir}: --save must not be the {what} folder (it would overwrite inputs)")
        if os.path.lexists(save_dir) and not save_dir.is_dir():
            raise FacesrError(f"{save_dir}: --save exists and is not a folder")
    pairs = pair_files(lq_dir, gt_dir, "LQ folder", "GT folder")  # unmatched files fail before the model loads
    _check_outputs(args, pairs, save_dir)

    restorer, desc, precision = _load(args)
    loaded = load_pairs(lq_dir, gt_dir, restorer.scale, crop_border=args.crop_border, max_pixels=args.max_pixels)

    on_image = None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)

        def on_image(stem, pred_u8):
            write_png(save_dir / f"{stem}.png", pred_u8)

    with _progress(len(loaded)) as pbar:
        res = evaluate_pairs(
            restorer, loaded, crop_border=args.crop_border, y_only=args.y, on_image=on_image, progress=pbar
        )
    bic = bicubic_baseline(loaded, restorer.scale, args.crop_border, args.y)

    m, b = res["mean"], bic["mean"]
    opts = []
    if args.crop_border:
        opts.append(f"crop border {args.crop_border}")
    if args.y:
        opts.append("Y channel")
    print(f"model:  {desc}")
    print(f"precision: {precision}{'; TTA ' + restorer.tta if restorer.tta != 'none' else ''}")
    print(f"pairs:  {len(loaded)} ({lq_dir} -> {gt_dir}){'; ' + ', '.join(opts) if opts else ''}")
    print(f"reference (MMagic, unrounded):  PSNR {_fmt(m['psnr'])} dB   SSIM {_fmt(m['ssim'])}")
    print(f"challenge (uint8 PNG):          PSNR {_fmt(m['psnr_challenge'])} dB   (RGB, no crop)")
    print(
        f"bicubic x4 baseline (uint8):    PSNR {_fmt(b['psnr'])} dB   SSIM {_fmt(b['ssim'])}   "
        f"challenge PSNR {_fmt(b['psnr_challenge'])} dB"
    )
    if save_dir is not None:
        print(f"saved:  {len(loaded)} prediction(s) in {save_dir}")
    payload = {
        "mean": m,
        "per_image": res["per_image"],
        "bicubic": bic,
        "model": desc,
        "precision": restorer.precision,
        "tta": restorer.tta,
        "crop_border": args.crop_border,
        "y_only": bool(args.y),
    }
    if args.json:
        _write_json(args.json, payload)
    if args.csv:
        _write_csv(args.csv, res["per_image"], bic["per_image"])
    return 0


# ----------------------------------------------------------------------------- entry point


def run(args) -> int:
    """Run ``facesr eval`` (see the module docstring); returns the exit status."""
    from ..errors import FacesrError
    from ..evaluation import eval_folders, pair_files

    if args.crop_border < 0:
        raise FacesrError(f"--crop-border must be >= 0, got {args.crop_border}")
    args.max_pixels = max_pixels_arg(args)  # pixels from here on
    if args.checkpoint or args.model_file or args.lq or args.gt:
        return eval_checkpoint(args)
    if not (args.pred_dir and args.gt_dir):
        raise FacesrError("give PRED_DIR GT_DIR, or --lq DIR --gt DIR [--checkpoint P] to evaluate a model")
    for flag, val in (
        ("--save", args.save),
        ("--ema", args.ema),
        ("--amp", args.amp),
        ("--precision", args.precision != "auto"),
        ("--tta", args.tta != "none"),
        ("--backend", args.backend != "torch"),
        ("--model-file", args.model_file),
    ):
        if val:
            raise FacesrError(f"{flag} applies to model evaluation (--lq/--gt), not to PRED_DIR GT_DIR")
    pairs = pair_files(args.pred_dir, args.gt_dir, "prediction folder", "GT folder")
    _check_outputs(args, pairs)
    with _progress(len(pairs)) as pbar:
        res = eval_folders(
            args.pred_dir, args.gt_dir, args.crop_border, args.y, progress=pbar, max_pixels=args.max_pixels
        )
    _print_table(res)
    if args.json:
        _write_json(args.json, res)
    if args.csv:
        _write_csv(args.csv, res["per_image"])
    return 0
