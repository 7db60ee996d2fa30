"""Files and folders: listing images, expanding command-line inputs, checking output paths, atomic writes, zips.

Messages speak of paths and values ("output folder out/ is the input folder in/");
command modules add the names of their options where they help.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import FacesrError, ImageError, OutputError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
_GLOB_CHARS = set("*?[")


class OutputsExistError(FacesrError):
    """Outputs are already there and overwriting was not allowed; ``paths`` lists them."""

    def __init__(self, message: str, paths: list[str]):
        super().__init__(message)
        self.paths = paths


def real(p: str | os.PathLike) -> Path:
    """The resolved path; unlike ``Path.resolve`` never raises on a symlink loop."""
    return Path(os.path.realpath(p))


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    for test, words in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return words
    return "not a regular file"


class NotRegularFileError(OSError):
    """A path to read names a folder, FIFO, socket or device, not a regular file; ``strerror`` says which."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for binary reading when it is a regular file (symbolic links followed).

    Never blocks: a FIFO is opened non-blocking and then refused, like a folder, socket or device, with
    :class:`NotRegularFileError` (an OSError whose ``strerror`` says what it is, e.g. "a FIFO (named pipe),
    not a regular file").  A missing file raises FileNotFoundError as ``open`` does.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(0, f"{_kind(mode)}, not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str | os.PathLike) -> None:
    """:func:`open_regular` without keeping the file open: FileNotFoundError, NotRegularFileError or another
    OSError unless ``path`` is a regular file that can be opened for reading."""
    with open_regular(path):
        pass


