"""Training that accumulates: --init-from (weights only, lineage) and the wall-clock budget planner."""

from __future__ import annotations

import json

import pytest
import torch

from facesr.cli import main
from facesr.errors import CheckpointError
from facesr.models import build_model, read_weights, save_weights
from facesr.training import trainer as trainer_mod
from facesr.training import validation as validation_mod
from facesr.training.trainer import train
from test_engine import read_log, tiny_cfg


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_init_from_loads_weights_only_and_records_lineage(tmp_path):
    cfg = tiny_cfg(tmp_path, "train.max_iters=2", "train.val_interval=2")
    train(cfg, tmp_path / "a", quiet=True)
    a_best = tmp_path / "a" / "best.safetensors"
    a_weights = read_weights(a_best).state_dict

    # Stage B starts from A's weights: a 0-lr run keeps them exactly (the optimiser is fresh).
    cfg_b = tiny_cfg(
        tmp_path,
        "train.max_iters=2",
        "train.val_interval=2",
        "optim.lr=1e-30",
        "sched.type=constant",
        "train.ema_momentum=null",
    )
    train(cfg_b, tmp_path / "b", quiet=True, init_from=a_best)
    b = read_weights(tmp_path / "b" / "best.safetensors")
    for k, v in a_weights.items():
        torch.testing.assert_close(b.state_dict[k], v, rtol=0, atol=1e-6)
    init = [r for r in read_log(tmp_path / "b") if r["kind"] == "init"]
    assert len(init) == 1 and init[0]["init_from"] == str(a_best) and len(init[0]["sha256"]) == 64
    lineage = json.loads(b.metadata["lineage"])
    assert [e["init_from"] for e in lineage] == [str(a_best)]

    # A training checkpoint (.pt) carries the lineage too, so --init-from one keeps the history.
    ckpt = sorted((tmp_path / "b" / "checkpoints").glob("iter_*.pt"))[-1]
    assert [e["init_from"] for e in read_weights(ckpt).metadata["lineage"]] == [str(a_best)]

    # Stage C from B: the lineage grows, oldest first.
    train(cfg_b, tmp_path / "c", quiet=True, init_from=tmp_path / "b" / "best.safetensors")
    lineage_c = json.loads(read_weights(tmp_path / "c" / "best.safetensors").metadata["lineage"])
    assert [e["init_from"] for e in lineage_c] == [str(a_best), str(tmp_path / "b" / "best.safetensors")]


def test_init_from_mismatched_architecture_is_one_line(tmp_path, capsys):
    w = tmp_path / "w.safetensors"
    save_weights(w, build_model("msrresnet", mid_channels=8, num_blocks=2))  # the config builds 1 block
    cfg = tiny_cfg(tmp_path, "train.max_iters=1")
    with pytest.raises(CheckpointError, match="num_blocks 2 vs 1"):
        train(cfg, tmp_path / "x", quiet=True, init_from=w)
    lq = tmp_path / "lq.safetensors"
    save_weights(lq, build_model("lqresnet", mid_channels=8, num_blocks=1))
    with pytest.raises(CheckpointError, match="lqresnet"):
        train(cfg, tmp_path / "y", quiet=True, init_from=lq)


def test_init_from_and_resume_together_refused(tmp_path, capsys):
    rc = main(["train", "--work-dir", str(tmp_path / "w"), "--resume", "--init-from", str(tmp_path / "w.safetensors")])
    err = capsys.readouterr().err
    assert rc == 2 and "--init-from" in err and len(err.strip().splitlines()) == 1


