"""``facesr`` command line.  Each sub-command parses its arguments here and calls into the library.

Errors the user can fix (bad config key, missing folder, unreadable image,
foreign checkpoint) print one line, ``facesr <cmd>: error: ...``, and exit 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class UserError(Exception):
    """An error caused by the user's input; printed as one line."""


def _user_errors():
    from .errors import FacesrError
    from .config import ConfigError
    from .imageio import ImageError
    from .models.weights import CheckpointError
    from .devices import DeviceError
    from .engine.trainer import TrainingError
    return (FacesrError, UserError, ConfigError, ImageError, CheckpointError, TrainingError, DeviceError, FileNotFoundError)


def report_skipped(command: str, what: str, messages: list[str]) -> int:
    """List skipped inputs on stderr; return the exit status (1 if any were skipped, else 0)."""
    if not messages:
        return 0
    print(f"facesr {command}: skipped {len(messages)} {what}:", file=sys.stderr)
    for m in messages:
        print(f"  {m}", file=sys.stderr)
    return 1


def _lazy(module: str, func: str):
    """A handler that imports ``facesr.<module>`` only when its command runs (fast ``--help``)."""
    def handler(a) -> int:
        import importlib
        return getattr(importlib.import_module(f"facesr.{module}"), func)(a)
    return handler


def _add_set(p):
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. --set train.max_iters=1000 data.num_workers=4 (repeatable)")


# ----------------------------------------------------------------------------- commands

def cmd_train(a) -> int:
    from .config import load_config
    from .engine.trainer import train
    cfg = load_config(a.config, a.overrides)
    work_dir = Path(a.work_dir or Path("work_dirs") / (Path(a.config).stem if a.config else cfg.name))
    resume = True if a.resume == "latest" else a.resume
    if a.init_from and a.resume:
        raise UserError("--init-from starts a new run; it cannot be combined with --resume")
    summary = train(cfg, work_dir, resume=resume, init_from=a.init_from, init_ema=a.init_ema)
    best = summary["best"]
    msg = f"done: {summary['iter']} iterations in {work_dir}"
    if best:
        msg += f"; best {best['metric']} {best['value']:.4f} at iter {best['iter']} -> {work_dir / 'best.safetensors'}"
    if summary.get("stopped_by_signal"):
        msg = f"interrupted at iteration {summary['iter']}; resumable checkpoint {summary['last_checkpoint']} " \
              f"(continue with: facesr train {a.config or ''} --work-dir {work_dir} --resume)"
        print(msg, file=sys.stderr)
        return 130
    print(msg)
    return 0


