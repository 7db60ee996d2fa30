"""Training curves from ``log.jsonl`` files: the reference report's Figure 1.

``facesr plot RUN_DIR [RUN_DIR ...] --out fig.png --metric psnr`` draws the
validation PSNR of each run against iterations (in thousands) or, with
``--x hours``, against training hours (``train_s`` in the log: wall clock without
validation and checkpoints, for equal-time comparisons), one line per run (EMA
weights dashed when logged), with a legend and the best point of each run marked
and annotated.  The figure is written in the format its file name says (:data:`PLOT_FORMATS`: PNG,
JPEG, PDF or SVG), or refused.
"""

from __future__ import annotations

import io
from pathlib import Path

from ..errors import FacesrError, ImageError, printable
from ..io.files import atomic_write_bytes
from ..training.runlog import RunLog

#: File endings a plot is written as, and matplotlib's format for each.
PLOT_FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".pdf": "pdf", ".svg": "svg"}


def check_plot_name(path: str | Path, what: str = "output") -> str:
    """matplotlib's format for ``path``'s ending; FacesrError unless it is one of :data:`PLOT_FORMATS`."""
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_FORMATS:
        raise FacesrError(
            f"{what} {path}: cannot write {suffix or 'a file without an ending'} as a plot; "
            f"name it .png, .jpg, .pdf or .svg"
        )
    return PLOT_FORMATS[suffix]


def plain_text(text: str) -> str:
    """``text`` as matplotlib draws it literally: its dollar signs escaped, so that a name like ``$x$`` or
    ``a$b$c`` is not parsed as mathtext (which draws it differently, or raises on ``$\\foo$``)."""
    return text.replace("$", r"\$")


METRICS = {
    "psnr": ("val", "Validation PSNR (dB)", True),
    "ssim": ("val", "Validation SSIM", True),
    "loss": ("train", "Training loss", False),
    "lr": ("train", "Learning rate", False),
}


def read_log(run_dir: str | Path) -> list[dict]:
    """Records of ``RUN_DIR/log.jsonl`` (or the file itself), read by :class:`~facesr.training.runlog.RunLog`
    (bad lines are skipped: a crash can truncate the last)."""
    log = RunLog.at(run_dir)
    if not log.exists():
        raise ImageError(f"{run_dir}: no log.jsonl found (expected a facesr train work dir)")
    return log.records()


X_AXES = {
    "iters": ("iter", 1000.0, "Iterations (thousands)", "iterations"),
    "hours": ("train_s", 3600.0, "Training hours (wall clock, without validation)", "training hours"),
}


def plot_runs(
    run_dirs: list[str],
    out: str | Path,
    metric: str = "psnr",
    labels: list[str] | None = None,
    title: str | None = None,
    x: str = "iters",
) -> dict:
    """Draw ``metric`` for each run into ``out`` (written atomically, in the format its ending names:
    :func:`check_plot_name`) against ``x`` (``iters`` or ``hours``).  Returns ``{label: best}``
    (``iter`` and ``value``, plus ``hours`` when logged)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fmt = check_plot_name(out)
    if metric not in METRICS:
        raise ImageError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    if labels and len(labels) != len(run_dirs):
        raise ImageError(f"got {len(labels)} labels for {len(run_dirs)} runs")
    kind, ylabel, higher = METRICS[metric]
    if x not in X_AXES:
        raise ImageError(f"x axis {x!r} is not one of {', '.join(X_AXES)}")
    xkey, xdiv, xlabel, xwords = X_AXES[x]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=130)
    bests = {}
    drew = False
    for i, rd in enumerate(run_dirs):
        recs = [r for r in read_log(rd) if r["kind"] == kind]
        label = printable(labels[i] if labels else Path(rd).name)  # a run folder's name: any bytes
        color = f"C{i % 10}"
        for key, style, suffix in ((metric, "-", ""), (f"{metric}_ema", "--", " (EMA)")):
            pts = sorted(
                (r[xkey], r[key], r["iter"])
                for r in recs
                if isinstance(r.get(key), (int, float)) and isinstance(r.get(xkey), (int, float))
            )
            if not pts:
                continue
            xs = [p[0] / xdiv for p in pts]
            ys = [p[1] for p in pts]
            ax.plot(
                xs,
                ys,
                style,
                color=color,
                lw=1.6,
                marker="o" if len(pts) < 40 and kind == "val" else None,
                ms=3,
                label=plain_text(label + suffix),
            )
            drew = True
            if kind == "val":
                j = max(range(len(ys)), key=ys.__getitem__) if higher else min(range(len(ys)), key=ys.__getitem__)
                ax.plot(xs[j], ys[j], "*", color=color, ms=13, mec="black", mew=0.6, zorder=5)
                ax.annotate(
                    f"{ys[j]:.3f}" if metric == "ssim" else f"{ys[j]:.2f}",
                    (xs[j], ys[j]),
                    textcoords="offset points",
                    xytext=(4, 6),
                    fontsize=8,
                    color=color,
                )
                bests[label + suffix] = {
                    "iter": pts[j][2],
                    "value": ys[j],
                    **({"hours": xs[j]} if x == "hours" else {}),
                }
    if not drew:
        plt.close(fig)
        hint = " (logs written before facesr logged train_s have none: use --x iters)" if x == "hours" else ""
        raise ImageError(f"no '{metric}' values in the logs of: {', '.join(map(str, run_dirs))}{hint}")
    if metric == "lr":
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(
        plain_text(printable(title)) if title else f"{ylabel} vs {xwords}" + (" (star = best)" if kind == "val" else "")
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return bests
