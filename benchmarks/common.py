"""Shared helpers: hardware line, timers (wall and CPU), synthetic faces, result rows and the table.

Every benchmark returns a list of :class:`Row`; ratios are computed inside one
group (rows sharing ``group``), against the group's row marked ``baseline``,
so they always compare numbers measured side by side in the same run.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

# ----------------------------------------------------------------------------- environment


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def gpu_name() -> str | None:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return None


def hardware_line() -> str:
    """One line: CPU model, cores, GPU, library versions, and the load average when measuring."""
    parts = [
        f"CPU: {cpu_model()} x {n_cores()} cores",
        f"GPU: {gpu_name() or 'none'}",
        f"torch {torch.__version__}",
        f"opencv {cv2.__version__}",
        f"numpy {np.__version__}",
        f"python {platform.python_version()}",
    ]
    try:
        la = os.getloadavg()
        parts.append(f"load avg {la[0]:.1f} (others' jobs inflate wall times; CPU-time rates are robust to that)")
    except OSError:  # pragma: no cover
        pass
    return " | ".join(parts)


# ----------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """``n`` items processed in ``wall`` seconds of wall clock and ``cpu`` seconds of this thread's CPU time."""

    n: int
    wall: float
    cpu: float

    @property
    def per_s_wall(self) -> float:
        return self.n / self.wall if self.wall > 0 else float("nan")

    @property
    def per_cpu_s(self) -> float:
        return self.n / self.cpu if self.cpu > 0 else float("nan")


def timed(fn: Callable[[], int], warmup: Callable[[], object] | None = None, cpu_clock=time.thread_time) -> Timing:
    """Run ``warmup()`` untimed, then time ``fn()``, which returns how many items it processed.

    ``cpu_clock``: :func:`time.thread_time` for single-threaded work (robust to
    other processes competing for the cores), :func:`time.process_time` to count
    all threads of this process.
    """
    if warmup is not None:
        warmup()
    c0, w0 = cpu_clock(), time.perf_counter()
    n = fn()
    return Timing(n, time.perf_counter() - w0, cpu_clock() - c0)


def cuda_sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class single_thread:
    """Context: torch and OpenCV on one thread (per-core numbers), restored afterwards."""

    def __enter__(self):
        self.t, self.c = torch.get_num_threads(), cv2.getNumThreads()
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.t)
        cv2.setNumThreads(self.c)


# ----------------------------------------------------------------------------- synthetic data


def synthetic_face(seed: int, size: int = 512) -> np.ndarray:
    """A face-like test image, uint8 RGB HxWx3 in 0-255: smooth two-colour gradient,
    random filled ellipses (head, eyes, mouth), fine random texture (+-6 levels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a, b = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    img = a * (1 - xx[..., None]) * 0.5 + b * (0.5 + 0.5 * yy[..., None])
    img = np.ascontiguousarray(img.astype(np.float32))
    s = size / 512.0
    cx, cy = size // 2 + int(rng.integers(-25, 26) * s), size // 2 + int(rng.integers(-25, 26) * s)
    cv2.ellipse(
        img,
        (cx, cy),
        (int(150 * s), int(195 * s)),
        0,
        0,
        360,
        tuple(map(float, rng.uniform(90, 240, 3))),
        -1,
        cv2.LINE_AA,
    )
    for _ in range(int(rng.integers(6, 12))):
        c = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        ax = (int(rng.integers(5, 60) * s) + 1, int(rng.integers(5, 40) * s) + 1)
        cv2.ellipse(
            img, c, ax, float(rng.uniform(0, 180)), 0, 360, tuple(map(float, rng.uniform(0, 255, 3))), -1, cv2.LINE_AA
        )
    img += rng.normal(0.0, 6.0, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_faces(folder, n: int, size: int = 512) -> list[str]:
    """Write ``n`` synthetic faces as PNG files (RGB content) into ``folder``; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        p = os.path.join(str(folder), f"face_{i:04d}.png")
        cv2.imwrite(p, np.ascontiguousarray(synthetic_face(i, size)[..., ::-1]))
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------- results


@dataclass
class Row:
    """One measured (or skipped) benchmark line."""

    group: str  # rows of a group are compared with its baseline row
    name: str
    value: float | None  # None: skipped
    unit: str
    baseline: bool = False
    note: str = ""
    extra: dict = field(default_factory=dict)

    def skipped(self) -> bool:
        return self.value is None


def skip(group: str, name: str, unit: str, why: str) -> Row:
    return Row(group, name, None, unit, note=f"skipped: {why}")


def _fmt(v: float) -> str:
    if v != v:  # nan
        return "nan"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def format_table(rows: list[Row]) -> str:
    """Fixed-width table; ``ratio`` = value / the group's baseline value (same run, same unit)."""
    base = {}
    for r in rows:
        if r.baseline and not r.skipped():
            base[r.group] = r
    head = ("group", "variant", "value", "unit", "ratio", "note")
    lines = []
    for r in rows:
        b = base.get(r.group)
        if r.skipped():
            ratio = "-"
        elif b is not None and b.unit == r.unit and b.value:
            ratio = "1.00 (base)" if r is b else f"{r.value / b.value:.2f}x"
        else:
            ratio = "-"
        lines.append((r.group, r.name, "-" if r.skipped() else _fmt(r.value), r.unit, ratio, r.note))
    widths = [max(len(head[i]), *(len(l[i]) for l in lines)) if lines else len(head[i]) for i in range(5)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head[:5], widths)) + "  " + head[5]]
    out.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    for l in lines:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(l[:5], widths)) + "  " + l[5])
    return "\n".join(out)


def print_report(title: str, rows: list[Row], file=sys.stdout) -> None:
    print(f"== {title}", file=file)
    print(hardware_line(), file=file)
    print(format_table(rows), file=file)
    file.flush()


def bf16_l1_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One CUDA training step of ``model`` on an (LQ, GT) float batch: bf16 autocast, L1 loss, ``opt``."""

    def step(lq: torch.Tensor, gt: torch.Tensor) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(lq)
        loss = (out.float() - gt).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step
