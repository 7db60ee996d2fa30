"""``facesr plot``: training curves of one or more runs (see :mod:`facesr.viz.plotting`)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "plot", help="training curves of one or more runs (validation PSNR vs iterations or hours)"
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="figure to write: .png, .jpg, .pdf or .svg (the format its name says)")
    p.add_argument("--metric", default="psnr", choices=["psnr", "ssim", "loss", "lr"])
    p.add_argument("--labels", nargs="+", help="one legend label per run")
    p.add_argument("--title")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument(
        "--x",
        choices=["iters", "hours"],
        default="iters",
        help="x axis: iterations, or training hours (equal-time comparisons; validation time excluded)",
    )
    p.set_defaults(func=run)


def run(a) -> int:
    from ..errors import FacesrError
    from ..io.guard import WriteGuard
    from ..training.runlog import RunLog
    from ..viz.plotting import check_plot_name, plot_runs
    from . import check_output_file

    if a.labels and len(a.labels) != len(a.run_dirs):
        raise FacesrError(f"--labels: got {len(a.labels)} labels for {len(a.run_dirs)} runs")
    check_plot_name(a.out, "--out")  # first: no other kind of file (weights, a log) is ever a plot's name
    logs = [RunLog.at(d).path for d in a.run_dirs]
    WriteGuard().protect(logs, "the log").check_file(a.out, "--out")  # never over a log or a run's files
    check_output_file(a.out, logs, a.overwrite, "--out")
    bests = plot_runs(a.run_dirs, a.out, a.metric, a.labels, a.title, x=a.x)
    for label, b in bests.items():
        at = f" ({b['hours']:.2f} training hours)" if "hours" in b else ""
        print(f"{label}: best {a.metric} {b['value']:.4f} at iter {b['iter']}{at}")
    print(f"wrote {a.out}")
    return 0
