"""Comparison sheets: compare_grid with in-memory arrays and ``facesr compare`` on folders."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from facesr.cli import main
from facesr.io.images import read_any
from facesr.viz.compare import compare_grid


def _face(size=64, seed=0):
    """A synthetic 'face': skin disc, two eyes, a mouth, mild noise; uint8 RGB."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), (70, 90, 120), np.uint8)
    c = size // 2
    cv2.circle(img, (c, c), int(size * 0.38), (220, 180, 150), -1)
    for dx in (-1, 1):
        cv2.circle(img, (c + dx * size // 7, int(size * 0.42)), max(1, size // 20), (40, 30, 30), -1)
    cv2.ellipse(img, (c, int(size * 0.66)), (size // 7, size // 20), 0, 0, 180, (150, 60, 60), -1)
    return np.clip(img.astype(int) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)


def _rows(n=2, gt=True):
    rows = []
    for k in range(n):
        hq = _face(64, k)
        lq = cv2.resize(hq, (16, 16), interpolation=cv2.INTER_AREA)
        sr = cv2.GaussianBlur(hq, (3, 3), 0)
        row = {"name": f"face{k}", "lq": lq, "sr": sr}
        if gt:
            row["gt"] = hq
        rows.append(row)
    return rows


def test_compare_grid_in_memory(tmp_path):
    out = tmp_path / "sheet.png"
    sheet = compare_grid(_rows(2), out, title="test sheet")
    assert sheet.dtype == np.uint8 and sheet.ndim == 3
    assert sheet.shape[1] > 4 * 64 and sheet.shape[0] > 2 * 64
    disk = read_any(out)[0]
    np.testing.assert_array_equal(disk, sheet)
    # The SR panel is pasted at native size: its pixels appear verbatim somewhere in the sheet.
    sr = _rows(2)[0]["sr"]
    hit = cv2.matchTemplate(sheet, sr, cv2.TM_SQDIFF)
    y, x = np.unravel_index(np.argmin(hit), hit.shape)
    np.testing.assert_array_equal(sheet[y : y + 64, x : x + 64], sr)


def test_compare_grid_columns_follow_gt():
    with_gt = compare_grid(_rows(1, gt=True))
    without = compare_grid(_rows(1, gt=False))
    assert with_gt.shape[1] > without.shape[1]  # GT column added
    assert with_gt.shape[0] > without.shape[0]  # caption line for PSNR
    zoomed = compare_grid(_rows(1, gt=False), zoom=True)
    assert zoomed.shape[0] > without.shape[0] and zoomed.shape[1] == without.shape[1]


def test_compare_grid_rejects_bad_input():
    rows = _rows(1)
    rows[0]["gt"] = rows[0]["gt"][:32]
    with pytest.raises(ValueError, match="GT"):
        compare_grid(rows)
    with pytest.raises(ValueError):
        compare_grid([])


def test_compare_cli(tmp_path, capsys):
    dirs = {k: tmp_path / k for k in ("lq", "sr", "gt")}
    for d in dirs.values():
        d.mkdir()
    for row in _rows(3):
        for k in dirs:
            Image.fromarray(row[k]).save(dirs[k] / f"{row['name']}.png")
    Image.fromarray(_face(64, 9)).save(dirs["sr"] / "only_sr.png")
    out = tmp_path / "cmp.png"
    rc = main(["compare", str(dirs["lq"]), str(dirs["sr"]), str(dirs["gt"]), "--out", str(out), "--max", "2"])
    assert rc == 0 and out.is_file()
    two = read_any(out)[0]
    rc = main(["compare", str(dirs["lq"]), str(dirs["sr"]), "--out", str(out), "--names", "face2", "face0", "face1"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err  # an existing sheet is kept ...
    assert np.array_equal(read_any(out)[0], two)
    rc = main(
        [
            "compare",
            str(dirs["lq"]),
            str(dirs["sr"]),
            "--out",
            str(out),
            "--names",
            "face2",
            "face0",
            "face1",
            "--overwrite",
        ]
    )  # ... unless asked
    assert rc == 0
    three = read_any(out)[0]
    assert three.shape[0] > two.shape[0]
    capsys.readouterr()
    rc = main(["compare", str(dirs["lq"]), str(dirs["sr"]), "--out", str(out), "--names", "only_sr"])
    err = capsys.readouterr().err
    assert rc == 2 and "only_sr" in err and "LQ" in err
    rc = main(["compare", str(dirs["lq"]), str(dirs["sr"]), "--out", str(dirs["sr"] / "face0.png")])
    assert rc == 2 and "input" in capsys.readouterr().err
