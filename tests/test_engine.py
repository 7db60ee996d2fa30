"""Training engine: LR schedule in the log, exact resume, non-finite loss, DDP (gloo), bad input, plots."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from facesr.cli import main
from facesr.config import load_config
from facesr.io.images import write_png
from facesr.training import trainer as trainer_mod
from facesr.training.schedules import cosine_restart_lr
from facesr.training.state import load_checkpoint
from facesr.training.trainer import TrainingError, train

REPO = Path(__file__).resolve().parents[1]


def _faces(folder: Path, n: int = 4, size: int = 64) -> Path:
    """Small synthetic 'faces': smooth colour gradients with an ellipse and texture, uint8 RGB."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        img = np.stack([yy * 200 + 30 * i, xx * 180, (1 - yy) * 150 + 20], -1)
        mask = ((xx - 0.5) ** 2 / 0.08 + (yy - 0.5) ** 2 / 0.12) < 1
        img[mask] = [210, 160, 140]
        img += rng.normal(0, 6, img.shape)
        write_png(folder / f"face_{i}.png", np.clip(img, 0, 255).astype(np.uint8))
    return folder


TINY = [
    "data.hq_size=64",
    "degradation.up.size=64",
    "degradation.final.size=16",
    "model.mid_channels=8",
    "model.num_blocks=1",
    "train.batch_size=2",
    "data.num_workers=0",
    "train.deterministic=true",
    "train.log_interval=1",
    "train.val_interval=5",
    "train.ckpt_interval=3",
    "train.keep_last=2",
]


def tiny_cfg(tmp_path: Path, *extra: str):
    hq = _faces(tmp_path / "hq") if not (tmp_path / "hq").exists() else tmp_path / "hq"
    return load_config(None, TINY + [f"data.train_hq_dir={hq}", f"data.val_hq_dir={hq}", *extra])


def read_log(wd: Path) -> list[dict]:
    return [json.loads(line) for line in (wd / "log.jsonl").read_text().splitlines()]


def test_reference_lr_values():
    base, per, eta = 2e-4, [150_000, 150_000], 1e-7
    assert cosine_restart_lr(0, base, per, None, eta) == base
    assert cosine_restart_lr(75_000, base, per, None, eta) == pytest.approx(1.0005e-4, rel=1e-6)
    assert cosine_restart_lr(149_999, base, per, None, eta) == pytest.approx(1.00000002e-7, rel=1e-6)
    assert cosine_restart_lr(150_000, base, per, None, eta) == base
    assert cosine_restart_lr(100_000, base, [100_000] * 5, [1, 0.5, 1, 1, 1], eta) == pytest.approx(1e-4)


def test_logged_lr_matches_closed_form_across_restarts(tmp_path):
    cfg = tiny_cfg(
        tmp_path,
        "train.max_iters=34",
        "sched.periods=[10, 20]",
        "sched.eta_min=1e-6",
        "train.val_interval=100",
        "train.ckpt_interval=100",
    )
    train(cfg, tmp_path / "wd", quiet=True)
    lines = [r for r in read_log(tmp_path / "wd") if r["kind"] == "train"]
    assert [r["iter"] for r in lines] == list(range(1, 35))
    for r in lines:
        n = r["iter"] - 1  # the iteration that was trained with this lr
        total = 30
        t_n = min(n, total - 1)
        period, start = (10, 0) if t_n < 10 else (20, 10)
        expected = 1e-6 + (2e-4 - 1e-6) * (1 + math.cos(math.pi * (t_n - start) / period)) / 2
        assert r["lr"] == pytest.approx(expected, rel=1e-12, abs=0)
        assert "loss" in r and math.isfinite(r["loss"])
    assert lines[10]["lr"] == 2e-4  # iteration n=10 restarts


def _final_weights(wd: Path, it: int) -> dict:
    return load_checkpoint(wd / "checkpoints" / f"iter_{it}.pt")


