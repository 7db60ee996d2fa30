"""Fail when a function or method in the given trees is longer than a limit (default 100 lines).

Usage: python scripts/check_function_length.py [--max N] [PATH ...]   (default PATH: src)
Counts from the ``def`` line (decorators excluded) to the function's last line, docstring included.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def long_functions(path: Path, limit: int) -> list[tuple[int, int, str]]:
    """``(line, length, name)`` of every function in ``path`` longer than ``limit`` lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                out.append((node.lineno, length, node.name))
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=int, default=100, help="longest allowed function, in lines (default 100)")
    ap.add_argument("paths", nargs="*", default=["src"])
    a = ap.parse_args(argv)
    files = [f for p in map(Path, a.paths) for f in ([p] if p.is_file() else sorted(p.rglob("*.py")))]
    bad = [(f, *row) for f in files for row in long_functions(f, a.max)]
    for f, line, length, name in bad:
        print(f"{f}:{line}: {name}() is {length} lines (limit {a.max})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
