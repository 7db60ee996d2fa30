"""The README as a tested script: every ```bash block of README.md (then of docs/guide/*.md) runs, in order.

How the test runs the documents (the rules are also in the README's "Tests" paragraph):

- The tracked files of the repository (``git ls-files``, as they are on disk) are copied to a fresh
  temporary folder, and every ```bash block runs there in document order, each with ``bash -e`` in that
  folder, so a block sees what the blocks before it made.  ``facesr`` runs this interpreter's
  ``python -m facesr.cli`` with the copy's ``src/`` first on ``PYTHONPATH``.
- ``../shared`` beside the copy is either a *mirror* of the real ``../shared`` (every file linked, except that
  each ``data/`` folder keeps only its first :data:`MIRROR_FILES` files, which keeps the run short), or, when
  there is no ``../shared``, a *stand-in* made from the bundled public-domain face (the built-in sample
  faces as HQ folders, their 128x128 area downscales as ``test-lq``, two small "photos").
  ``FACESR_README_SHARED=standin`` forces the stand-in where ``../shared`` exists.
- A command (a line with its ``\\`` continuations) whose comment says ``(needs ...)`` (a GPU, several GPUs,
  a file you bring) or ``(runs until Ctrl-C)`` is not run; the test prints it as skipped.
- ``pip`` is a shell function that prints what it would install: the test runs in the environment that is
  already installed (CI installs every extra first).
- An HTML comment right before a block shortens or skips it; it is invisible on the rendered page::

      <!-- readme-test: append "facesr train configs/" --set train.max_iters=4 -->
      <!-- readme-test: skip REASON -->

  ``append PREFIX ARGS...`` adds ARGS to every command of the block that starts with PREFIX (before its
  comment); several ``append`` lines may share one comment, one per line.  ``skip`` leaves the whole
  block out (REASON says why; the README says it in visible text too).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GUIDES = REPO / "docs" / "guide"
MIRROR_FILES = 6  # files kept per ../shared/data/<folder> in the mirror
BLOCK_TIMEOUT_S = 300  # per block
EXTRAS_USED = ("onnxruntime", "openvino", "nncf", "dlib")  # the export and restore blocks run them
SKIP_MARK = re.compile(r"\((needs [^)]*|runs until Ctrl-C)\)")
DIRECTIVE = re.compile(r"<!--\s*readme-test:(.*?)-->", re.S)
FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass
class Block:
    """One fenced ```bash block: where it is, its lines, and the directives of the comment before it."""

    doc: str
    line: int  # 1-based line of the opening fence
    lines: list[str]
    directives: list[list[str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def documents() -> list[Path]:
    """README.md, then the guides in docs/guide/ (by name)."""
    return [REPO / "README.md", *sorted(GUIDES.glob("*.md"))]


def parse_blocks(text: str, doc: str) -> list[Block]:
    """The ```bash blocks of a Markdown text, with the ``readme-test`` directives just above each."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
        if m.group(1) in ("bash", "sh", "shell", "console"):
            blocks.append(Block(doc, i + 1, lines[i + 1 : end], _directives_before(lines, i)))
        i = end + 1
    return blocks


def _directives_before(lines: list[str], fence: int) -> list[list[str]]:
    """The directive lines of a ``<!-- readme-test: ... -->`` comment ending on the line above ``fence``."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j < 0 or not lines[j].rstrip().endswith("-->"):
        return []
    k = j
    while k >= 0 and "<!--" not in lines[k]:
        k -= 1
    m = DIRECTIVE.search("\n".join(lines[k : j + 1]))
    if not m:
        return []
    return [_directive(line.strip()) for line in m.group(1).strip().splitlines() if line.strip()]


def _directive(line: str) -> list[str]:
    """``skip REASON`` keeps its reason as written; other directives are split like a shell line."""
    if line.split(maxsplit=1)[0] == "skip":
        return line.split(maxsplit=1)
    return shlex.split(line)


def split_comment(command: str) -> tuple[str, str]:
    """``code  # comment`` -> (code, comment); a ``#`` inside quotes or a word does not start a comment."""
    quote = None
    for i, ch in enumerate(command):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip(), command[i + 1 :].strip()
    return command.rstrip(), ""


