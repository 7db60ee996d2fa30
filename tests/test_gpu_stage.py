"""scripts/gpu_stage.py, the one-call GPU stage, dry-run on the CPU with a tiny budget so it cannot break unseen."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest

from conftest import REPO, make_face, write_rgb_png

SCRIPT = REPO / "scripts" / "gpu_stage.py"


@pytest.mark.slow
def test_gpu_stage_dry_run(tmp_path):
    tr, va = tmp_path / "train", tmp_path / "val"
    tr.mkdir()
    va.mkdir()
    for i in range(4):
        write_rgb_png(tr / f"t{i}.png", make_face(100 + i))
    for i in range(2):
        write_rgb_png(va / f"v{i}.png", make_face(200 + i))
    carry, out = tmp_path / "carry", tmp_path / "out"
    prep = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "prep",
            "--carry",
            str(carry),
            "--total-mib",
            "1000",
            "--train-dir",
            str(tr),
            "--val-dir",
            str(va),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    counts = json.loads(prep.stdout)
    assert counts["train_faces"] == 4 and counts["val_faces"] == 2
    r = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "run",
            "--dry-run",
            "--budget-min",
            "0.9",
            "--out",
            str(out),
            "--carry",
            str(carry),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "eval.json",
        "session.log",
        "stage.safetensors",
        "stage_logs.tar.gz",
    ]
    scores = json.loads((out / "eval.json").read_text())
    assert set(scores) == {"shipped", "stage"} and all("psnr" in v for v in scores.values())
    from facesr.models.weights import read_weights

    new, shipped = (
        read_weights(out / "stage.safetensors"),
        read_weights(REPO / "src/facesr/weights/facesr_default.safetensors"),
    )
    assert (new.arch, new.arch_config) == (shipped.arch, shipped.arch_config)
    with tarfile.open(out / "stage_logs.tar.gz") as tar:
        names = tar.getnames()
    assert "batched/log.jsonl" in names and "batched/config.yaml" in names
    log = (out / "session.log").read_text()
    assert "train (batched degradation)" in log and "fp32 eval" in log


def test_gpu_stage_prep_keeps_to_the_size_limit(tmp_path):
    tr, va = tmp_path / "train", tmp_path / "val"
    tr.mkdir()
    va.mkdir()
    for i in range(6):
        (tr / f"t{i}.jpg").write_bytes(b"x" * 100_000)
    (va / "v.jpg").write_bytes(b"y" * 10)
    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_stage

    tree = gpu_stage.tree_bytes()
    limit_mib = (tree + 10 + 350_000) / 2**20  # room for 3 of the 6 training files
    counts = gpu_stage.prep(tmp_path / "carry", limit_mib, tr, va)
    assert counts["train_faces"] == 3 and counts["val_faces"] == 1
    assert sum(p.stat().st_size for p in (tmp_path / "carry").rglob("*") if p.is_file()) + tree <= limit_mib * 2**20
