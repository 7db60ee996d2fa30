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

PSNR is in dB; SSIM is in [-1, 1] (1 = identical).  Identical images give a
PSNR of +inf, written as ``Infinity`` in ``--json`` (Python's JSON dialect).
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from . import metrics
from .devices import resolve_device
from .cli import UserError
from .imageio import ImageError, atomic_write_bytes, read_rgb

KEYS = ("psnr", "ssim", "psnr_challenge")


# ----------------------------------------------------------------------------- helpers

def _score(pred: np.ndarray, gt: np.ndarray, crop_border: int, y_only: bool) -> dict:
    """All three numbers for a uint8 prediction (0-255) against uint8 GT."""
    return {"psnr": metrics.psnr(pred, gt, crop_border, y_only),
            "ssim": metrics.ssim(pred, gt, crop_border, y_only),
            "psnr_challenge": metrics.psnr_challenge(pred, gt)}


def _mean(per: dict) -> dict:
    return {k: float(np.mean([v[k] for v in per.values()])) for k in KEYS} if per else {}


def _fmt(v: float, nd: int = 4) -> str:
    return "inf" if math.isinf(v) else f"{v:.{nd}f}"


def _write_json(path: str, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))


def _write_csv(path: str, per: dict, extra: dict | None = None) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = list(KEYS)
    extra_cols = [f"bicubic_{k}" for k in KEYS] if extra else []
    w.writerow(["stem", *cols, *extra_cols])
    for stem, v in per.items():
        row = [stem, *(repr(float(v[k])) for k in cols)]
        if extra:
            row += [repr(float(extra[stem][k])) for k in KEYS]
        w.writerow(row)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _check_crop(crop_border: int) -> None:
    if crop_border < 0:
        raise UserError(f"--crop-border must be >= 0, got {crop_border}")


def _check_ssim_size(stem: str, shape, crop_border: int) -> None:
    h, w = shape[0] - 2 * crop_border, shape[1] - 2 * crop_border
    if min(h, w) < 11:
        raise UserError(f"{stem}: image is {shape[1]}x{shape[0]}, too small for SSIM after "
                        f"--crop-border {crop_border} (needs 11x11)")


