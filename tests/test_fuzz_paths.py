"""Property-based fuzzing (Hypothesis) of the path arguments of every command that takes paths.

For predict, eval, degrade, compare, plot, demo, restore, info and export, ``facesr.cli.main(argv)`` runs
in-process on a small tree of user files with generated path arguments: fitting ones mixed with missing
paths, files where folders are expected and the reverse, inputs and outputs nested in each other or the same,
the checkpoint as an output, FIFOs, folders named like images, symbolic link loops and aliases, names with
spaces, newlines, ``$`` or bytes that are not UTF-8, names over 255 bytes, empty strings and NUL bytes.

Every run must exit 0 with a valid result (1 where unreadable inputs were skipped and listed), or exit 2 with
exactly one stderr line ``facesr CMD: error: ...`` naming a path or argument; never raise, never print a
traceback, never hang (a per-run watchdog, and pytest-timeout per test), and never lose or change a file of
the user's tree (``--overwrite`` may replace only files a command writes and does not read).

CI runs a bounded number of examples; ``FACESR_FUZZ_EXAMPLES=300 pytest tests/test_fuzz_paths.py`` runs a
longer search (docs/robustness.md records what such runs found).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from conftest import fuzz_settings, make_face
from facesr.cli import main
from facesr.errors import printable
from facesr.models import MSRResNet, save_weights

FUZZ = fuzz_settings()
EXAMPLES = FUZZ.max_examples
#: Seconds one command may run before the property calls it a hang.
HANG_S = 60

# ------------------------------------------------------------------------------------------------ the user's tree

UNDECODABLE = os.fsdecode(b"\xff")  # a name byte that is not UTF-8, as Python hands it over
ODD_STEMS = [UNDECODABLE, "nl\nx", "$\\alpha$", "sp ace"]
LQ_ODD, GT_ODD, RUN_ODD = "lq odd\n", f"gt {UNDECODABLE}", "$\\foo$ run"
FIFOS = ["fifo", "fifo.png", "fifo.safetensors", "fifo.yaml", "mixed/fifo.png"]
DIRS = ["dir.png", "dir.safetensors", "dir.zip", "dir.json", "mixed/dir.png"]
LINKS = {  # name: target (relative to the link's folder)
    "loop": "loop",
    "loop.png": "loop.png",
    "mixed/loop.png": "loop.png",
    "dangling.png": "nowhere/x.png",
    "alias_w.safetensors": "w.safetensors",
    "alias_in": "in",
}

#: Pieces of generated paths: the tree's files and folders, its odd entries, and names that do not exist.
ATOMS = [
    *("in", "gt", "in/a.png", "gt/b.png", LQ_ODD, GT_ODD, f"{GT_ODD}/{UNDECODABLE}.png", "mixed", "w.safetensors"),
    *("cfg.yaml", "run", "run/log.jsonl", RUN_ODD, "."),
    *FIFOS[:4],
    *DIRS[:4],
    *LINKS,
    *("missing", "new.png", "new.zip", "new.json", "new.csv", "new.onnx", "new dir", "sp ace.png", "nl\nx.png"),
    *(f"{UNDECODABLE}.png", "$\\beta$.png", "\u00e9.png", "x" * 300 + ".png", "*.png", "[ab].png"),
]
#: Whole arguments that no path may be.
RAW = ["", "\x00", "in\x00", "w.safetensors\x00x", "new\x00.png"]


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()


class Blobs(dict):
    """``{path under the root: bytes}`` of the user's files (a short repr in Hypothesis' reports)."""

    def __repr__(self) -> str:
        return f"<{len(self)} user files>"


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """The bytes of the user's files: 16x16 LQ and 64x64 GT faces, a tiny checkpoint, a config, a run log."""

    d = tmp_path_factory.mktemp("blobs")
    save_weights(d / "w.safetensors", MSRResNet(mid_channels=4, num_blocks=1))
    recs = [{"iter": i, "kind": "val", "psnr": 20.0 + i, "train_s": 10.0 * i} for i in range(1, 4)]
    lq = [_png(make_face(i, 16)) for i in range(2)]
    gt = [_png(make_face(i, 64)) for i in range(2)]
    files = Blobs({"in/a.png": lq[0], "in/b.png": lq[1], "gt/a.png": gt[0], "gt/b.png": gt[1], "mixed/a.png": lq[0]})
    for k, stem in enumerate(ODD_STEMS):
        files[f"{LQ_ODD}/{stem}.png"] = lq[k % 2]
        files[f"{GT_ODD}/{stem}.png"] = gt[k % 2]
    files["w.safetensors"] = (d / "w.safetensors").read_bytes()
    files["cfg.yaml"] = b"seed: 1\n"
    files["run/log.jsonl"] = files[f"{RUN_ODD}/log.jsonl"] = "".join(json.dumps(r) + "\n" for r in recs).encode()
    return files


