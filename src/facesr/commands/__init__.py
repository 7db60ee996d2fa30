"""One module per ``facesr`` command.

Each module defines ``add_parser(subparsers)`` (its arguments and help) and
``run(args) -> int`` (the work).  Heavy imports stay inside ``run`` so that
``facesr --help`` and ``facesr CMD --help`` start fast.  ``facesr.cli`` only
registers the modules listed in :data:`COMMANDS` and turns
:class:`facesr.errors.FacesrError` into one line.  Library code words its errors
in values; a command checks its own flags and names them in its messages.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

#: Command modules under ``facesr.commands``, in the order ``facesr --help`` lists them.
COMMANDS: list[str] = [
    "train",
    "info",
    "degrade",
    "eval",
    "predict",
    "plot",
    "demo",
    "export",
    "compare",
    "restore",
    "serve",
]


#: Destinations of the arguments, of any command, that name a file or folder: none may be empty.
PATH_DESTS = frozenset(
    {
        "checkpoint",
        "config",
        "csv",
        "gt",
        "gt_dir",
        "hq_dir",
        "image",
        "init_from",
        "inputs",
        "int8",
        "json",
        "lq",
        "lq_dir",
        "model_file",
        "onnx",
        "openvino",
        "out",
        "out_dir",
        "pred_dir",
        "resume",
        "run_dirs",
        "save",
        "sr_dir",
        "work_dir",
        "zip",
    }
)


def check_argument_strings(parser: argparse.ArgumentParser, a) -> None:
    """Before any work, one FacesrError line naming the argument: a NUL byte in any argument (no path can hold
    one, and ``os`` would raise ValueError; only an argv passed in-process can carry it), and an empty path
    (which would quietly mean the current folder, or a checkpoint named ``.``)."""
    from ..errors import FacesrError, printable

    names: dict[str, str] = {}
    for action in parser._actions:  # later spellings win: --model-file over its hidden alias --onnx
        if action.option_strings:
            names[action.dest] = action.option_strings[-1]
        elif isinstance(action.metavar, str):
            names[action.dest] = action.metavar
        else:
            names[action.dest] = action.dest.upper()
    for dest, name in names.items():
        value = getattr(a, dest, None)
        for v in value if isinstance(value, list) else [value]:
            if not isinstance(v, str):
                continue
            if "\x00" in v:
                raise FacesrError(f"{name} {printable(v)}: a NUL byte (\\x00) cannot be part of a path or argument")
            if v == "" and dest in PATH_DESTS:
                raise FacesrError(f"{name}: empty path; name a file or folder (use . for the current folder)")


def add_set(p) -> None:
    """The ``--set KEY=VALUE`` config override option."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. --set train.max_iters=1000 data.num_workers=4 (repeatable)",
    )


#: facesr.inference.precision.PRECISIONS, spelled out so that building the parser does not import torch
PRECISION_CHOICES = ["auto", "fp32", "fp32-winograd", "bf16", "fp16"]
PRECISION_HELP = (
    "auto (default): bf16 on CPUs with AVX512-BF16/AMX and on CUDA GPUs with bf16, fp16 on older "
    "GPUs, fp32-winograd (fp32 with NNPACK Winograd convolutions, 1.2-1.8x faster, not "
    "bit-identical) on AVX2 CPUs with one thread or OMP_WAIT_POLICY=PASSIVE (which facesr sets), "
    "else fp32; fp32: bit-reproducible (e.g. to regenerate a submission exactly)"
)