def test_resume_is_bit_identical(tmp_path):
    common = ["train.ckpt_interval=4", "sched.periods=[6, 6]", "train.val_interval=6"]
    full = tiny_cfg(tmp_path, "train.max_iters=12", *common)
    train(full, tmp_path / "a", quiet=True)
    part = tiny_cfg(tmp_path, "train.max_iters=7", *common)  # stops at 7: not on a ckpt boundary
    train(part, tmp_path / "b", quiet=True)
    resumed = tiny_cfg(tmp_path, "train.max_iters=12", *common)
    train(resumed, tmp_path / "b", resume=True, quiet=True)
    a, b = _final_weights(tmp_path / "a", 12), _final_weights(tmp_path / "b", 12)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    assert a["best"] == b["best"]
    la = [r for r in read_log(tmp_path / "a")]
    lb = [r for r in read_log(tmp_path / "b")]
    # Every iteration's loss and lr, and every validation, are the same (b's log spans two runs).
    for ra in la:
        if ra["kind"] == "train":
            rb = next(r for r in lb if r["iter"] == ra["iter"] and r["kind"] == "train")
            assert ra["loss"] == rb["loss"] and ra["lr"] == rb["lr"]
        else:
            rb = next(r for r in lb if r["iter"] == ra["iter"] and r["kind"] == "val")
            assert ra["psnr"] == rb["psnr"] and ra["psnr_ema"] == rb["psnr_ema"]


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    real = trainer_mod.get_loss("l1")
    calls = {"n": 0}

    def poisoned(pred, gt):
        calls["n"] += 1
        loss = real(pred, gt)
        return loss * float("nan") if calls["n"] >= 5 else loss

    monkeypatch.setattr(trainer_mod, "get_loss", lambda name: poisoned)
    cfg = tiny_cfg(
        tmp_path, "train.max_iters=20", "train.log_interval=10", "train.ckpt_interval=3", "train.val_interval=100"
    )
    with pytest.raises(TrainingError, match="non-finite"):
        train(cfg, tmp_path / "wd", quiet=True)
    ckpts = sorted((tmp_path / "wd" / "checkpoints").glob("iter_*.pt"))
    assert [p.name for p in ckpts] == ["iter_3.pt"]
    state = load_checkpoint(ckpts[0])
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_sigint_saves_resumable_checkpoint(tmp_path):
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "wd"
    args = [sys.executable, "-m", "facesr.cli", "train", "--work-dir", str(wd)]
    for o in TINY + [
        f"data.train_hq_dir={hq}",
        "train.max_iters=100000",
        "train.ckpt_interval=100000",
        "train.val_interval=100000",
    ]:
        args += ["--set", o]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (
        (wd / "log.jsonl").exists() and (wd / "log.jsonl").read_text().count("\n") >= 3
    ):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    ckpts = list((wd / "checkpoints").glob("iter_*.pt"))
    assert len(ckpts) == 1
    state = load_checkpoint(ckpts[0])
    assert state["iter"] >= 3 and "resume" in err