def commands(block: Block) -> list[str]:
    """The block's commands: each line joined with its ``\\`` continuation lines."""
    out, cur = [], ""
    for line in block.lines:
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1].rstrip() + " "
            continue
        cur += line.strip() if cur else line
        if cur.strip():
            out.append(cur.strip())
        cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def block_script(block: Block) -> tuple[str, list[str]]:
    """The bash script a block runs as, and the commands it leaves out (with their reasons)."""
    appends = [(d[1], d[2:]) for d in block.directives if d and d[0] == "append"]
    script, skipped = [], []
    for cmd in commands(block):
        code, comment = split_comment(cmd)
        if not code:
            continue
        mark = SKIP_MARK.search(comment)
        if mark:
            skipped.append(f"{block.where}: {code}  ({mark.group(1)})")
            script.append(f"echo {shlex.quote(f'readme-test: not run ({mark.group(1)}): {code}')}")
            continue
        for prefix, args in appends:
            if code.startswith(prefix):
                code += " " + " ".join(shlex.quote(a) for a in args)
        script.append(f"echo {shlex.quote('$ ' + code)}")
        script.append(f"{{ {code}\n}} || exit $?")
    return "\n".join(script) + "\n", skipped


PRELUDE = """\
set -e
facesr() { "$FACESR_PYTHON" -m facesr.cli "$@"; }
pip() { echo "readme-test: not run (the environment is installed already): pip $*"; }
"""


def all_blocks() -> list[Block]:
    """Every ```bash block of every document, in order."""
    return [b for doc in documents() for b in parse_blocks(doc.read_text(encoding="utf-8"), doc.name)]


# ------------------------------------------------------------------------------------------- fast checks


def test_parser_reads_blocks_commands_and_directives():
    text = """intro
<!-- readme-test:
append "facesr train configs/" --set train.max_iters=4 data.num_workers=0
-->
```bash
facesr train configs/a.yaml --work-dir runs/a \\
    --set x=1          # trains (on a laptop)
facesr train configs/b.yaml   # big one (needs a GPU)
echo 'a # not a comment'
```

```python
print("not run")
```
"""
    (block,) = parse_blocks(text, "doc.md")
    assert block.line == 5 and block.directives[0][:2] == ["append", "facesr train configs/"]
    script, skipped = block_script(block)
    assert (
        "facesr train configs/a.yaml --work-dir runs/a --set x=1 --set train.max_iters=4 data.num_workers=0" in script
    )
    assert skipped == ["doc.md:5: facesr train configs/b.yaml  (needs a GPU)"]
    assert "echo 'a # not a comment'\n" in script


def test_every_document_block_parses_and_skips_say_why():
    blocks = all_blocks()
    assert len(blocks) >= 10, "the README has lost its command blocks?"
    for b in blocks:
        for d in b.directives:
            assert d and d[0] in ("append", "skip"), f"{b.where}: unknown readme-test directive {d}"
            if d[0] == "skip":
                assert len(d) > 1, f"{b.where}: a skip directive says why"
        block_script(b)


# --------------------------------------------------------------------------------------- the full run


def _copy_tracked_files(dest: Path) -> None:
    """Copy the repository's tracked (and untracked, not ignored) files, as they are on disk, to ``dest``."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the README test copies `git ls-files`")
    for name in filter(None, out.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _mirror_shared(real: Path, dest: Path) -> None:
    """``dest`` links to everything in ``real``, except that each data/ folder keeps its first few files."""
    dest.mkdir()
    for entry in sorted(real.iterdir()):
        if entry.name != "data":
            (dest / entry.name).symlink_to(entry.resolve())
            continue
        (dest / "data").mkdir()
        for sub in sorted(entry.iterdir()):
            if not sub.is_dir():
                (dest / "data" / sub.name).symlink_to(sub.resolve())
                continue
            (dest / "data" / sub.name).mkdir()
            for f in sorted(p for p in sub.iterdir() if p.is_file())[:MIRROR_FILES]:
                (dest / "data" / sub.name / f.name).symlink_to(f.resolve())


def _standin_shared(dest: Path, env: dict) -> None:
    """A ../shared made from the bundled face: HQ folders, 128x128 test-lq, two small photos."""
    code = r"""