@pytest.fixture(scope="module", autouse=True)
def one_face_detector():
    """restore's dlib detector built once (it takes ~0.3 s to build, longer than the rest of a run)."""
    import functools

    import facesr.faces.detect as detect

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(detect, "load_detector", functools.cache(detect.load_detector))
        yield


def _build(root: Path, blobs: dict) -> None:
    for rel, data in blobs.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    for rel in FIFOS:
        os.mkfifo(root / rel)
    for rel in DIRS:
        (root / rel).mkdir()
    for rel, target in LINKS.items():
        os.symlink(target, root / rel)


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed, FIFOs never opened): its kind and content."""
    snap: dict[str, tuple] = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            mode = os.lstat(p).st_mode
            if stat.S_ISLNK(mode):
                snap[p] = ("link", os.readlink(p))
            elif stat.S_ISREG(mode):
                snap[p] = ("file", Path(p).read_bytes())
            else:
                snap[p] = ("dir" if stat.S_ISDIR(mode) else "fifo",)
    return snap


# ------------------------------------------------------------------------------------------------ arguments


@dataclass(frozen=True)
class Slot:
    """A path argument: ``rel`` under the tree's root (absolute or as given, relative to the root as the current
    folder); ``role``: ``read`` (an input), ``out-file`` or ``out-dir``; ``name``: the option or metavar."""

    rel: str
    absolute: bool
    role: str
    name: str

    def value(self, root: Path) -> str:
        return f"{root}/{self.rel}" if self.absolute and self.rel not in RAW else self.rel


@st.composite
def slot(draw, good: list[str], role: str, name: str, fit: int = 7):
    """A path for one argument: mostly (``fit`` in 10) a fitting value, so that the other arguments are reached,
    else a random path of :data:`ATOMS` or (1 in 10) a raw impossible one."""
    kind = draw(st.integers(0, 9))
    if kind < fit:
        rel = draw(st.sampled_from(good))
    elif kind < 9:
        rel = "/".join(draw(st.lists(st.sampled_from(ATOMS), min_size=1, max_size=3)))
        rel += draw(st.sampled_from(["", "", "", "/"]))
    else:
        rel = draw(st.sampled_from(RAW))
    return Slot(rel, draw(st.booleans()), role, name)


def opt(flag: str, s) -> st.SearchStrategy:
    """``[flag, slot]`` or nothing."""
    return st.one_of(st.just([]), s.map(lambda v: [flag, v]))


OVERWRITE = st.sampled_from([[], ["--overwrite"]])
CPU = ["--device", "cpu", "--precision", "fp32"]


@st.composite
def predict_argv(draw):
    inputs = draw(
        st.lists(slot(["in", "in/a.png", LQ_ODD, "in/*.png", "mixed"], "read", "INPUT"), min_size=1, max_size=2)
    )
    out = draw(slot(["out", f"out {UNDECODABLE}", "new dir/out"], "out-dir", "--out"))
    ckpt = draw(slot(["w.safetensors"], "read", "--checkpoint"))
    zip_ = draw(opt("--zip", slot(["out.zip", "out/x.zip"], "out-file", "--zip")))
    mode = draw(st.sampled_from([[], ["--overwrite"], ["--skip-existing"]]))
    return ["predict", *inputs, "--out", out, "--checkpoint", ckpt, *zip_, *mode, *CPU]


@st.composite
def eval_argv(draw):
    outs = draw(opt("--csv", slot(["s.csv", f"s {UNDECODABLE}.csv"], "out-file", "--csv")))
    outs += draw(opt("--json", slot(["s.json"], "out-file", "--json")))
    outs += draw(OVERWRITE)
    if draw(st.booleans()):
        pred = draw(slot(["gt", GT_ODD], "read", "PRED_DIR"))
        return ["eval", pred, draw(slot(["gt", GT_ODD], "read", "GT_DIR")), *outs]
    ckpt = draw(slot(["w.safetensors"], "read", "--checkpoint"))
    lq = draw(slot(["in", LQ_ODD], "read", "--lq"))
    gt = draw(slot(["gt", GT_ODD], "read", "--gt"))
    save = draw(opt("--save", slot(["saved"], "out-dir", "--save")))
    return ["eval", "--checkpoint", ckpt, "--lq", lq, "--gt", gt, *save, *outs, *CPU]


@st.composite
def degrade_argv(draw):
    hq = draw(slot(["gt", GT_ODD, "in"], "read", "HQ_DIR"))
    out = draw(slot(["deg", f"deg {UNDECODABLE}"], "out-dir", "OUT_DIR"))
    cfg = draw(opt("--config", slot(["cfg.yaml"], "read", "--config")))
    return ["degrade", hq, out, *cfg, *draw(OVERWRITE)]


@st.composite
def compare_argv(draw):
    lq = draw(slot(["in", LQ_ODD], "read", "LQ_DIR"))
    sr = draw(slot(["gt", GT_ODD], "read", "SR_DIR"))
    gt = draw(st.one_of(st.just([]), slot(["gt", GT_ODD], "read", "GT_DIR").map(lambda v: [v])))
    out = draw(slot(["cmp.png", f"cmp {UNDECODABLE}.png"], "out-file", "--out"))
    return ["compare", lq, sr, *gt, "--out", out, *draw(OVERWRITE)]


@st.composite
def plot_argv(draw):
    runs = draw(st.lists(slot(["run", RUN_ODD, "run/log.jsonl"], "read", "RUN_DIR"), min_size=1, max_size=2))
    out = draw(slot(["plot.png", "plot.svg", "plot.pdf"], "out-file", "--out"))
    title = draw(st.sampled_from([[], ["--title", "$\\foo$ \ufffd"], ["--title", f"a$b {UNDECODABLE}"]]))
    return ["plot", *runs, "--out", out, *title, *draw(OVERWRITE)]


@st.composite
def demo_argv(draw):
    # fewer fitting values than elsewhere: a demo that runs takes ~0.35 s (a 512x512 face degraded, restored, scored)
    image = draw(opt("--image", slot(["gt/a.png"], "read", "--image", fit=5)))
    out = draw(opt("--out", slot(["demo.png", f"demo {UNDECODABLE}.png"], "out-file", "--out", fit=5)))
    ckpt = draw(slot(["w.safetensors"], "read", "--checkpoint", fit=5))
    return ["demo", "--rows", "1", *image, *out, "--checkpoint", ckpt, "--device", "cpu", *draw(OVERWRITE)]


@st.composite
def restore_argv(draw):
    inputs = draw(st.lists(slot(["gt", "gt/a.png", GT_ODD], "read", "PHOTO_OR_VIDEO"), min_size=1, max_size=2))
    out = draw(slot(["rest", f"rest {UNDECODABLE}"], "out-dir", "--out"))
    ckpt = draw(slot(["w.safetensors"], "read", "--checkpoint"))
    return ["restore", *inputs, "--out", out, "--checkpoint", ckpt, "--detector", "hog-upright", *CPU, *draw(OVERWRITE)]


@st.composite
def info_argv(draw):
    if draw(st.booleans()):
        return ["info", "--config", draw(slot(["cfg.yaml"], "read", "--config")), "--shape", "3", "8", "8"]
    return ["info", "--checkpoint", draw(slot(["w.safetensors"], "read", "--checkpoint")), "--shape", "3", "8", "8"]


@st.composite
def export_argv(draw):
    ckpt = draw(slot(["w.safetensors"], "read", "--checkpoint"))
    onnx = draw(slot(["m.onnx", f"m {UNDECODABLE}.onnx"], "out-file", "--onnx"))
    return ["export", "--checkpoint", ckpt, "--onnx", onnx, *draw(OVERWRITE)]


COMMANDS = {
    "predict": predict_argv(),
    "eval": eval_argv(),
    "degrade": degrade_argv(),
    "compare": compare_argv(),
    "plot": plot_argv(),
    "demo": demo_argv(),
    "restore": restore_argv(),
    "info": info_argv(),
    "export": export_argv(),
}


# ------------------------------------------------------------------------------------------------ the checks


class Hang(Exception):
    pass


@contextlib.contextmanager
def watchdog(seconds: float):
    """Raise :class:`Hang` in the command after ``seconds``; pytest-timeout's own alarm is put back after."""
    old_handler = signal.getsignal(signal.SIGALRM)
    old_left, _ = signal.getitimer(signal.ITIMER_REAL)
    t0 = time.monotonic()

    def hung(*_):
        raise Hang(f"still running after {seconds} s")

    signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_left > 0:
            signal.setitimer(signal.ITIMER_REAL, max(old_left - (time.monotonic() - t0), 0.01))