@pytest.mark.slow
def test_ddp_gloo_two_processes_matches_single_process(tmp_path):
    hq = _faces(tmp_path / "hq")
    common = TINY + [
        f"data.train_hq_dir={hq}",
        "train.max_iters=4",
        "train.ckpt_interval=4",
        "train.val_interval=100",
        "train.ema_momentum=null",
        "data.flip=false",
        "train.device=cpu",
    ]  # gloo on CPU, also on a 1-GPU machine (2 ranks cannot share cuda:1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Two ranks x batch 2 = effective batch 4 ...
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--rdzv-endpoint=localhost:0",
        "--rdzv-backend=c10d",
        "-m",
        "facesr.cli",
        "train",
        "--work-dir",
        str(tmp_path / "ddp"),
    ]
    for o in common:
        args += ["--set", o]
    r = subprocess.run(args, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    # ... equals one process with batch 4 (same global sample stream, averaged gradients).
    single = load_config(None, common + ["train.batch_size=4"])
    train(single, tmp_path / "single", quiet=True)
    a = _final_weights(tmp_path / "ddp", 4)["model"]
    b = _final_weights(tmp_path / "single", 4)["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-4), k
    # Only rank 0 wrote the log, once per iteration.
    its = [rec["iter"] for rec in read_log(tmp_path / "ddp") if rec["kind"] == "train"]
    assert its == [1, 2, 3, 4]


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_train_bad_inputs_give_one_line_errors(tmp_path, capsys):
    hq = _faces(tmp_path / "hq")
    base = ["train", "--work-dir", str(tmp_path / "wd")]
    sets = [x for o in TINY for x in ("--set", o)]

    code, err = _cli(capsys, *base, *sets, "--set", "train.bogus=1")
    assert code == 2 and "train.bogus: unknown key" in err and err.count("\n") == 1

    code, err = _cli(capsys, *base, *sets, "--set", f"data.train_hq_dir={tmp_path / 'nope'}")
    assert code == 2 and "nope" in err and "not found" in err

    (tmp_path / "empty").mkdir()
    code, err = _cli(capsys, *base, *sets, "--set", f"data.train_hq_dir={tmp_path / 'empty'}")
    assert code == 2 and "holds no images" in err

    lq, gt = tmp_path / "lq", tmp_path / "gt"
    _faces(lq, 2, 16)
    _faces(gt, 3, 64)
    code, err = _cli(
        capsys,
        *base,
        *sets,
        "--set",
        f"data.train_hq_dir={hq}",
        "--set",
        f"data.val_lq_dir={lq}",
        "--set",
        f"data.val_gt_dir={gt}",
    )
    assert code == 2 and "unmatched pairs" in err and "face_2" in err

    code, err = _cli(capsys, *base, *sets, "--set", f"data.train_hq_dir={hq}", "--set", "model.max_params=100")
    assert code == 2 and "model.max_params" in err and "over the cap" in err

    code, err = _cli(capsys, *base, *sets, "--set", f"data.train_hq_dir={hq}", "--resume", str(tmp_path / "missing.pt"))
    assert code == 2 and "missing.pt" in err and "not found" in err

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    code, err = _cli(capsys, *base, *sets, "--set", f"data.train_hq_dir={hq}", "--resume", str(foreign))
    assert code == 2 and "not a facesr training checkpoint" in err

    code, err = _cli(capsys, *base, *sets, "--set", f"data.train_hq_dir={hq}", "--resume")
    assert code == 2 and "no checkpoint found" in err


def test_plot_renders_multiple_real_runs(tmp_path, capsys):
    for name, lr in (("run_a", "2e-4"), ("run_b", "5e-4")):
        cfg = tiny_cfg(
            tmp_path, "train.max_iters=10", "train.val_interval=2", f"optim.lr={lr}", "train.ckpt_interval=100"
        )
        train(cfg, tmp_path / name, quiet=True)
    out = tmp_path / "fig.png"
    code = main(["plot", str(tmp_path / "run_a"), str(tmp_path / "run_b"), "--out", str(out), "--labels", "A", "B"])
    assert code == 0 and out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    vals = [r for r in read_log(tmp_path / "run_a") if r["kind"] == "val"]
    best = max(vals, key=lambda r: r["psnr"])
    assert f"A: best psnr {best['psnr']:.4f} at iter {best['iter']}" in printed
    assert main(["plot", str(tmp_path / "run_a"), "--out", str(tmp_path / "lr.png"), "--metric", "lr"]) == 0
    # --x hours: against training time (train_s, logged on every train and val record)
    assert main(["plot", str(tmp_path / "run_a"), "--out", str(tmp_path / "h.png"), "--x", "hours"]) == 0
    hours = best["train_s"] / 3600
    assert (
        f"best psnr {best['psnr']:.4f} at iter {best['iter']} ({hours:.2f} training hours)" in capsys.readouterr().out
    )
    old = tmp_path / "old"  # a log without train_s (older facesr): one clear line
    old.mkdir()
    (old / "log.jsonl").write_text(
        "\n".join(json.dumps({k: v for k, v in r.items() if k != "train_s"}) for r in read_log(tmp_path / "run_a"))
    )
    assert main(["plot", str(old), "--out", str(tmp_path / "o.png"), "--x", "hours"]) == 2
    assert "use --x iters" in capsys.readouterr().err


def test_quickstart_falls_back_to_builtin_faces(tmp_path, capsys, monkeypatch):
    # The preset's own ../shared paths are missing relative to tmp_path: the built-in faces stand in.
    monkeypatch.chdir(tmp_path)
    small = [
        "model.mid_channels=4",
        "model.num_blocks=0",
        "train.batch_size=1",
        "train.max_iters=2",
        "data.num_workers=0",
        "train.val_interval=2",
        "train.precision=fp32",
        "train.channels_last=false",
    ]
    cfg = load_config(REPO / "configs" / "quickstart.yaml", small)
    summary = train(cfg, tmp_path / "wd", quiet=True)
    assert "built-in sample faces" in capsys.readouterr().err
    assert summary["iter"] == 2 and summary["best"] is not None  # validated on the built-in faces
    written = load_config(tmp_path / "wd" / "config.yaml")
    assert "builtin_faces" in written.data.train_hq_dir


def test_explicit_missing_data_folder_is_an_error_not_a_fallback(tmp_path, capsys):
    code = main(
        [
            "train",
            str(REPO / "configs" / "quickstart.yaml"),
            "--work-dir",
            str(tmp_path / "wd"),
            "--set",
            f"data.train_hq_dir={tmp_path / 'typo'}",
            "train.max_iters=2",
            "train.precision=fp32",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "typo" in err and "not found" in err
    # (without ../shared the preset's own val folder still falls back, as it should; the train folder must not)
    assert not any(line.startswith("data.train_hq_dir") and "built-in" in line for line in err.splitlines())
    assert not (tmp_path / "wd").exists()


def test_crop_schedule_grows_patches_and_resumes_at_the_right_size(tmp_path, monkeypatch):
    """data.crop_schedule: progressive LQ patches (e.g. 48 -> 96 -> 128), by iteration; a resumed run
    picks the size of the iteration it resumes at."""
    from facesr.data import datasets

    seen: list[int] = []
    real_getitem = datasets.HQDegradeDataset.__getitem__

    def spy(self, i):
        lq, gt = real_getitem(self, i)
        seen.append(lq.shape[-1])
        assert gt.shape[-1] == 4 * lq.shape[-1]
        return lq, gt

    monkeypatch.setattr(datasets.HQDegradeDataset, "__getitem__", spy)
    cfg = tiny_cfg(
        tmp_path,
        "train.max_iters=7",
        "data.crop_schedule=[[0, 8], [3, 12], [5, 16]]",
        "train.val_interval=100",
        "train.keep_last=5",
    )
    train(cfg, tmp_path / "wd", quiet=True)
    assert seen == [8] * 6 + [12] * 4 + [16] * 4  # batch 2: iterations 0-2, 3-4, 5-6
    crops = [(r["iter"], r["crop_size"]) for r in read_log(tmp_path / "wd") if r["kind"] == "crop"]
    assert crops == [(3, 12), (5, 16)]

    seen.clear()  # resume from the checkpoint at iteration 3 (ckpt_interval 3): patch 12, then 16
    cfg = tiny_cfg(
        tmp_path,
        "train.max_iters=7",
        "data.crop_schedule=[[0, 8], [3, 12], [5, 16]]",
        "train.val_interval=100",
        "train.keep_last=5",
    )
    train(cfg, tmp_path / "wd", resume=str(tmp_path / "wd" / "checkpoints" / "iter_3.pt"), quiet=True)
    assert seen == [12] * 4 + [16] * 4


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["data.crop_schedule=[[1, 8]]"], "data.crop_schedule"),
        (["data.crop_schedule=[[0, 8], [0, 12]]"], "data.crop_schedule"),
        (["data.crop_schedule=[[0, 200]]"], "data.crop_schedule"),
        (["data.crop_schedule=[[0, 8]]", "data.crop_size=8"], "data.crop_size"),
        (["data.crop_schedule=[[0, 8]]", "train.time_budget_min=5", "sched.periods=[100]"], "train.time_budget_min"),
        (["data.crop_schedule=[8, 12]"], "data.crop_schedule"),
    ],
)
def test_crop_schedule_rules(overrides, key):
    from facesr.errors import ConfigError

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, overrides)


def test_plot_never_replaces_a_file_without_overwrite(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path, "train.max_iters=2", "train.val_interval=2", "train.ckpt_interval=100")
    train(cfg, tmp_path / "run", quiet=True)
    out = tmp_path / "fig.png"
    out.write_bytes(b"my picture")
    assert main(["plot", str(tmp_path / "run"), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"my picture"
    log = tmp_path / "run" / "log.jsonl"  # the run's own log: refused even with --overwrite
    assert main(["plot", str(tmp_path / "run"), "--out", str(log), "--overwrite"]) == 2
    assert "as a plot" in capsys.readouterr().err and log.read_text().startswith("{")
    assert main(["plot", str(tmp_path / "run"), "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
