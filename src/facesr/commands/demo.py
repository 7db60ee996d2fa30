"""``facesr demo``: the whole job end to end on a face that ships with facesr (see :mod:`facesr.viz.demo`)."""

from __future__ import annotations

import os
import sys
import time

from . import add_max_pixels_option, add_model_options, max_pixels_arg

#: Most rows one demo sheet draws (each is a 512x512 restore and four panels).
MAX_ROWS = 32


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="degrade the bundled sample face, restore it, write a side-by-side picture")
    p.add_argument(
        "--out",
        help="picture to write, .png, .jpg or .webp (default facesr_demo.png, or facesr_demo_2.png, "
        "... if that exists)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--image", help="use this 512x512 HQ face instead of the bundled one")
    p.add_argument("--seed", type=int, default=0, help="first degradation seed (default 0)")
    p.add_argument(
        "--rows", type=int, default=3, help=f"how many degradations (seeds seed..seed+rows-1; 1..{MAX_ROWS})"
    )
    add_model_options(p, ema=False, precision=False)
    add_max_pixels_option(p)
    p.set_defaults(func=run)


def _output_path(a) -> str:
    """``--out``, checked (never the --image, existing only with --overwrite); without it the first free
    name of facesr_demo.png, facesr_demo_2.png, ... so a second demo never replaces the first."""
    from . import check_output_file

    if a.out is None:
        k = 1
        while os.path.lexists("facesr_demo.png" if k == 1 else f"facesr_demo_{k}.png"):
            k += 1
        return "facesr_demo.png" if k == 1 else f"facesr_demo_{k}.png"
    from ..io.images import check_image_name

    check_image_name(a.out, "--out")
    check_output_file(a.out, [a.image] if a.image else [], a.overwrite, "--out")
    return a.out


def run(a) -> int:
    import numpy as np

    from ..assets import sample_face_path
    from ..data.seeding import MAX_SEED
    from ..errors import FacesrError
    from ..viz.demo import make_demo
    from . import load_restorer

    if not 1 <= a.rows <= MAX_ROWS:
        raise FacesrError(f"--rows must be in 1..{MAX_ROWS}, got {a.rows}")
    if not 0 <= a.seed <= MAX_SEED - a.rows + 1:
        raise FacesrError(f"--seed must be in 0..{MAX_SEED - a.rows + 1}, got {a.seed}")
    cap = max_pixels_arg(a)
    a.out = _output_path(a)
    t0 = time.perf_counter()
    restorer = load_restorer(a)
    _, rows = make_demo(restorer, a.image or sample_face_path(), [a.seed + k for k in range(a.rows)], a.out, cap)
    print(f"{'seed':>4}  {'degradation':<44} {'bicubic PSNR/SSIM':>18}  {'facesr PSNR/SSIM':>17}")
    for r in rows:
        print(
            f"{r.seed:>4}  {r.describe():<44} {r.bicubic_psnr:8.2f} / {r.bicubic_ssim:.4f}  "
            f"{r.sr_psnr:8.2f} / {r.sr_ssim:.4f}"
        )
    mb, ms = np.mean([r.bicubic_psnr for r in rows]), np.mean([r.sr_psnr for r in rows])
    mbs, mss = np.mean([r.bicubic_ssim for r in rows]), np.mean([r.sr_ssim for r in rows])
    print(f"mean  {'':<44} {mb:8.2f} / {mbs:.4f}  {ms:8.2f} / {mss:.4f}   (facesr {ms - mb:+.2f} dB)")
    print(f"wrote {a.out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
