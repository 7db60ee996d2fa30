"""One module per ``facesr`` command.

Each module defines ``add_parser(subparsers)`` (its arguments and help) and
``run(args) -> int`` (the work).  Heavy imports stay inside ``run`` so that
``facesr --help`` and ``facesr CMD --help`` start fast.  ``facesr.cli`` only
registers the modules listed in :data:`COMMANDS` and turns
:class:`facesr.errors.FacesrError` into one line.  Library code words its errors
in values; a command checks its own flags and names them in its messages.
"""
from __future__ import annotations

import sys

#: Command modules under ``facesr.commands``, in the order ``facesr --help`` lists them.
COMMANDS: list[str] = ["train", "info", "degrade", "eval", "predict", "plot", "demo", "export", "compare",
                       "restore", "serve"]


def add_set(p) -> None:
    """The ``--set KEY=VALUE`` config override option."""
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. --set train.max_iters=1000 data.num_workers=4 (repeatable)")


PRECISION_HELP = ("auto (default): bf16 on CPUs with AVX512-BF16/AMX and on CUDA GPUs with bf16, fp16 on older "
                  "GPUs, else fp32; fp32: bit-reproducible (e.g. to regenerate a submission exactly)")


def add_model_options(p, ema: bool = True, precision: bool = True, default_precision: str = "auto") -> None:
    """``--checkpoint``, ``--device`` and (optionally) ``--ema`` and ``--precision`` (with its deprecated
    alias ``--amp``): which model runs, where and how."""
    p.add_argument("--checkpoint", help="weights (facesr, MMagic, BasicSR); omitted = shipped model")
    if ema:
        p.add_argument("--ema", action="store_true", help="use the EMA weights of the checkpoint")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    if precision:
        add_precision_options(p, default_precision)


def add_precision_options(p, default: str = "auto") -> None:
    """``--precision auto|fp32|bf16|fp16`` and the deprecated ``--amp`` (= ``--precision bf16``)."""
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=default, help=PRECISION_HELP)
    p.add_argument("--amp", action="store_true", help="deprecated: same as --precision bf16")


def precision_arg(a) -> str | None:
    """The precision asked for by ``--precision``/``--amp`` (None when the command has neither: fp32)."""
    from ..errors import FacesrError
    precision = getattr(a, "precision", None)
    if getattr(a, "amp", False):
        if precision not in (None, "auto", "bf16"):
            raise FacesrError(f"--amp means --precision bf16; it contradicts --precision {precision}")
        print(f"facesr {a.command}: --amp is deprecated; use --precision bf16", file=sys.stderr)
        return "bf16"
    return precision


def report_skipped(command: str, what: str, messages: list[str]) -> int:
    """List skipped inputs on stderr; return the exit status (1 if any were skipped, else 0)."""
    if not messages:
        return 0
    print(f"facesr {command}: skipped {len(messages)} {what}:", file=sys.stderr)
    for m in messages:
        print(f"  {m}", file=sys.stderr)
    return 1


def check_outputs(a, files, out, zip_path=None):
    """:func:`facesr.io.check_outputs` with the ``--overwrite`` hint added for existing outputs."""
    from ..errors import FacesrError
    from ..io.files import OutputsExistError, check_outputs
    try:
        return check_outputs(files, a.inputs, out, zip_path, a.overwrite, getattr(a, "skip_existing", False))
    except OutputsExistError as exc:
        raise FacesrError(f"{exc} (use --overwrite to replace)") from None


def load_restorer(a, device=None, **kw):
    """A :class:`~facesr.inference.Restorer` from ``--checkpoint``/``--device``/``--ema``/``--precision``
    (those present; ``device`` overrides ``--device``)."""
    from ..devices import resolve_device
    from ..inference import Restorer
    device = resolve_device(a.device if device is None else device, option="--device")
    return Restorer.from_checkpoint(a.checkpoint, device=device, ema=getattr(a, "ema", False),
                                    precision=precision_arg(a), **kw)