def _names_something(line: str, slots: list[Slot], root: Path) -> bool:
    """True when the error ``line`` names one of the path arguments (whole, its start, or its last part), a file
    of the tree, or the option of an empty one."""
    words, starts = set(), set()
    for s in slots:
        v = s.value(root)
        if v:
            words |= {printable(v), printable(os.path.normpath(v)), printable(os.path.basename(v.rstrip("/")))}
            starts.add(printable(v)[:60])  # a long path is cut in the middle
        words.add(s.name)
    # a file found inside a folder argument (an unreadable image, a link that leads nowhere) is named by itself
    words |= {"a.png", "b.png", *(printable(f"{stem}.png") for stem in ODD_STEMS)}
    words |= {printable(os.path.basename(rel)) for rel in [*FIFOS, *DIRS, *LINKS]}
    return any(w and re.search(rf"(?<![\w]){re.escape(w)}(?![\w])", line) for w in words) or any(
        w and re.search(rf"(?<![\w]){re.escape(w)}", line) for w in starts
    )


def _changed(before: dict, after: dict) -> list[str]:
    return [p for p, entry in before.items() if after.get(p) != entry]


def _may_change(path: str, slots: list[Slot], root: Path, overwrite: bool) -> bool:
    """Whether the command may have replaced the user's file ``path``: only with ``--overwrite``, only a file it
    names as an output (or one right inside an output folder) and never one it reads."""
    if not overwrite:
        return False
    real = os.path.realpath(path)

    def at(s: Slot) -> str:  # relative values are relative to the root, the command's current folder
        return os.path.realpath(os.path.join(root, s.value(root)))

    def reads(s: Slot) -> bool:
        return real == at(s) or os.path.dirname(real) == at(s)

    if any(reads(s) for s in slots if s.role == "read"):
        return False
    for s in slots:
        if s.value(root) and s.role == "out-file" and at(s) == real:
            return True
        if s.value(root) and s.role == "out-dir" and os.path.dirname(real) == at(s):
            return True
    return False


