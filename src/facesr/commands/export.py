"""``facesr export``: write a checkpoint as an ONNX model or an OpenVINO IR (fp32 or int8).

The ONNX graph takes ``lq`` float32 (N, 3, h, w) RGB on the 0-1 scale and returns
``sr`` float32 (N, 3, 4h, 4w), unclamped (clamp to 0-1, x255, round for uint8).
The file's metadata holds the upscale factor and the receptive field (the exact
tile overlap).  Run it with ``facesr predict --backend onnxruntime --model-file FILE`` or
:meth:`facesr.inference.Restorer.from_onnx`.

``--openvino OUT.xml`` converts that graph to OpenVINO IR (``OUT.xml`` + ``OUT.bin``, fp32
weights); with ``--int8 LQ_DIR`` it is first quantized to int8 by NNCF post-training
quantization, calibrated on up to ``--calib-count`` LQ faces from ``LQ_DIR`` (degraded faces
as the model sees them, e.g. ``facesr degrade`` output; centre-cropped to at most 128x128).
Run it with ``facesr predict --backend openvino --model-file OUT.xml``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import add_max_pixels_option, max_pixels_arg


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a checkpoint as ONNX or OpenVINO IR (fp32, or int8 with --int8)")
    p.add_argument("--checkpoint", help="weights to export (facesr, MMagic, BasicSR); omitted = shipped model")
    p.add_argument("--onnx", metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--openvino", metavar="OUT.xml", help="OpenVINO IR to write (OUT.xml and OUT.bin)")
    p.add_argument(
        "--int8",
        metavar="LQ_DIR",
        help="with --openvino: quantize to int8 (NNCF), calibrated on the LQ faces in LQ_DIR",
    )
    p.add_argument("--calib-count", type=int, default=300, metavar="N", help="--int8: most calibration faces (300)")
    p.add_argument("--ema", action="store_true", help="export the EMA weights of the checkpoint")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_max_pixels_option(p)
    p.set_defaults(func=run)


def _check_out(
    flag: str, out: Path, suffix: str, ckpt: Path, overwrite: bool, *siblings: Path, strict_suffix: bool = False
) -> None:
    """Before any work: ``out`` (and ``siblings``, e.g. an IR's .bin) never the checkpoint, not a folder,
    its folder present, not existing unless ``overwrite``; with ``strict_suffix`` it must end in ``suffix``."""
    from ..errors import FacesrError
    from ..io.files import real
    from . import check_output_file

    if strict_suffix and out.suffix.lower() != suffix:
        raise FacesrError(f"{flag} {out}: the file name must end in {suffix}")
    for f in (out, *siblings):
        if real(f) == real(ckpt):
            raise FacesrError(f"{flag} {out}: {f} is the input checkpoint; choose another file name")
    for f in (out, *siblings):
        check_output_file(f, [], overwrite, flag)


def _calibration(lq_dir: str, count: int, max_pixels: int | None = None) -> list:
    """Up to ``count`` float32 (1, 3, h, w) 0-1 arrays from the images in ``lq_dir`` (centre crops <= 128x128)."""
    import numpy as np

    from ..errors import FacesrError, ImageError
    from ..io.files import expand_inputs
    from ..io.images import read_any

    if not Path(lq_dir).is_dir():
        raise FacesrError(f"--int8 {lq_dir}: not a folder of LQ faces")
    batches = []
    for f in expand_inputs([lq_dir])[:count]:
        try:
            img, _ = read_any(f, max_pixels)
        except ImageError:
            continue  # unreadable: calibrate on the others
        h, w = img.shape[:2]
        t, left = max(0, (h - 128) // 2), max(0, (w - 128) // 2)
        crop = img[t : t + 128, left : left + 128]
        batches.append(np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0))
    if not batches:
        raise FacesrError(f"--int8 {lq_dir}: no readable images in it")
    return batches


def run(a) -> int:
    """Run ``facesr export`` with parsed arguments ``a`` (checkpoint, onnx/openvino, int8, ema, opset, overwrite)."""
    from .. import assets
    from ..errors import FacesrError
    from ..inference import export_onnx, opset_range
    from ..models.registry import receptive_field_of
    from ..models.weights import load_model

    if not (a.onnx or a.openvino):
        raise FacesrError("give --onnx OUT.onnx or --openvino OUT.xml (or both)")
    if a.int8 and not a.openvino:
        raise FacesrError("--int8 needs --openvino OUT.xml (int8 models run on OpenVINO)")
    if a.calib_count < 1:
        raise FacesrError(f"--calib-count must be >= 1, got {a.calib_count}")
    lo, hi = opset_range()
    if not lo <= a.opset <= hi:
        raise FacesrError(f"--opset {a.opset} is not supported: use {lo} to {hi} (this PyTorch's TorchScript exporter)")
    ckpt = assets.shipped_checkpoint() if a.checkpoint is None else Path(a.checkpoint)
    if a.onnx:
        _check_out("--onnx", Path(a.onnx), ".onnx", ckpt, a.overwrite)
    if a.openvino:
        xml = Path(a.openvino)
        _check_out("--openvino", xml, ".xml", ckpt, a.overwrite, xml.with_suffix(".bin"), strict_suffix=True)
        try:
            import openvino  # noqa: F401
        except ImportError:
            from ..errors import MissingExtraError

            raise MissingExtraError("openvino-int8" if a.int8 else "openvino", "--openvino") from None
        if a.int8:
            try:
                import nncf  # noqa: F401
            except ImportError:
                from ..errors import MissingExtraError

                raise MissingExtraError("openvino-int8", "--int8") from None
    calib = _calibration(a.int8, a.calib_count, max_pixels_arg(a)) if a.int8 else None
    model, lw = load_model(ckpt, ema=a.ema)
    cfg = ", ".join(f"{k}={v}" for k, v in lw.arch_config.items())
    s = getattr(model, "upscale_factor", 4)
    what = f"{lw.arch}: {cfg}{', EMA weights' if lw.used_ema else ''}; receptive field {receptive_field_of(model)} px"
    data = export_onnx(model, a.onnx, opset=a.opset, check=True)
    if a.onnx:
        print(
            f"wrote {a.onnx} ({len(data) / 1e6:.2f} MB, opset {a.opset}, {what}); "
            f"input 'lq' float32 N x 3 x H x W (0-1), output 'sr' N x 3 x {s}H x {s}W"
        )
    if a.openvino:
        from ..inference.openvino import quantize_int8, read_model, save_ir
        from ..io.progress import heartbeat

        ov_model = read_model(data)
        if calib is not None:
            print(
                f"quantizing to int8 on {len(calib)} faces from {a.int8} (NNCF; about a second per face on a "
                f"2-core CPU)",
                file=sys.stderr,
                flush=True,
            )
            with heartbeat("facesr export: quantizing to int8"):
                ov_model = quantize_int8(ov_model, calib)
        xml, binf = save_ir(ov_model, a.openvino)
        print(
            f"wrote {xml} + {binf.name} ({binf.stat().st_size / 1e6:.2f} MB, "
            f"{'int8' if calib is not None else 'fp32'}, {what}); run it with "
            f"'facesr predict --backend openvino --model-file {xml}'"
        )
    return 0
