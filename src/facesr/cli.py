"""``facesr`` command line: registers the commands of :mod:`facesr.commands` and reports errors.

Each command lives in one module of :mod:`facesr.commands` (``add_parser`` + ``run``).
Errors the user can fix (:class:`facesr.errors.FacesrError`: bad config key, missing
folder, unreadable image, foreign checkpoint, missing extra) print one line,
``facesr <cmd>: error: ...``, and exit 2.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import importlib
import io
import os
import sys
from collections.abc import Iterator

#: commands that only run models (training keeps OpenMP's default spinning: 2-13% faster steps)
INFERENCE_COMMANDS = {"predict", "eval", "restore", "serve"}
#: commands with their own SIGINT/SIGTERM handling (a resumable checkpoint; the web server's jobs)
OWN_SIGNAL_HANDLING = {"train", "serve"}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .commands import COMMANDS

    ap = argparse.ArgumentParser(prog="facesr", description="Blind face super-resolution x4 (MSRResNet, MMagic-exact).")
    ap.add_argument("--version", action="version", version=f"facesr {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"facesr.commands.{name}").add_parser(sub)
    return ap


def _escape_unencodable(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: characters a stream cannot encode as backslash escapes, a file name's non-UTF-8
    bytes (surrogate escapes) as ``\\xNN``."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(
        f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c.encode("unicode_escape").decode("ascii")
        for c in bad
    ), exc.end


codecs.register_error("facesr.escape", _escape_unencodable)


@contextlib.contextmanager
def _escaping_streams() -> Iterator[None]:
    """While a command runs, stdout and stderr escape what they cannot encode (a file name that is not UTF-8)
    instead of raising UnicodeEncodeError; their error handlers are restored after."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors in ("strict", "backslashreplace"):
            with contextlib.suppress(ValueError, OSError, AttributeError):
                old = stream.errors
                stream.reconfigure(errors="facesr.escape")
                changed.append((stream, old))
    try:
        yield
    finally:
        for stream, old in changed:
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors=old)


def _command_parser(ap: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    sub = next(x for x in ap._actions if isinstance(x, argparse._SubParsersAction))
    return sub.choices[command]


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not getattr(a, "func", None):
        ap.print_help()
        return 2
    with _escaping_streams():
        return _run(ap, a)


def _run(ap: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    from .commands import check_argument_strings
    from .errors import FacesrError, describe_os_error, one_line

    if (
        a.command in INFERENCE_COMMANDS
        and "torch" not in sys.modules
        and getattr(a, "precision", "auto") in ("auto", "fp32-winograd")
        and not str(getattr(a, "device", "auto")).startswith("cuda")
        and getattr(a, "backend", "torch") == "torch"
    ):
        # idle OpenMP threads sleep instead of spinning for milliseconds after each parallel region, so
        # that precision auto can run Winograd convolutions on several threads (inference/precision.py)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        check_argument_strings(_command_parser(ap, a.command), a)
        return _run_command(a)
    except (FacesrError, FileNotFoundError) as exc:  # FileNotFoundError: a path that vanished mid-run
        print(f"facesr {a.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable or full output folder, a file that vanished: one line, no traceback
        print(f"facesr {a.command}: error: {one_line(describe_os_error(exc))}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            f"facesr {a.command}: error: out of memory (try smaller inputs, --tile, or a smaller batch)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"facesr {a.command}: interrupted", file=sys.stderr)
        return 130


def _run_command(a: argparse.Namespace) -> int:
    """Run the command; SIGINT/SIGTERM stop it within about 1 s at any stage, exit status 130.

    The command runs as one interruptible section of :class:`facesr.training.signals.StopFlag`: the
    signal raises at once in Python code, every atomic write on the way out removes its temporary file,
    and the line says which signal.  When the main thread is inside one long native call (a forward
    pass, an encoder), the watcher thread removes the temporary files still being written and ends the
    process after :data:`~facesr.training.signals.HARD_STOP_S` seconds.  Final file names only ever
    hold whole files, so nothing half-written is left either way.
    """
    if a.command in OWN_SIGNAL_HANDLING:
        return int(a.func(a) or 0)
    import signal

    from .io.files import remove_temp_files
    from .training.signals import StopFlag, StopRequested

    def hard_stop(signum: int, why: str) -> None:
        remove_temp_files()
        print(f"facesr {a.command}: interrupted by {signal.Signals(signum).name} ({why})", file=sys.stderr, flush=True)

    with StopFlag(on_hard_stop=hard_stop) as stop:
        try:
            with stop.interruptible(f"running facesr {a.command}"):
                return int(a.func(a) or 0)
        except StopRequested as s:
            print(f"facesr {a.command}: interrupted by {signal.Signals(s.signum).name}", file=sys.stderr, flush=True)
            import gc

            gc.freeze()  # the interpreter's teardown then skips collecting the model's objects one by one
            return 130


if __name__ == "__main__":
    sys.exit(main())