def _valid_result(command: str, argv: list[str], out: str) -> None:
    """What exit 0 promises, checked loosely per command."""
    flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    if command in ("predict", "restore"):
        assert "wrote" in out and Path(flags["--out"]).is_dir()
        assert any(p.suffix == ".png" for p in Path(flags["--out"]).iterdir())
    elif command == "eval":
        assert "PSNR" in out
        for flag in ("--json", "--csv"):
            if flag in flags:
                assert Path(flags[flag]).stat().st_size > 0
        if "--json" in flags:
            json.loads(Path(flags["--json"]).read_text(encoding="utf-8"))
    elif command == "degrade":
        assert (Path(argv[2]) / "params.jsonl").is_file()
    elif command in ("compare", "plot", "demo"):
        target = Path(flags.get("--out", "facesr_demo.png"))
        assert target.is_file() and target.stat().st_size > 100
    elif command == "info":
        assert "params:" in out
    elif command == "export":
        assert Path(flags["--onnx"]).stat().st_size > 100


def _check_run(command: str, slots_argv: list, root: Path, capsys) -> None:
    slots = [x for x in slots_argv if isinstance(x, Slot)]
    argv = [x.value(root) if isinstance(x, Slot) else x for x in slots_argv]
    before = _snapshot(root)
    capsys.readouterr()  # nothing left over from an earlier example
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with watchdog(HANG_S):
            rc = main(argv)
        cap = capsys.readouterr()
        if rc == 0:
            _valid_result(command, argv, cap.out)
    finally:
        os.chdir(cwd)
    err = cap.err
    event(f"exit {rc}")  # pytest --hypothesis-show-statistics counts the outcomes
    assert "Traceback" not in err and "Traceback" not in cap.out, err
    if rc == 1:  # unreadable inputs were skipped and listed; the rest was written
        assert command in ("predict", "restore", "degrade") and "skipped" in err, err
    elif rc == 2:
        lines = err.strip().split("\n")
        assert len(lines) == 1, f"not one line: {err!r}"
        assert lines[0].startswith(f"facesr {command}: error: "), err
        assert _names_something(lines[0], slots, root), f"names no path or argument: {err!r}"
    else:
        assert rc == 0, (rc, err)
    after = _snapshot(root)
    overwrite = "--overwrite" in argv
    bad = [p for p in _changed(before, after) if not _may_change(p, slots, root, overwrite)]
    assert not bad, f"user files lost or changed: {[ascii(p) for p in bad]} by {argv!a} (rc {rc}, stderr {err!r})"