def cmd_info(a) -> int:
    from .config import load_config
    from .models import build_model, count_flops, count_params, format_size, load_model
    if bool(a.config) == bool(a.checkpoint):
        raise UserError("give exactly one of --config or --checkpoint")
    if a.config:
        cfg = load_config(a.config, a.overrides)
        model = build_model(cfg.model.arch, **cfg.model.arch_kwargs())
        cap = a.max_params if a.max_params is not None else cfg.model.max_params
        arch = {"arch": cfg.model.arch, **model.arch_config()}
    else:
        if a.overrides:
            raise UserError("--set applies to --config, not --checkpoint")
        model, lw = load_model(a.checkpoint, ema=a.ema)
        cap = a.max_params
        arch = {"arch": lw.arch, **lw.arch_config, "source_format": lw.source_format}
    shape = tuple(a.shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise UserError(f"--shape needs three positive integers C H W, got {' '.join(map(str, a.shape))}")
    params = count_params(model)
    flops = count_flops(model, shape)
    out_shape = list(count_flops.last_output_shape)
    fits = None if cap is None else params <= cap
    if a.json:
        print(json.dumps({"params": params, "flops": flops, "input_shape": list(shape), "output_shape": out_shape,
                          "max_params": cap, "fits": fits, "model": arch}))
    else:
        print(f"model:   {', '.join(f'{k}={v}' for k, v in arch.items())}")
        print(f"params:  {params:,} ({format_size(params)})")
        print(f"flops:   {flops:,} ({format_size(flops)}) multiply-adds for input {'x'.join(map(str, shape))}, "
              f"as MMagic get_flops counts")
        print(f"output:  {'x'.join(map(str, out_shape))}")
        if cap is not None:
            print(f"cap:     {cap:,} -> {'fits' if fits else 'OVER THE CAP by ' + format(params - cap, ',')}")
    return 0 if fits in (None, True) else 1


def cmd_plot(a) -> int:
    from .plotting import plot_runs
    bests = plot_runs(a.run_dirs, a.out, a.metric, a.labels, a.title)
    for label, b in bests.items():
        print(f"{label}: best {a.metric} {b['value']:.4f} at iter {b['iter']}")
    print(f"wrote {a.out}")
    return 0


# ----------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="facesr", description="Blind face super-resolution x4 (MSRResNet, MMagic-exact).")
    ap.add_argument("--version", action="version", version=f"facesr {__import__('facesr').__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", nargs="?", help="YAML preset (configs/*.yaml); omitted = built-in defaults")
    p.add_argument("--work-dir", help="output folder (default work_dirs/<config name>)")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CKPT",
                   help="resume from CKPT, or from the latest checkpoint in --work-dir when no path is given")
    p.add_argument("--init-from", metavar="WEIGHTS",
                   help="start from these weights only (facesr, MMagic or BasicSR file) with a fresh optimiser and "
                        "schedule; the lineage is recorded")
    p.add_argument("--init-ema", action="store_true", help="with --init-from: take the file's EMA weights")
    _add_set(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("info", help="parameter count, FLOPs and output shape of a model")
    p.add_argument("--config")
    p.add_argument("--checkpoint")
    p.add_argument("--ema", action="store_true", help="with --checkpoint: read the EMA weights")
    p.add_argument("--shape", type=int, nargs="+", default=[3, 128, 128], metavar="N", help="input C H W (default 3 128 128)")
    p.add_argument("--max-params", type=int, help="report whether the model fits under this cap (exit 1 if not)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_set(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("degrade", help="make LQ images from HQ faces with the course pipeline")
    p.add_argument("hq_dir")
    p.add_argument("out_dir")
    p.add_argument("--config", help="YAML whose 'degradation' section to use (default: the course pipeline)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--copies", type=int, default=1, help="LQ versions per HQ image, named <stem>_<k>.png")
    p.add_argument("--workers", type=int, default=0, help="worker processes (output does not depend on it)")
    p.add_argument("--rng", choices=["facesr", "mmagic"], help="facesr: per-image private RNG; mmagic: MMagic's global "
                   "RNG draw order, seeded with --seed before every image (bit-exact with MMagic)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    _add_set(p)
    p.set_defaults(func=_lazy("degrade_cmd", "run_degrade"))

    p = sub.add_parser("eval", help="PSNR/SSIM of predictions (PRED_DIR GT_DIR) or of a checkpoint (--checkpoint --lq --gt)")
    p.add_argument("pred_dir", nargs="?")
    p.add_argument("gt_dir", nargs="?")
    p.add_argument("--checkpoint", help="evaluate this model on --lq/--gt pairs (omit for the shipped model)")
    p.add_argument("--lq", help="LQ folder (with --checkpoint mode)")
    p.add_argument("--gt", help="GT folder (with --checkpoint mode)")
    p.add_argument("--save", help="also write the predictions (PNG) here")
    p.add_argument("--ema", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--crop-border", type=int, default=0)
    p.add_argument("--y", action="store_true", help="score the BT.601 Y channel only")
    p.add_argument("--csv", help="write per-image rows to this CSV")
    p.add_argument("--json", help="write {mean, per_image} to this JSON file")
    p.set_defaults(func=_lazy("eval_cmd", "run_eval"))

    p = sub.add_parser("predict", help="restore images (x4); default model is the shipped one")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or glob patterns")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--checkpoint", help="weights (facesr, MMagic, BasicSR); omitted = shipped model")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of the checkpoint")
    p.add_argument("--zip", help="also write a flat zip of the outputs (challenge layout)")
    p.add_argument("--tile", type=int, default=0, help="LQ tile size for big images (0 = auto / no tiling)")
    p.add_argument("--tile-overlap", type=int, default=None,
                   help="LQ context pixels around each tile (default: the model's receptive field, exact)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (faster on bf16 hardware)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch")
    p.add_argument("--onnx", help="with --backend onnxruntime: the .onnx file (default: export the model on the fly)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=_lazy("predict_cmd", "run_predict"))
    p = sub.add_parser("plot", help="training curves of one or more runs (validation PSNR vs iterations)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--metric", default="psnr", choices=["psnr", "ssim", "loss", "lr"])
    p.add_argument("--labels", nargs="+", help="one legend label per run")
    p.add_argument("--title")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("demo", help="degrade the bundled sample face, restore it, write a side-by-side picture")
    p.add_argument("--out", default="facesr_demo.png", help="PNG to write (default facesr_demo.png)")
    p.add_argument("--image", help="use this 512x512 HQ face instead of the bundled one")
    p.add_argument("--checkpoint", help="model to use (default: the shipped model)")
    p.add_argument("--seed", type=int, default=0, help="first degradation seed (default 0)")
    p.add_argument("--rows", type=int, default=3, help="how many degradations (seeds seed..seed+rows-1)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_lazy("demo", "run_demo"))

    p = sub.add_parser("export", help="write a checkpoint as ONNX (dynamic batch, height, width)")
    p.add_argument("--checkpoint", help="weights to export (facesr, MMagic, BasicSR); omitted = shipped model")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--ema", action="store_true", help="export the EMA weights of the checkpoint")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.onnx")
    p.set_defaults(func=_lazy("export_cmd", "run_export"))

    p = sub.add_parser("compare", help="side-by-side sheet LQ | bicubic | SR | GT with PSNR captions")
    p.add_argument("lq_dir", metavar="LQ_DIR")
    p.add_argument("sr_dir", metavar="SR_DIR")
    p.add_argument("gt_dir", nargs="?", metavar="GT_DIR", help="ground truth; adds a GT column and PSNR captions")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--names", nargs="+", metavar="STEM", help="image stems to show (default: the first --max in all folders)")
    p.add_argument("--max", type=int, default=6, help="rows when --names is not given (default 6)")
    p.add_argument("--zoom", action="store_true", help="add a magnified crop of the eye region under each panel")
    p.add_argument("--title", help="title line at the top")
    p.add_argument("--sr-title", default="SR (facesr)", help="column title of the SR panels")
    p.set_defaults(func=_lazy("compare", "run_compare"))

    import importlib
    from .commands import COMMANDS
    for name in COMMANDS:
        importlib.import_module(f"facesr.commands.{name}").add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not getattr(a, "func", None):
        ap.print_help()
        return 2
    try:
        return int(a.func(a) or 0)
    except _user_errors() as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"facesr {a.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"facesr {a.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