def warn(command: str, message: str) -> None:
    """One line on stderr: ``facesr COMMAND: warning: MESSAGE``."""
    print(f"facesr {command}: warning: {message}", file=sys.stderr)


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling of another option: stores into its ``dest`` and warns once, when given."""

    def __init__(self, option_strings, dest, new: str, **kw):
        self.new = new
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_model_options(p, ema: bool = True, precision: bool = True, default_precision: str = "auto") -> None:
    """``--checkpoint``, ``--device`` and (optionally) ``--ema`` and ``--precision`` (with its deprecated,
    hidden alias ``--amp``): which model runs, where and how."""
    p.add_argument("--checkpoint", help="weights (facesr, MMagic, BasicSR); omitted = shipped model")
    if ema:
        p.add_argument("--ema", action="store_true", help="use the EMA weights of the checkpoint")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    if precision:
        add_precision_options(p, default_precision)


def add_precision_options(p, default: str = "auto") -> None:
    """``--precision auto|fp32|fp32-winograd|bf16|fp16`` and the deprecated, hidden ``--amp``
    (= ``--precision bf16``; :func:`precision_arg` warns)."""
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=default, help=PRECISION_HELP)
    p.add_argument("--amp", action="store_true", help=argparse.SUPPRESS)


def precision_arg(a) -> str | None:
    """The precision asked for by ``--precision``/``--amp`` (None when the command has neither: fp32)."""
    from ..errors import FacesrError

    precision = getattr(a, "precision", None)
    if getattr(a, "amp", False):
        if precision not in (None, "auto", "bf16"):
            raise FacesrError(f"--amp means --precision bf16; it contradicts --precision {precision}")
        warn(a.command, "--amp is deprecated; use --precision bf16")
        return "bf16"
    return precision


#: A --max-pixels value at or above this is read as the old pixel-count spelling (no image is 10,000 megapixels).
_PIXEL_COUNT_FROM = 10_000


def add_max_pixels_option(p, default_mp: float | None = 64.0, default_help: str | None = None) -> None:
    """``--max-pixels MPX``: the one cap, in megapixels, on the size an image's header may announce
    (``default_mp`` None: the command picks per input kind, as ``default_help`` says)."""
    default = default_help or f"{default_mp:g}"
    p.add_argument(
        "--max-pixels",
        default=default_mp,
        metavar="MPX",
        help=f"refuse images whose header announces more than MPX megapixels, before decoding "
        f"(default {default}; 0 = no cap)",
    )


def max_pixels_arg(a) -> Any:
    """``--max-pixels`` as a pixel count (0 = no cap; None when not given and the option has no default);
    FacesrError for a bad value.  A value of 10,000 or more is the old pixel-count spelling, read as such
    with a deprecation warning."""
    import math

    from ..errors import FacesrError

    if a.max_pixels is None:
        return None
    try:
        mp = float(a.max_pixels)
    except (TypeError, ValueError):
        raise FacesrError(f"--max-pixels {a.max_pixels!r}: not a number of megapixels") from None
    if not math.isfinite(mp) or mp < 0:
        raise FacesrError(f"--max-pixels must be a finite number of megapixels >= 0, got {a.max_pixels}")
    if mp >= _PIXEL_COUNT_FROM:
        warn(
            a.command,
            f"--max-pixels {a.max_pixels} read as a pixel count ({mp / 1e6:g} megapixels); "
            f"--max-pixels takes megapixels now",
        )
        return int(mp)
    return int(round(mp * 1e6))


def report_skipped(command: str, what: str, messages: list[str]) -> int:
    """List skipped inputs on stderr; return the exit status (1 if any were skipped, else 0)."""
    if not messages:
        return 0
    print(f"facesr {command}: skipped {len(messages)} {what}:", file=sys.stderr)
    for m in messages:
        print(f"  {m}", file=sys.stderr)
    return 1


def check_output_file(path, protected, overwrite: bool, flag: str):
    """:func:`facesr.io.files.check_output_file` (one output file, checked before any work) with the
    ``--overwrite`` hint added when it exists; returns its Path."""
    from ..errors import FacesrError
    from ..io.files import OutputsExistError
    from ..io.files import check_output_file as check

    try:
        return check(path, protected, overwrite, flag)
    except OutputsExistError as exc:
        raise FacesrError(f"{exc} (use --overwrite to replace it)") from None


def model_files(a) -> list:
    """The model files a command reads (``--checkpoint``, ``--model-file``, else the shipped model): outputs never
    replace them, ``--overwrite`` or not."""
    from pathlib import Path

    from ..errors import CheckpointError

    given = [p for p in (getattr(a, "checkpoint", None), getattr(a, "model_file", None)) if p]
    if given:
        return [Path(p) for p in given]
    from ..assets import shipped_checkpoint

    try:
        return [shipped_checkpoint()]
    except CheckpointError:
        return []


def check_outputs(a, files, out, zip_path=None):
    """:func:`facesr.io.check_outputs` (the model files read protected) with the ``--overwrite`` hint added for
    existing outputs."""
    from ..errors import FacesrError
    from ..io.files import OutputsExistError, check_outputs

    try:
        return check_outputs(
            files, a.inputs, out, zip_path, a.overwrite, getattr(a, "skip_existing", False), model_files(a)
        )
    except OutputsExistError as exc:
        raise FacesrError(f"{exc} (use --overwrite to replace)") from None


#: backend -> (pip extra, module it needs)
BACKEND_EXTRAS = {"onnxruntime": ("onnx", "onnxruntime"), "openvino": ("openvino", "openvino")}


def add_backend_options(p) -> None:
    """``--backend torch|onnxruntime|openvino`` and ``--model-file`` (with its deprecated, hidden alias ``--onnx``)."""
    p.add_argument(
        "--backend",
        choices=["torch", *BACKEND_EXTRAS],
        default="torch",
        help="torch (default); onnxruntime or openvino: CPU runtimes in fp32, or an int8 OpenVINO "
        "model from 'facesr export --openvino OUT.xml --int8 LQ_DIR' (docs/performance.md)",
    )
    p.add_argument("--onnx", dest="model_file", action=DeprecatedAlias, new="--model-file", metavar="FILE")
    p.add_argument(
        "--model-file",
        dest="model_file",
        metavar="FILE",
        help="with --backend onnxruntime: an .onnx file; with --backend openvino: an .xml (fp32 or "
        "int8) or .onnx file (default: convert --checkpoint, or the shipped model, on the fly)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads per process (default: all cores; under torchrun 1 per process unless "
        "OMP_NUM_THREADS says otherwise). fp32 outputs are bit-identical between runs with the "
        "same threads per process on the same CPU kind",
    )


def check_backend_args(a) -> None:
    """The flag combinations ``--backend``/``--model-file`` allow, and the backend's extra installed."""
    import importlib
    from pathlib import Path

    from ..errors import FacesrError, MissingExtraError

    if getattr(a, "threads", None) is not None and not 1 <= a.threads <= 1024:
        raise FacesrError(f"--threads must be in 1..1024, got {a.threads}")
    if a.backend == "torch":
        if a.model_file:
            raise FacesrError("--model-file needs --backend onnxruntime or --backend openvino")
        return
    if a.model_file and a.checkpoint:
        raise FacesrError("give --checkpoint or --model-file, not both")
    if a.model_file and getattr(a, "ema", False):
        raise FacesrError("--ema applies to --checkpoint; a --model-file holds one set of weights")
    if str(getattr(a, "device", "auto")).lower() not in ("auto", "cpu"):
        raise FacesrError(f"--device {a.device} applies to --backend torch; {a.backend} runs on the CPU")
    if getattr(a, "amp", False) or getattr(a, "precision", None) in ("bf16", "fp16", "fp32-winograd"):
        raise FacesrError(
            f"--{'amp' if a.amp else 'precision ' + a.precision} applies to --backend torch only "
            f"({a.backend} runs fp32, or the int8 of an int8 model file)"
        )
    if a.backend == "onnxruntime" and a.model_file and Path(a.model_file).suffix.lower() == ".xml":
        raise FacesrError(f"--model-file {a.model_file}: an OpenVINO IR runs with --backend openvino")
    extra, module = BACKEND_EXTRAS[a.backend]
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(extra, f"--backend {a.backend}") from None


def load_restorer(a, device=None, **kw):
    """A :class:`~facesr.inference.Restorer` from ``--checkpoint``/``--device``/``--ema``/``--precision``
    and ``--backend``/``--model-file`` (those present; ``device`` overrides ``--device``)."""
    from ..devices import resolve_device
    from ..inference import Restorer

    backend = getattr(a, "backend", "torch")
    threads = getattr(a, "threads", None)
    if threads is not None and backend == "torch":
        import torch

        torch.set_num_threads(threads)
    elif threads is not None:
        kw["threads"] = threads
    if backend != "torch":
        model_file = getattr(a, "model_file", None)
        if model_file and backend == "onnxruntime":
            return Restorer.from_onnx(model_file, precision=precision_arg(a), **kw)
        if model_file:
            return Restorer.from_openvino(model_file, precision=precision_arg(a), **kw)
        return Restorer.from_checkpoint(
            a.checkpoint, ema=getattr(a, "ema", False), backend=backend, precision=precision_arg(a), **kw
        )
    device = resolve_device(a.device if device is None else device, option="--device")
    return Restorer.from_checkpoint(
        a.checkpoint, device=device, ema=getattr(a, "ema", False), precision=precision_arg(a), **kw
    )
