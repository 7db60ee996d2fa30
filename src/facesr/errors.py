"""The one error base class of facesr.

Every error a user can fix (a bad config key, a missing folder, an unreadable
image, a foreign checkpoint, a missing optional extra) derives from
:class:`FacesrError`.  The CLI prints such an error as one line,
``facesr CMD: error: <one_line(exc)>``, and exits 2; the web app shows the same
line.  Library code words its messages in terms of *values* ("tile size must be
>= 0"); only command modules name command-line flags.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 300


class FacesrError(Exception):
    """Base class of every user-fixable facesr error; its message is one readable line."""


class BadValueError(FacesrError, ValueError):
    """An argument has a value outside its allowed range; the message names the value, not a flag."""


class ConfigError(FacesrError, ValueError):
    """Bad configuration; the message names the dotted key and what is wrong."""


class ImageError(FacesrError, ValueError):
    """An image file could not be read or has an unsupported layout."""


class CheckpointError(FacesrError, ValueError):
    """A checkpoint could not be read or does not fit the model."""


class DeviceError(FacesrError, ValueError):
    """The requested compute device is not available."""


class TrainingError(FacesrError, RuntimeError):
    """Training stopped for a reason the user must see."""


class OutputError(FacesrError, OSError):
    """An output could not be written (read-only folder, full disk); nothing half-written is left behind."""


class MissingExtraError(FacesrError, ImportError):
    """An optional dependency group (a pip extra) is not installed."""

    def __init__(self, extra: str, what: str):
        super().__init__(f"{what} needs the '{extra}' extra: pip install \"facesr[{extra}]\"")
        self.extra = extra


def describe_os_error(exc: OSError) -> str:
    """``path: reason`` of an OSError (``strerror`` without the ``[Errno N]`` prefix)."""
    why = exc.strerror or type(exc).__name__
    where = exc.filename if exc.filename is not None else ""
    if isinstance(where, bytes):
        where = where.decode("utf-8", "backslashreplace")
    return f"{where}: {why}" if where != "" else why


def one_line(exc: BaseException | str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The first non-empty line of ``exc``'s message, cut to ``limit`` characters (class name if empty)."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    if len(line) > limit:
        line = line[: limit - 3].rstrip() + "..."
    return line
