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


def printable(text: str) -> str:
    """``text`` safe to print on one line of any terminal or log: bytes of a file name that are not UTF-8
    (Python's surrogate escapes, e.g. ``os.fsdecode(b"\\xff")``) as ``\\xNN``, other lone surrogates as
    ``\\udNNN``, and control and other unprintable characters (newlines, tabs, NUL) as their backslash
    escapes; printable text, spaces included, is unchanged."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        code = ord(c)
        if c.isprintable():
            out.append(c)
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode keeps it
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))  # \\n, \\t, \\x00, \\u2028, ...
    return "".join(out)


def one_line(exc: BaseException | str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``exc``'s message as one printable line (:func:`printable`), cut to ``limit`` characters in the middle so
    that its end (usually the reason) stays (class name if empty).

    A facesr message (or a string) is one line by design, so all of it is kept, with any newline in it (a file
    name's) escaped; of another exception's message only the first non-empty line is kept.
    """
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    if isinstance(exc, BaseException) and not isinstance(exc, FacesrError):
        text = next(line.strip() for line in text.splitlines() if line.strip())
    line = printable(text)
    if len(line) > limit:
        head = (limit - 5) * 2 // 3
        line = line[:head].rstrip() + " ... " + line[-(limit - 5 - head) :].lstrip()
    return line