def same_dir(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name the same folder (the same inode when both exist, else the same resolved path)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return real(a) == real(b)


def first(items: list[str], n: int = 5) -> str:
    """The first ``n`` items joined by commas, with a count when there are more."""
    return ", ".join(items[:n]) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def _image_entries(folder: Path) -> list[Path]:
    """Image files in ``folder``, sorted; symlinks that lead nowhere (dangling, loops) are included so that
    reading them fails and they are listed as unreadable rather than silently dropped."""
    out = []
    for p in folder.iterdir():
        if p.suffix.lower() not in IMAGE_EXTS:
            continue
        try:
            ok = p.is_file() or (p.is_symlink() and not p.exists())
        except OSError:  # symlink loop on some Pythons
            ok = True
        if ok:
            out.append(p)
    return sorted(out)


def list_images(folder: str | os.PathLike, what: str = "folder") -> list[Path]:
    """Sorted image files in ``folder``; a clear error if it is missing or has none."""
    folder = Path(folder)
    if not folder.exists():
        raise ImageError(f"{folder}: {what} not found")
    if not folder.is_dir():
        raise ImageError(f"{folder}: {what} is not a folder")
    files = _image_entries(folder)
    if not files:
        raise ImageError(f"{folder}: {what} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
    return files


def images_by_stem(folder: str | os.PathLike, what: str = "folder") -> dict[str, Path]:
    """``{stem: path}`` of the images in ``folder``; ImageError when two share a stem."""
    out: dict[str, Path] = {}
    for f in list_images(folder, what):
        if f.stem in out:
            raise ImageError(f"{folder}: two images share the stem {f.stem!r} ({out[f.stem].name}, {f.name})")
        out[f.stem] = f
    return out


def not_an_input(spec: str) -> str:
    """Why ``spec``, neither a file nor a folder, is no input: missing, a link that leads nowhere, or what it is."""
    try:
        mode = os.stat(spec).st_mode
    except OSError as exc:
        if os.path.islink(spec):
            return "symbolic link that leads nowhere (dangling or a loop)"
        return "no such file or folder" if isinstance(exc, FileNotFoundError) else (exc.strerror or "cannot be read")
    return f"{_kind(mode)}, not an image file or folder"


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, folders -> their image files (sorted), globs -> matching image files (sorted).

    Duplicates (same resolved path) are dropped; order is kept.  A name that is neither
    an existing path nor a pattern with matches raises :class:`FacesrError`.
    """
    files: list[Path] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            found = _image_entries(p)
            if not found:
                raise FacesrError(f"{spec}: folder holds no images ({', '.join(sorted(IMAGE_EXTS))})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif _GLOB_CHARS & set(spec):
            found = sorted(
                Path(q) for q in glob.glob(spec) if os.path.isfile(q) and Path(q).suffix.lower() in IMAGE_EXTS
            )
            if not found:
                raise FacesrError(f"{spec}: pattern matches no image files")
            files.extend(found)
        else:
            raise FacesrError(f"{spec}: {not_an_input(spec)}")
    seen, unique = set(), []
    for f in files:
        key = real(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def check_outputs(
    files: list[Path],
    inputs: list[str],
    out: Path,
    zip_path: Path | None,
    overwrite: bool,
    skip_existing: bool = False,
    protected: list | tuple = (),
) -> dict[Path, Path]:
    """Map each input file to ``out/<stem>.png``, refusing unsafe layouts (:class:`FacesrError`, one line).

    Refuses: two inputs with the same stem; ``out`` equal to an input folder or holding an
    input file; an output image or ``zip_path`` that is one of ``protected`` (the model file read) or
    exists as something other than a regular file; ``zip_path`` equal to an input, a folder, the output
    folder or a folder above it, or in a missing folder; existing outputs without ``overwrite``
    (:class:`OutputsExistError`), except image outputs with ``skip_existing`` (the caller leaves those alone).
    """
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem, []).append(f)
    dup = [f"{s} ({', '.join(p.name for p in ps)})" for s, ps in by_stem.items() if len(ps) > 1]
    if dup:
        raise FacesrError(f"inputs share a stem, so their outputs would collide: {first(dup, 3)}")
    for spec in inputs:
        if Path(spec).is_dir() and same_dir(spec, out):
            raise FacesrError(f"output folder {out} is the input folder {spec}; choose another folder")
    out_r = real(out)
    inside = [str(f) for f in files if real(f).parent == out_r]
    if inside:
        raise FacesrError(f"output folder {out} holds input file(s) {first(inside, 3)}; choose another folder")
    if os.path.lexists(out) and not out.is_dir():  # a link that leads nowhere included
        raise FacesrError(f"output folder {out} exists and is not a folder")
    mapping = {f: out / f"{f.stem}.png" for f in files}
    kept = {real(p): p for p in protected}
    for o in mapping.values():
        if real(o) in kept:
            raise FacesrError(f"output image {o} would replace the model file {kept[real(o)]}; choose another folder")
        _refuse_special(o, "output image")
    clashes = []
    if zip_path is not None:
        if real(zip_path) in {real(f) for f in files}:
            raise FacesrError(f"zip file {zip_path} is one of the inputs")
        if real(zip_path) in kept:
            raise FacesrError(
                f"zip file {zip_path} would replace the model file {kept[real(zip_path)]}; give another name"
            )
        if real(zip_path) in {real(o) for o in mapping.values()}:
            raise FacesrError(f"zip file {zip_path} is one of the output images; give another name")
        if real(zip_path) == out_r or real(zip_path) in out_r.parents:
            raise FacesrError(f"zip file {zip_path} is the output folder {out} or a folder above it; give a file name")
        if zip_path.is_dir():
            raise FacesrError(f"zip file {zip_path} is a folder; give a file name")
        _refuse_special(zip_path, "zip file")
        if not zip_path.parent.is_dir():
            raise FacesrError(f"zip file {zip_path}: folder {zip_path.parent} does not exist")
        if os.path.lexists(zip_path) and not overwrite and not skip_existing:  # a restarted job rebuilds its zip
            clashes.append(str(zip_path))
    if not overwrite:
        if not skip_existing:
            clashes += [str(o) for o in mapping.values() if os.path.lexists(o)]
        if clashes:
            raise OutputsExistError(f"{len(clashes)} output(s) exist: {first(clashes)}", clashes)
    return mapping


def check_output_file(path: str | os.PathLike, protected: list, overwrite: bool, what: str = "output file") -> Path:
    """Check one output file before any work: never one of ``protected`` (inputs, GT, other outputs; refused even
    with ``overwrite``), not a folder, its folder present, and not existing unless ``overwrite``
    (:class:`OutputsExistError`)."""
    path = Path(path)
    resolved = real(path)
    for p in protected:
        if real(p) == resolved:
            raise FacesrError(f"{what} {path} is {p}, which it must not replace")
    if path.is_dir():
        raise FacesrError(f"{what} {path} is a folder; give a file name")
    _refuse_special(path, what)
    if not path.parent.is_dir():
        raise FacesrError(f"{what} {path}: folder {path.parent} does not exist")
    if os.path.lexists(path) and not overwrite:  # a link that leads nowhere is there too
        raise OutputsExistError(f"{what} {path} exists", [str(path)])
    return path


def _refuse_special(path: Path, what: str) -> None:
    """FacesrError when ``path`` exists as a FIFO, socket or device: an output never replaces one (``--overwrite``
    or not; as root, replacing /dev/null would be a disaster)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return  # missing, a dangling link, or unreadable: the write reports it
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise FacesrError(f"{what} {path} exists as {_kind(mode)}, not a regular file; give another name")


def _write_error(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {exc.strerror or type(exc).__name__}")


#: Temporary files this process is writing (``.<name>.<pid>.tmp``): removed by a hard stop on a signal.
_TEMP_FILES: set[Path] = set()
_TEMP_LOCK = threading.Lock()


def track_temp(tmp: Path) -> None:
    """Register ``tmp`` as being written, for :func:`remove_temp_files`."""
    with _TEMP_LOCK:
        _TEMP_FILES.add(tmp)


def untrack_temp(tmp: Path) -> None:
    """``tmp`` was renamed to its final name, or removed."""
    with _TEMP_LOCK:
        _TEMP_FILES.discard(tmp)


def remove_temp_files() -> None:
    """Delete every temporary file still being written (a process about to leave by ``os._exit``).

    Final names are never touched: a file is either whole under its final name, or gone.
    """
    with _TEMP_LOCK:
        pending = list(_TEMP_FILES)
        _TEMP_FILES.clear()
    for tmp in pending:
        _unlink_quietly(tmp)


def temp_name(path: Path) -> Path:
    """The temporary name this process writes ``path`` under before renaming it: ``.<name>.<pid>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def temp_for(path: Path) -> Iterator[Path]:
    """A tracked :func:`temp_name` for ``path``, removed on the way out unless it was renamed to ``path``."""
    tmp = temp_name(path)
    track_temp(tmp)
    try:
        yield tmp
    finally:
        _unlink_quietly(tmp)
        untrack_temp(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace`` (never half-written).

    A failed write (read-only folder, full disk) raises :class:`OutputError` (one line) and leaves
    no temporary file behind.
    """
    path = Path(path)
    try:
        with temp_for(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(path, exc) from None


def _unlink_quietly(p: Path) -> None:
    try:
        if p.exists():
            p.unlink()
    except OSError:
        pass


def text_name(name: str) -> str:
    """A file name as UTF-8 text for a file facesr writes (zip member, CSV row): bytes that are not UTF-8 (Python's
    surrogate escapes) written as ``\\xNN``, the rest unchanged."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def zip_name(p: Path) -> str:
    """A member name for file ``p``: its name, with bytes that are not UTF-8 written as ``\\xNN``."""
    return text_name(p.name)


#: Entry time stored for every zip member: the zip epoch, so the same images always give the same zip bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _zip_entry(name: str) -> zipfile.ZipInfo:
    """A member header that depends on ``name`` only: fixed time, Unix 0644 file, no compression."""
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.create_system = 3  # Unix, whatever the writing platform
    info.external_attr = 0o100644 << 16
    info.compress_type = zipfile.ZIP_STORED
    return info


def write_zip(zip_path: Path, members: list[Path]) -> None:
    """Atomically write a flat zip holding ``members`` under their bare file names, reproducibly.

    Members are stored (PNGs do not compress further) in name order with fixed headers, so the same
    images give the same zip bytes whoever writes them and whenever.
    """
    zip_path = Path(zip_path)
    try:
        with temp_for(zip_path) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                for m in sorted(members, key=zip_name):
                    info = _zip_entry(zip_name(m))
                    info.file_size = os.path.getsize(m)
                    with open(m, "rb") as src, zf.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(tmp, zip_path)
    except OSError as exc:
        raise _write_error(zip_path, exc) from None