def test_time_budget_plans_one_cosine_sized_to_the_run(tmp_path, monkeypatch):
    clock = {"t": 0.0}

    def fake_perf_counter():  # every call advances 0.25 s: the planner sees a steady speed
        clock["t"] += 0.25
        return clock["t"]

    monkeypatch.setattr(trainer_mod.time, "perf_counter", fake_perf_counter)
    cfg = tiny_cfg(
        tmp_path,
        "train.max_iters=100000",
        "sched.periods=[100000]",
        "train.time_budget_min=1",
        "train.val_interval=100000",
        "train.ckpt_interval=100000",
        "train.log_interval=1000",
    )
    summary = train(cfg, tmp_path / "t", quiet=True)
    log = read_log(tmp_path / "t")
    plans = [r for r in log if r["kind"] == "plan"]
    assert len(plans) == 1
    total = plans[0]["max_iters"]
    assert 30 < total < 100000 and plans[0]["sched_periods"] == [total]
    assert summary["iter"] == total  # ended where planned, with a final validation
    assert [r["iter"] for r in log if r["kind"] == "val"] == [total]
    lrs = [r["lr"] for r in log if r["kind"] == "train"]
    assert lrs[-1] < 1e-6  # the resized cosine annealed to eta_min by the end
    stored = (tmp_path / "t" / "config.yaml").read_text()
    assert f"max_iters: {total}" in stored


def test_timed_validation_runs_on_training_time_and_is_not_counted(tmp_path, monkeypatch):
    """train.val_interval_min validates every N minutes of *training* time; the time spent validating
    (here 1000 fake seconds per pass) counts neither toward the next validation nor toward the budget."""
    clock = {"t": 0.0}

    def fake_perf_counter():
        clock["t"] += 0.25
        return clock["t"]

    real_evaluate = validation_mod.evaluate_pairs

    def slow_evaluate(*args, **kw):
        clock["t"] += 1000.0
        return real_evaluate(*args, **kw)

    monkeypatch.setattr(trainer_mod.time, "perf_counter", fake_perf_counter)
    monkeypatch.setattr(validation_mod, "evaluate_pairs", slow_evaluate)
    cfg = tiny_cfg(
        tmp_path,
        "train.max_iters=100000",
        "sched.periods=[100000]",
        "train.time_budget_min=1",
        "train.val_interval_min=0.25",
        "train.val_interval=100000",
        "train.ckpt_interval=100000",
        "train.log_interval=1000",
    )
    summary = train(cfg, tmp_path / "t", quiet=True)
    log = read_log(tmp_path / "t")
    plans = [r for r in log if r["kind"] == "plan"]
    assert len(plans) == 1 and summary["iter"] == plans[0]["max_iters"]  # planned once, never cut short
    vals = [r for r in log if r["kind"] == "val"]
    times = [r["train_s"] for r in vals]
    assert len(vals) == 4, times  # at 15, 30 and 45 s of training time, and at the end (60 s)
    assert times == sorted(times) and 55 <= times[-1] <= 66
    for k, t in enumerate(times[:-1], start=1):
        assert 15 * k <= t < 15 * k + 5
    assert [r["iter"] for r in vals] == sorted({r["iter"] for r in vals})


def test_val_interval_min_must_be_positive():
    from facesr.config import load_config
    from facesr.errors import ConfigError

    with pytest.raises(ConfigError, match="train.val_interval_min"):
        load_config(None, ["train.val_interval_min=0"])


@pytest.mark.slow
def test_time_budget_under_torchrun_two_processes(tmp_path):
    """Rank 0's clock decides at the same iterations on every rank: no collective mismatch, one plan."""
    import os
    import subprocess
    import sys

    from test_engine import TINY, _faces

    hq = _faces(tmp_path / "hq")
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
        "--set",
        *[o for o in TINY if not o.startswith(("train.deterministic", "train.log_interval"))],
        f"data.train_hq_dir={hq}",
        "train.device=cpu",
        "train.max_iters=10000000",
        "sched.periods=[10000000]",
        "train.time_budget_min=0.15",
        "train.log_interval=1000",
        "train.val_interval=100000",
        "train.ckpt_interval=100000",
        "train.ema_momentum=null",
    ]
    r = subprocess.run(args, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-1500:]
    plans = [r for r in read_log(tmp_path / "ddp") if r["kind"] == "plan"]
    assert len(plans) >= 1 and plans[0]["sched_periods"] == [plans[0]["max_iters"]]
    final = plans[-1]["max_iters"]
    assert f"done: {final} iterations" in r.stdout
