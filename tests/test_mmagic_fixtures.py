"""``facesr degrade --rng mmagic`` against LQ images made by MMagic 1.2.0 itself.

Uses ../shared/fixtures/mmagic-degradation (outside the repository; skipped when absent).
The fixtures were made with OpenCV 4.9: bit-exact agreement is expected with
OpenCV < 4.12; newer OpenCV changed some resize/filter rounding, so there at
most 0.3% of the pixels of an image may differ, by at most 5 levels.
"""

from __future__ import annotations

import json
from collections import defaultdict

import cv2
import numpy as np
import pytest

from facesr.cli import main
from facesr.io.images import read_rgb


def _cv_version() -> tuple[int, int]:
    major, minor = cv2.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


EXACT = _cv_version() < (4, 12)


@pytest.fixture
def fixtures(shared_dir):
    root = shared_dir / "fixtures" / "mmagic-degradation"
    hq_dir = shared_dir / "data" / "dev-val-hq"
    if not (root / "index.jsonl").is_file() or not hq_dir.is_dir():
        pytest.skip(f"{root} or {hq_dir} missing")
    by_seed = defaultdict(list)
    for line in (root / "index.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            by_seed[int(rec["seed"])].append(rec)
    return root, hq_dir, dict(by_seed)


def test_degrade_reproduces_mmagic(fixtures, tmp_path, capsys):
    root, hq_dir, by_seed = fixtures
    assert by_seed, "empty fixture index"
    report = []
    for seed, recs in sorted(by_seed.items()):
        # Only the images the fixture lists: link them into a private HQ folder.
        src = tmp_path / f"hq{seed}"
        src.mkdir()
        for rec in recs:
            (src / rec["hq"]).symlink_to(hq_dir / rec["hq"])
        out = tmp_path / f"lq{seed}"
        rc = main(["degrade", str(src), str(out), "--rng", "mmagic", "--seed", str(seed)])
        assert rc == 0, capsys.readouterr().err
        for rec in recs:
            ours = read_rgb(out / (rec["hq"].rsplit(".", 1)[0] + ".png"))
            ref = read_rgb(root / rec["lq"])
            assert ours.shape == ref.shape == (128, 128, 3)
            diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
            frac = float(np.mean(diff.max(axis=2) > 0))  # share of pixels with any channel different
            report.append((rec["lq"], frac, int(diff.max())))
    if EXACT:
        bad = [r for r in report if r[2] != 0]
        assert not bad, f"not bit-exact with OpenCV {cv2.__version__}: {bad[:5]}"
    else:
        bad = [r for r in report if r[1] > 0.003 or r[2] > 5]
        assert not bad, f"beyond tolerance with OpenCV {cv2.__version__}: {bad[:5]}"