@pytest.mark.timeout(120 + 6 * EXAMPLES)
@pytest.mark.parametrize("command", list(COMMANDS))
@FUZZ
@given(data=st.data())
def test_path_arguments_give_a_result_or_one_line(command, data, blobs, tmp_path_factory, capsys):
    slots_argv = data.draw(COMMANDS[command], label="argv")
    root = tmp_path_factory.mktemp(command)
    _build(root, blobs)
    _check_run(command, slots_argv, root, capsys)
    shutil.rmtree(root)


# ------------------------------------------------------------------------------------------------ what it found
# One plain example per finding of the fuzzing (docs/robustness.md, "Fuzzing path arguments").


def _cli(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line(rc, err, command, *needles):
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"facesr {command}: error: "), err
    for n in needles:
        assert n in err, (n, err)


def _faces(folder: Path, size: int, stems=("a", "b")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(stems):
        (folder / f"{stem}.png").write_bytes(_png(make_face(i, size)))  # cv2.imwrite crashes on undecodable names
    return folder


@pytest.mark.timeout(60)
def test_a_fifo_as_checkpoint_or_image_is_refused_without_waiting(tmp_path, capsys, ckpt):
    fifo = tmp_path / "w.safetensors"
    os.mkfifo(fifo)
    rc, _, err = _cli(capsys, "info", "--checkpoint", fifo)
    _one_line(rc, err, "info", str(fifo), "FIFO")
    rc, _, err = _cli(capsys, "predict", _faces(tmp_path / "in", 16), "--out", tmp_path / "o", "--checkpoint", fifo)
    _one_line(rc, err, "predict", str(fifo), "FIFO")
    image = tmp_path / "face.png"
    os.mkfifo(image)
    rc, _, err = _cli(capsys, "demo", "--image", image, "--out", tmp_path / "d.png", "--checkpoint", ckpt)
    _one_line(rc, err, "demo", str(image), "FIFO")
    rc, _, err = _cli(capsys, "predict", image, "--out", tmp_path / "o", "--checkpoint", ckpt)
    _one_line(rc, err, "predict", str(image), "FIFO")
    assert not (tmp_path / "o").exists() and not (tmp_path / "d.png").exists()


@pytest.mark.parametrize("flag", ["--zip", "--out-zip-above"])
def test_predict_never_writes_its_zip_over_the_checkpoint_or_the_output_folder(tmp_path, capsys, ckpt, flag):
    before = Path(ckpt).read_bytes()
    inputs = _faces(tmp_path / "in", 16)
    if flag == "--zip":  # the checkpoint itself, or a link to it, as the zip: refused even with --overwrite
        os.symlink(ckpt, tmp_path / "alias.zip")
        for target in (ckpt, tmp_path / "alias.zip"):
            argv = ["predict", inputs, "--out", tmp_path / "o", "--checkpoint", ckpt, "--zip", target]
            rc, _, err = _cli(capsys, *argv, "--overwrite")
            _one_line(rc, err, "predict", str(target), "model file")
    else:  # the output folder, or a folder above it, as the zip: refused before anything is written
        for out, target in ((tmp_path / "o", tmp_path / "o"), (tmp_path / "z" / "o", tmp_path / "z")):
            rc, _, err = _cli(capsys, "predict", inputs, "--out", out, "--checkpoint", ckpt, "--zip", target)
            _one_line(rc, err, "predict", str(target), "output folder")
            assert not out.exists()
    assert Path(ckpt).read_bytes() == before


@pytest.mark.parametrize("flag", ["--json", "--csv"])
def test_eval_never_writes_its_report_over_the_checkpoint(tmp_path, capsys, ckpt, flag):
    before = Path(ckpt).read_bytes()
    lq, gt = _faces(tmp_path / "lq", 16), _faces(tmp_path / "gt", 64)
    argv = ["eval", "--checkpoint", ckpt, "--lq", lq, "--gt", gt, flag, ckpt, "--overwrite", "--device", "cpu"]
    rc, _, err = _cli(capsys, *argv)
    _one_line(rc, err, "eval", flag, str(ckpt))
    assert Path(ckpt).read_bytes() == before


@pytest.mark.parametrize(
    "argv,name",
    [
        (["info", "--checkpoint", "w\x00.safetensors"], "--checkpoint w\\x00.safetensors"),
        (["plot", "run", "--out", "p\x00.png"], "--out p\\x00.png"),
        (["compare", "lq", "sr", "--out", "c.png", "--title", "a\x00"], "--title a\\x00"),
        (["predict", "in\x00", "--out", "o"], "INPUT in\\x00"),
        (["predict", "in", "--out", ""], "--out: empty path"),
        (["predict", "", "--out", "o"], "INPUT: empty path"),
        (["eval", "--checkpoint", "", "--lq", "a", "--gt", "b"], "--checkpoint: empty path"),
    ],
)
def test_nul_bytes_and_empty_paths_are_refused_in_one_line(tmp_path, monkeypatch, capsys, argv, name):
    monkeypatch.chdir(tmp_path)
    rc, _, err = _cli(capsys, *argv)
    _one_line(rc, err, argv[0], name)
    assert list(tmp_path.iterdir()) == []


def test_one_line_escapes_control_characters_and_undecodable_bytes_and_keeps_the_reason():
    from facesr.errors import FacesrError, one_line

    name = "a\nb\t" + UNDECODABLE + "\u2028c"
    assert printable(name) == "a\\nb\\t\\xff\\u2028c" and printable("sp ace \u00e9") == "sp ace \u00e9"
    assert one_line(FacesrError(f"{name}: not found")) == "a\\nb\\t\\xff\\u2028c: not found"
    assert one_line(ValueError("first line\nsecond line")) == "first line"
    long = one_line(FacesrError("/" + "x" * 400 + ": File name too long"))
    assert len(long) == 300 and long.startswith("/xxx") and " ... " in long and long.endswith("File name too long")


def test_undecodable_and_odd_names_print_escaped_and_write_utf8_reports(tmp_path, capsys, ckpt):
    odd = [UNDECODABLE, "nl\nx", "$x$"]
    lq, gt = _faces(tmp_path / f"lq {UNDECODABLE}", 16, odd), _faces(tmp_path / "gt", 64, odd)
    out = tmp_path / f"out {UNDECODABLE}"
    rc, so, _ = _cli(capsys, "predict", lq, "--out", out, "--checkpoint", ckpt, "--precision", "fp32")
    assert rc == 0 and "out \\xff" in so and len(list(out.iterdir())) == 3  # stdout is strict UTF-8 under capsys
    csv = tmp_path / "s.csv"
    rc, so, _ = _cli(capsys, "eval", "--checkpoint", ckpt, "--lq", lq, "--gt", gt, "--csv", csv, "--device", "cpu")
    assert rc == 0 and "\\xff" in csv.read_bytes().decode("utf-8")
    rc, so, _ = _cli(capsys, "eval", out, gt, "--csv", tmp_path / "t.csv")
    assert rc == 0 and "\\xff" in so and "nl\\nx" in so  # one table row per image
    rc, _, err = _cli(capsys, "degrade", gt, tmp_path / f"deg {UNDECODABLE}")
    assert rc == 0 and len(list((tmp_path / f"deg {UNDECODABLE}").glob("*.png"))) == 3, err


def test_plot_labels_and_titles_are_plain_text(tmp_path, capsys):
    recs = [{"iter": i, "kind": "val", "psnr": 20.0 + i} for i in range(1, 4)]
    runs = []
    for name in ("$\\foo$ run", f"run {UNDECODABLE}"):  # mathtext that does not parse; a name that is not UTF-8
        (tmp_path / name).mkdir()
        (tmp_path / name / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        runs.append(tmp_path / name)
    for fmt in ("png", "svg", "pdf"):
        out = tmp_path / f"p.{fmt}"
        rc, so, err = _cli(capsys, "plot", *runs, "--out", out, "--title", "$\\bar$ title")
        assert rc == 0 and out.stat().st_size > 100, err
        assert "$\\foo$ run: best psnr" in so and "run \\xff: best psnr" in so


def test_outputs_never_replace_a_fifo_and_inputs_that_are_not_files_say_what_they_are(tmp_path, capsys):
    pred = _faces(tmp_path / "pred", 16)
    fifo = tmp_path / "s.json"
    os.mkfifo(fifo)
    rc, _, err = _cli(capsys, "eval", pred, pred, "--json", fifo, "--overwrite")
    _one_line(rc, err, "eval", str(fifo), "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    os.symlink("loop.png", tmp_path / "loop.png")
    for spec, why in ((fifo, "FIFO (named pipe), not an image file"), (tmp_path / "loop.png", "leads nowhere")):
        rc, _, err = _cli(capsys, "predict", spec, "--out", tmp_path / "o")
        _one_line(rc, err, "predict", str(spec), why)


def test_compare_names_the_folders_without_a_common_stem(tmp_path, capsys):
    lq, sr = _faces(tmp_path / "lq", 16, ["a"]), _faces(tmp_path / "sr", 64, ["b"])
    rc, _, err = _cli(capsys, "compare", lq, sr, "--out", tmp_path / "c.png")
    _one_line(rc, err, "compare", f"LQ {lq} (1)", f"SR {sr} (1)")


def test_a_link_that_leads_nowhere_is_an_existing_output_and_loops_never_raise(tmp_path, capsys, monkeypatch, ckpt):
    monkeypatch.chdir(tmp_path)
    lq, sr = _faces(tmp_path / "lq", 16), _faces(tmp_path / "sr", 64)
    os.symlink("loop.png", "loop.png")
    os.symlink("nowhere.png", "facesr_demo.png")
    for argv in (["plot", "run", "--out", "loop.png"], ["compare", lq, sr, "--out", "loop.png"]):
        rc, _, err = _cli(capsys, *argv)
        _one_line(rc, err, argv[0], "loop.png exists", "--overwrite")
    rc, _, err = _cli(capsys, "demo", "--rows", "1", "--checkpoint", ckpt, "--device", "cpu")
    assert rc == 0 and "facesr_demo_2.png" in err  # the first free name; the link stays
    assert os.readlink("loop.png") == "loop.png" and os.readlink("facesr_demo.png") == "nowhere.png"


def test_size_mismatches_name_the_two_folders(tmp_path, capsys, ckpt):
    lq, gt = _faces(tmp_path / "lq", 16), _faces(tmp_path / "gt", 16)
    rc, _, err = _cli(capsys, "eval", "--checkpoint", ckpt, "--lq", lq, "--gt", gt, "--device", "cpu")
    _one_line(rc, err, "eval", f"({lq} -> {gt})", "16x16 vs GT 16x16")
