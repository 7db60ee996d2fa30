"""``facesr export``: write a checkpoint as an ONNX model (dynamic batch, height and width).

The ONNX graph takes ``lq`` float32 (N, 3, h, w) RGB on the 0-1 scale and returns
``sr`` float32 (N, 3, 4h, 4w), unclamped (clamp to 0-1, x255, round for uint8).
The file's metadata holds the upscale factor and the receptive field (the exact
tile overlap).  Run it with ``facesr predict --backend onnxruntime --onnx FILE`` or
:meth:`facesr.inference.Restorer.from_onnx`.
"""
from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a checkpoint as ONNX (dynamic batch, height, width)")
    p.add_argument("--checkpoint", help="weights to export (facesr, MMagic, BasicSR); omitted = shipped model")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--ema", action="store_true", help="export the EMA weights of the checkpoint")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.onnx")
    p.set_defaults(func=run)


def run(a) -> int:
    """Run ``facesr export`` with parsed arguments ``a`` (checkpoint, onnx, ema, opset, overwrite)."""
    from .. import assets
    from ..errors import FacesrError
    from ..inference import export_onnx, opset_range
    from ..models.weights import load_model

    lo, hi = opset_range()
    if not lo <= a.opset <= hi:
        raise FacesrError(f"--opset {a.opset} is not supported: use {lo} to {hi} (this PyTorch's TorchScript exporter)")
    out = Path(a.onnx)
    ckpt = assets.shipped_checkpoint() if a.checkpoint is None else Path(a.checkpoint)
    if out.exists() and ckpt.exists() and out.resolve() == ckpt.resolve():
        raise FacesrError(f"--onnx {out} is the input checkpoint; choose another file name")
    if out.is_dir():
        raise FacesrError(f"--onnx {out} is a folder; give a file name such as model.onnx")
    if not out.parent.is_dir():
        raise FacesrError(f"--onnx {out}: folder {out.parent} does not exist")
    if out.exists() and not a.overwrite:
        raise FacesrError(f"--onnx {out} exists (use --overwrite to replace it)")
    model, lw = load_model(ckpt, ema=a.ema)
    data = export_onnx(model, out, opset=a.opset, check=True)
    cfg = ", ".join(f"{k}={v}" for k, v in lw.arch_config.items())
    s = getattr(model, "upscale_factor", 4)
    print(f"wrote {out} ({len(data) / 1e6:.2f} MB, opset {a.opset}, {lw.arch}: {cfg}"
          f"{', EMA weights' if lw.used_ema else ''}; receptive field {model.receptive_field()} px); "
          f"input 'lq' float32 N x 3 x H x W (0-1), output 'sr' N x 3 x {s}H x {s}W")
    return 0