import sys, shutil
from pathlib import Path
import cv2, numpy as np
from facesr.assets import builtin_faces_dir, sample_face_path
from facesr.io.images import read_rgb, write_png
data = Path(sys.argv[1]) / "data"
faces = sorted(builtin_faces_dir().glob("face_*.png"))
for name in ("dev-val-hq", "train-hq", "train-hq-celebahq", "dev-val-celebahq"):
    (data / name).mkdir(parents=True)
    for f in faces:
        shutil.copy(f, data / name / f.name)
(data / "test-lq").mkdir()
for i, f in enumerate(faces):
    write_png(data / "test-lq" / f"{i:05d}.png", cv2.resize(read_rgb(f), (128, 128), interpolation=cv2.INTER_AREA))
(data / "whole-photos").mkdir()
face = read_rgb(sample_face_path())
photo = np.full((300, 400, 3), 120, np.uint8)
photo[50:250, 100:300] = cv2.resize(face, (200, 200), interpolation=cv2.INTER_AREA)
write_png(data / "whole-photos" / "photo_00.png", photo)
write_png(data / "whole-photos" / "photo_01.png", cv2.resize(face, (256, 256), interpolation=cv2.INTER_AREA))
"""
    subprocess.run([sys.executable, "-c", code, str(dest)], env=env, check=True, timeout=300)


def _run_block(script: str, cwd: Path, env: dict) -> tuple[int, str, float]:
    """Run one block's script with bash -e; (exit status, stdout + stderr, seconds).  124 = timed out."""
    t0 = time.monotonic()
    try:
        res = subprocess.run(
            ["bash", "-c", PRELUDE + script],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
        rc, out = res.returncode, res.stdout
    except subprocess.TimeoutExpired as e:
        text = e.output.decode(errors="replace") if isinstance(e.output, bytes) else (e.output or "")
        rc, out = 124, text + f"\n(timed out after {BLOCK_TIMEOUT_S} s)"
    return rc, out, time.monotonic() - t0


def _shared_mode() -> str:
    if os.environ.get("FACESR_README_SHARED") == "standin" or not (SHARED / "data").is_dir():
        return "standin"
    return "mirror"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_readme_blocks_run_in_order(tmp_path):
    """Every ```bash block of the README (and the guides) runs, in order, in a fresh copy of the repository."""
    missing = [m for m in EXTRAS_USED if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the README's blocks use every extra; missing here: {', '.join(missing)}")
    repo = tmp_path / "facesr"
    repo.mkdir()
    _copy_tracked_files(repo)
    env = {
        **os.environ,
        "FACESR_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(repo / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    mode = _shared_mode()
    if mode == "mirror":
        _mirror_shared(SHARED, tmp_path / "shared")
    else:
        _standin_shared(tmp_path / "shared", env)
    report, skipped = [], []
    for block in all_blocks():
        skip = next((d for d in block.directives if d[0] == "skip"), None)
        if skip:
            skipped.append(f"{block.where}: whole block ({' '.join(skip[1:])})")
            continue
        script, left_out = block_script(block)
        skipped += left_out
        rc, out, seconds = _run_block(script, repo, env)
        report.append(f"{seconds:6.1f} s  {block.where}")
        with (tmp_path / "readme_test.log").open("a") as log:
            log.write(f"==== {block.where} ({seconds:.1f} s, exit {rc})\n{out}\n")
        assert rc == 0, f"README block {block.where} failed (exit {rc}, ../shared: {mode})\n{out[-6000:]}"
    print(f"\nREADME blocks (../shared: {mode}):\n" + "\n".join(report) + "\nnot run:\n" + "\n".join(skipped))
