"""``facesr compare``: a side-by-side sheet LQ | bicubic | SR | GT, images matched by stem across folders.

The drawing is :func:`facesr.viz.compare.compare_grid`.
"""

from __future__ import annotations

from pathlib import Path

from . import add_max_pixels_option

#: Most rows one sheet draws (--max and --names).
MAX_ROWS = 64


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compare", help="side-by-side sheet LQ | bicubic | SR | GT with PSNR captions")
    p.add_argument("lq_dir", metavar="LQ_DIR")
    p.add_argument("sr_dir", metavar="SR_DIR")
    p.add_argument("gt_dir", nargs="?", metavar="GT_DIR", help="ground truth; adds a GT column and PSNR captions")
    p.add_argument("--out", required=True, help="picture to write: .png, .jpg or .webp")
    p.add_argument(
        "--names", nargs="+", metavar="STEM", help="image stems to show (default: the first --max in all folders)"
    )
    p.add_argument("--max", type=int, default=6, help=f"rows when --names is not given (default 6, at most {MAX_ROWS})")
    p.add_argument("--zoom", action="store_true", help="add a magnified crop of the eye region under each panel")
    p.add_argument("--title", help="title line at the top")
    p.add_argument("--sr-title", default="SR (facesr)", help="column title of the SR panels")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_max_pixels_option(p)
    p.set_defaults(func=run)


def run(a) -> int:
    """``facesr compare LQ_DIR SR_DIR [GT_DIR] --out FILE.png [--names ...] [--max N] [--zoom]``."""
    from ..errors import FacesrError, ImageError
    from ..io.files import images_by_stem, real
    from ..io.images import check_image_name, read_any
    from ..viz.compare import compare_grid
    from . import check_output_file, max_pixels_arg

    if not 1 <= a.max <= MAX_ROWS:
        raise FacesrError(f"--max must be in 1..{MAX_ROWS}, got {a.max}")
    if a.names and len(set(a.names)) > MAX_ROWS:
        raise FacesrError(f"--names: {len(set(a.names))} stems, at most {MAX_ROWS} rows fit one sheet")
    check_image_name(a.out, "--out")
    cap = max_pixels_arg(a)
    lq = images_by_stem(a.lq_dir, "LQ folder")
    sr = images_by_stem(a.sr_dir, "SR folder")
    gt = images_by_stem(a.gt_dir, "GT folder") if a.gt_dir else None
    folders = [("LQ", lq), ("SR", sr)] + ([("GT", gt)] if gt is not None else [])
    where = {"LQ": a.lq_dir, "SR": a.sr_dir, "GT": a.gt_dir}
    if a.names:
        missing = [
            f"{n} (not in {', '.join(w for w, d in folders if n not in d)})"
            for n in a.names
            if any(n not in d for _, d in folders)
        ]
        if missing:
            raise FacesrError(f"--names: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        stems = list(dict.fromkeys(a.names))
    else:
        common = sorted(set(sr).intersection(lq, *([gt] if gt is not None else [])))
        if not common:
            each = ", ".join(f"{w} {where[w]} ({len(d)})" for w, d in folders)
            raise FacesrError(f"no image stem is present in all of {each}")
        stems = common[: a.max]
    out = Path(a.out)
    used = {real(d[s]) for _, d in folders for s in stems}  # real: never raises on a symbolic link loop
    if real(out) in used:
        raise FacesrError(f"--out {out} is one of the input images")
    check_output_file(out, [], a.overwrite, "--out")
    rows = []
    for s in stems:
        lq_img = read_any(lq[s], cap)[0]
        sr_img = read_any(sr[s], cap)[0]
        row = {"name": s, "lq": lq_img, "sr": sr_img}
        if gt is not None:
            g = read_any(gt[s], cap)[0]
            if g.shape != sr_img.shape:
                raise ImageError(
                    f"{gt[s]}: GT {g.shape[1]}x{g.shape[0]} does not match SR {sr[s]} "
                    f"{sr_img.shape[1]}x{sr_img.shape[0]}"
                )
            row["gt"] = g
        rows.append(row)
    sheet = compare_grid(rows, out, sr_title=a.sr_title, title=a.title, zoom=a.zoom)
    print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]}, {len(rows)} image(s))")
    return 0