def _same_dir(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


# ----------------------------------------------------------------------------- PRED_DIR GT_DIR mode

def eval_folders(pred_dir: str, gt_dir: str, crop_border: int = 0, y_only: bool = False, progress: bool = True) -> dict:
    """Score uint8 predictions in ``pred_dir`` against ``gt_dir`` (matched by stem).

    Returns ``{"mean": {"psnr", "ssim", "psnr_challenge"}, "per_image": {stem: {...}}}``.
    Unmatched files and size mismatches raise :class:`ImageError` listing them.
    """
    from .data.datasets import pair_files
    pairs = pair_files(pred_dir, gt_dir, "prediction folder", "GT folder")
    from tqdm import tqdm
    per, bad, loaded = {}, [], []
    for pred_p, gt_p in pairs:
        pred, gt = read_rgb(pred_p), read_rgb(gt_p)
        if pred.shape != gt.shape:
            bad.append(f"{pred_p.stem} ({pred.shape[1]}x{pred.shape[0]} vs GT {gt.shape[1]}x{gt.shape[0]})")
        else:
            _check_ssim_size(pred_p.stem, pred.shape, crop_border)
        loaded.append((pred_p.stem, pred, gt))
    if bad:
        raise ImageError(f"{len(bad)} prediction(s) differ in size from their GT: {', '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}")
    for stem, pred, gt in tqdm(loaded, unit="img", desc="eval", file=sys.stderr, disable=None if progress else True):
        per[stem] = _score(pred, gt, crop_border, y_only)
    return {"mean": _mean(per), "per_image": dict(sorted(per.items()))}


def _print_table(res: dict, out=None) -> None:
    out = out or sys.stdout
    per = res["per_image"]
    width = max([len("mean")] + [len(s) for s in per]) + 2
    print(f"{'image':<{width}}{'PSNR':>10}{'SSIM':>9}{'PSNR(challenge)':>17}", file=out)
    for stem, v in per.items():
        print(f"{stem:<{width}}{_fmt(v['psnr']):>10}{_fmt(v['ssim']):>9}{_fmt(v['psnr_challenge']):>17}", file=out)
    m = res["mean"]
    print(f"{'mean':<{width}}{_fmt(m['psnr']):>10}{_fmt(m['ssim']):>9}{_fmt(m['psnr_challenge']):>17}"
          f"   ({len(per)} images)", file=out)


# ----------------------------------------------------------------------------- checkpoint mode

def _load(checkpoint: str | None, ema: bool):
    """(model, description) for a checkpoint path or, with None, the shipped model."""
    if checkpoint is not None:
        from .models import load_model
        model, lw = load_model(checkpoint, ema=ema)
        cfg = ", ".join(f"{k}={v}" for k, v in lw.arch_config.items())
        return model, f"{checkpoint} ({lw.source_format}, {lw.arch}: {cfg}; {'EMA' if lw.used_ema else 'raw'} weights)"
    try:
        from . import inference
    except ImportError as exc:
        raise UserError(f"no shipped model available ({exc}); pass --checkpoint") from None
    if hasattr(inference, "shipped_checkpoint"):
        from .models import load_model
        path = inference.shipped_checkpoint()  # CheckpointError when none is installed
        model, _ = load_model(path, ema=ema)
        return model, f"shipped model {path.name} ({'EMA' if ema else 'raw'} weights)"
    model = inference.Restorer.from_checkpoint(None, ema=ema).model
    return model, f"shipped model ({'EMA' if ema else 'raw'} weights)"


def bicubic_x4(lq: np.ndarray, scale: int = 4) -> np.ndarray:
    """OpenCV INTER_CUBIC upscaling of a uint8 image (uint8 out, 0-255)."""
    h, w = lq.shape[:2]
    return cv2.resize(lq, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)


def eval_checkpoint(args) -> int:
    from tqdm import tqdm

    from .data.datasets import pair_files
    from .evaluation import evaluate_pairs
    from .imageio import write_png

    if not (args.lq and args.gt):
        raise UserError("checkpoint mode needs both --lq DIR and --gt DIR")
    if args.pred_dir or args.gt_dir:
        raise UserError("give either PRED_DIR GT_DIR or --lq/--gt (with --checkpoint), not both")
    lq_dir, gt_dir = Path(args.lq), Path(args.gt)
    save_dir = Path(args.save) if args.save else None
    if save_dir is not None:
        for d, what in ((lq_dir, "--lq"), (gt_dir, "--gt")):
            if _same_dir(save_dir, d):
                raise UserError(f"{save_dir}: --save must not be the {what} folder (it would overwrite inputs)")
        if save_dir.exists() and not save_dir.is_dir():
            raise UserError(f"{save_dir}: --save exists and is not a folder")
    pairs = pair_files(str(lq_dir), str(gt_dir), "LQ folder", "GT folder")

    model, desc = _load(args.checkpoint, args.ema)
    device = resolve_device(args.device)
    model = model.to(device).eval()
    scale = int(getattr(model, "upscale_factor", 4))

    loaded, bad = [], []
    for lq_p, gt_p in pairs:
        lq, gt = read_rgb(lq_p), read_rgb(gt_p)
        if (lq.shape[0] * scale, lq.shape[1] * scale) != gt.shape[:2]:
            bad.append(f"{lq_p.stem} ({lq.shape[1]}x{lq.shape[0]} vs GT {gt.shape[1]}x{gt.shape[0]})")
        else:
            _check_ssim_size(lq_p.stem, gt.shape, args.crop_border)
        loaded.append((lq_p.stem, lq, gt))
    if bad:
        raise ImageError(f"{len(bad)} pair(s) whose GT is not x{scale} the LQ: {', '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}")

    on_image = None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)

        def on_image(stem, pred_u8):
            write_png(save_dir / f"{stem}.png", pred_u8)

    with tqdm(total=len(loaded), unit="img", desc="eval", file=sys.stderr, dynamic_ncols=True, disable=None) as pbar:
        res = evaluate_pairs(model, loaded, device, "bf16" if args.amp else "none",
                             crop_border=args.crop_border, y_only=args.y, on_image=on_image, progress=pbar)
    bic_per = {stem: _score(bicubic_x4(lq, scale), gt, args.crop_border, args.y) for stem, lq, gt in loaded}
    bic = {"mean": _mean(bic_per), "per_image": dict(sorted(bic_per.items()))}

    m, b = res["mean"], bic["mean"]
    opts = []
    if args.crop_border:
        opts.append(f"crop border {args.crop_border}")
    if args.y:
        opts.append("Y channel")
    print(f"model:  {desc}")
    print(f"pairs:  {len(loaded)} ({lq_dir} -> {gt_dir}){'; ' + ', '.join(opts) if opts else ''}")
    print(f"reference (MMagic, unrounded):  PSNR {_fmt(m['psnr'])} dB   SSIM {_fmt(m['ssim'])}")
    print(f"challenge (uint8 PNG):          PSNR {_fmt(m['psnr_challenge'])} dB   (RGB, no crop)")
    print(f"bicubic x4 baseline (uint8):    PSNR {_fmt(b['psnr'])} dB   SSIM {_fmt(b['ssim'])}   "
          f"challenge PSNR {_fmt(b['psnr_challenge'])} dB")
    if save_dir is not None:
        print(f"saved:  {len(loaded)} prediction(s) in {save_dir}")
    payload = {"mean": m, "per_image": res["per_image"], "bicubic": bic,
               "model": desc, "crop_border": args.crop_border, "y_only": bool(args.y)}
    if args.json:
        _write_json(args.json, payload)
    if args.csv:
        _write_csv(args.csv, res["per_image"], bic["per_image"])
    return 0


# ----------------------------------------------------------------------------- entry point

def run_eval(args) -> int:
    """Run ``facesr eval`` (see the module docstring); returns the exit status."""
    _check_crop(args.crop_border)
    if args.checkpoint or args.lq or args.gt:
        return eval_checkpoint(args)
    if not (args.pred_dir and args.gt_dir):
        raise UserError("give PRED_DIR GT_DIR, or --lq DIR --gt DIR [--checkpoint P] to evaluate a model")
    for flag, val in (("--save", args.save), ("--ema", args.ema), ("--amp", args.amp)):
        if val:
            raise UserError(f"{flag} applies to model evaluation (--lq/--gt), not to PRED_DIR GT_DIR")
    res = eval_folders(args.pred_dir, args.gt_dir, args.crop_border, args.y)
    _print_table(res)
    if args.json:
        _write_json(args.json, res)
    if args.csv:
        _write_csv(args.csv, res["per_image"])
    return 0
