"""--max-pixels: one unit (megapixels) in every command that decodes images; the old pixel-count spelling is read
with a warning; an over-cap file is "over the cap", never "unreadable"."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facesr.cli import main


@pytest.fixture
def pairs(tmp_path):
    for d, size in (("lq", 16), ("gt", 64)):
        (tmp_path / d).mkdir()
        Image.fromarray(np.full((size, size, 3), 90, np.uint8)).save(tmp_path / d / "a.png")
    return tmp_path


@pytest.mark.parametrize("value,refused", [("0.001", True), ("0.004", True), ("0.005", False), ("1000", False)])
def test_eval_folders_cap_in_megapixels(pairs, capsys, value, refused):
    # the GT is 64x64 = 4,096 pixels = 0.004096 megapixels
    rc = main(["eval", str(pairs / "gt"), str(pairs / "gt"), "--max-pixels", value])
    err = capsys.readouterr().err
    if refused:
        assert rc == 2 and "over the cap" in err and "unreadable" not in err
    else:
        assert rc == 0, err


def test_old_pixel_count_spelling_is_read_with_a_warning(pairs, capsys):
    rc = main(["eval", str(pairs / "gt"), str(pairs / "gt"), "--max-pixels", "1000"])
    assert rc == 0
    rc = main(["eval", str(pairs / "gt"), str(pairs / "gt"), "--max-pixels", "10000"])  # 10,000 pixels
    err = capsys.readouterr().err
    assert rc == 0 and "read as a pixel count" in err  # 64x64 = 4,096 pixels fit under 10,000
    rc = main(["eval", str(pairs / "gt"), str(pairs / "gt"), "--max-pixels", "12000", "--json", str(pairs / "x.json")])
    assert rc == 0


@pytest.mark.parametrize("value", ["inf", "-1", "nan", "abc"])
def test_bad_caps_are_one_line(pairs, capsys, value):
    rc = main(["compare", str(pairs / "lq"), str(pairs / "gt"), "--out", str(pairs / "s.png"), "--max-pixels", value])
    err = capsys.readouterr().err
    assert rc == 2 and "--max-pixels" in err and "Traceback" not in err and not (pairs / "s.png").exists()


def test_compare_applies_the_cap(pairs, capsys):
    rc = main(["compare", str(pairs / "lq"), str(pairs / "gt"), "--out", str(pairs / "s.png"), "--max-pixels", "0.001"])
    assert rc == 2 and "over the cap" in capsys.readouterr().err


def test_degrade_applies_the_cap(pairs, capsys):
    rc = main(["degrade", str(pairs / "gt"), str(pairs / "lq_out"), "--max-pixels", "0.001"])
    err = capsys.readouterr().err
    assert rc == 1 and "over the cap" in err
    rc = main(["degrade", str(pairs / "gt"), str(pairs / "bad_out"), "--max-pixels", "-2"])
    assert rc == 2 and not (pairs / "bad_out").exists()
