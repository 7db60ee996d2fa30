"""``facesr export``: write a checkpoint as an ONNX model (dynamic batch, height and width).

The ONNX graph takes ``lq`` float32 (N, 3, h, w) RGB on the 0-1 scale and returns
``sr`` float32 (N, 3, 4h, 4w), unclamped (clamp to 0-1, x255, round for uint8).
Run it with ``facesr predict --backend onnxruntime --onnx FILE`` or
:meth:`facesr.inference.Restorer.from_onnx`.
"""
from __future__ import annotations

from pathlib import Path

from .cli import UserError


def run_export(a) -> int:
    """Run ``facesr export`` with parsed arguments ``a`` (checkpoint, onnx, ema, opset, overwrite)."""
    from .inference import export_onnx, shipped_checkpoint
    from .models.weights import load_model

    out = Path(a.onnx)
    ckpt = shipped_checkpoint() if a.checkpoint is None else Path(a.checkpoint)
    if out.exists() and ckpt.exists() and out.resolve() == ckpt.resolve():
        raise UserError(f"--onnx {out} is the input checkpoint; choose another file name")
    if out.is_dir():
        raise UserError(f"--onnx {out} is a folder; give a file name such as model.onnx")
    if not out.parent.is_dir():
        raise UserError(f"--onnx {out}: folder {out.parent} does not exist")
    if out.exists() and not a.overwrite:
        raise UserError(f"--onnx {out} exists (use --overwrite to replace it)")
    model, lw = load_model(ckpt, ema=a.ema)
    try:
        data = export_onnx(model, out, opset=a.opset, check=True)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    cfg = ", ".join(f"{k}={v}" for k, v in lw.arch_config.items())
    s = getattr(model, "upscale_factor", 4)
    print(f"wrote {out} ({len(data) / 1e6:.2f} MB, opset {a.opset}, {lw.arch}: {cfg}"
          f"{', EMA weights' if lw.used_ema else ''}); input 'lq' float32 N x 3 x H x W (0-1), "
          f"output 'sr' N x 3 x {s}H x {s}W")
    return 0
