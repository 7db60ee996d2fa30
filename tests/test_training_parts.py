"""The training loop's parts on their own: the budget planner, the run log, the train step and its
extension seam (extra losses, hooks), validation's best tracking, the resume-config merge, the
deprecated ``train.amp`` key, and the size of the loop itself."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from facesr.config import load_config
from facesr.errors import ConfigError
from facesr.models import build_model, read_weights
from facesr.training.budget import CHECK_EVERY, BudgetPlanner, resize_run
from facesr.training.losses import get_loss
from facesr.training.resume import check_config_agrees, resumed_config
from facesr.training.runlog import RunLog
from facesr.training.state import load_checkpoint
from facesr.training.step import Batch, TrainStep
from facesr.training.trainer import train
from facesr.training.validation import BestWeights, Validator
from test_engine import read_log, tiny_cfg

TRAINING = Path(__file__).resolve().parents[1] / "src" / "facesr" / "training"


# ----------------------------------------------------------------------------- BudgetPlanner (pure)


def test_budget_planner_measures_from_5_percent_and_plans_at_15():
    p = BudgetPlanner(budget_s=100.0, start_iter=0)
    assert p.propose(10, 4.0, 10_000).max_iters == 0 and p.warm is None  # before 5%: nothing
    assert p.propose(20, 5.0, 10_000).max_iters == 0 and p.warm == (20, 5.0)  # speed measured from here
    assert p.propose(30, 10.0, 10_000).max_iters == 0  # before 15%
    d = p.propose(120, 15.0, 10_000)  # 100 iterations in 10 s: 10 it/s, 85 s left
    assert d.it_per_s == pytest.approx(10.0) and d.max_iters == 120 + 850 and not d.over
    p.accept(d)
    assert p.planned and p.propose(130, 20.0, 970).max_iters == 0  # planned once


def test_budget_planner_needs_10_iterations_and_stops_past_110_percent():
    p = BudgetPlanner(budget_s=10.0, start_iter=100)
    p.propose(105, 5.0, 1000)
    assert p.warm is None  # fewer than 10 iterations since the (re)start
    planned = BudgetPlanner(10.0, 0, planned=True)
    assert not planned.propose(50, 11.0, 1000).over
    assert planned.propose(50, 11.5, 1000).over
    assert not planned.propose(1000, 11.5, 1000).over  # already at the end
    assert [planned.due(i) for i in (0, CHECK_EVERY - 1, CHECK_EVERY)] == [True, False, True]


def test_budget_resizes_only_a_one_period_cosine():
    cfg = load_config(None, ["sched.periods=[1000]"])
    resize_run(cfg, 321)
    assert cfg.train.max_iters == 321 and cfg.sched.periods == [321]
    two = load_config(None, [])
    resize_run(two, 321)
    assert two.sched.periods == [150_000, 150_000]


# ----------------------------------------------------------------------------- RunLog


def test_runlog_writes_reads_and_skips_broken_lines(tmp_path):
    log = RunLog(tmp_path).open(tensorboard=False)
    log.write({"iter": 1, "kind": "train", "loss": 0.5})
    log.write({"iter": 2, "kind": "val", "psnr": 20.0})
    log.close()
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('[1, 2]\n{"iter": "x", "kind": "train"}\n{"iter": 3, "ki')
    assert [r["iter"] for r in RunLog(tmp_path).records()] == [1, 2]
    assert RunLog.at(tmp_path / "log.jsonl").records() == RunLog(tmp_path).records()
    assert not RunLog(tmp_path).has_plan() and RunLog(tmp_path / "nowhere").records() == []


def test_runlog_truncate_moves_cut_lines_aside(tmp_path):
    lines = [json.dumps({"iter": i, "kind": "train"}) for i in range(1, 6)]
    lines.insert(3, json.dumps({"iter": 4, "kind": "plan", "max_iters": 9}))
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + '\n{"iter": 6, "ki')
    log = RunLog(tmp_path)
    assert log.truncate(2) == 4  # the train records of iterations 3, 4, 5 and the half line (the plan stays)
    assert [(r["iter"], r["kind"]) for r in log.records()] == [(1, "train"), (2, "train"), (4, "plan")]
    assert log.has_plan()
    discarded = (tmp_path / "log.discarded.jsonl").read_text().splitlines()
    assert len(discarded) == 4 and discarded[-1] == '{"iter": 6, "ki'


# ----------------------------------------------------------------------------- TrainStep and its seam


def _batch(seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 32, 32, generator=g), 0)


def _step(extra=(), hooks=()) -> tuple[torch.nn.Module, TrainStep]:
    torch.manual_seed(0)
    model = build_model("msrresnet", mid_channels=8, num_blocks=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, TrainStep(model, opt, get_loss("l1"), device=torch.device("cpu"), extra_losses=extra, hooks=hooks)


def test_extra_loss_is_added_and_called_with_sr_hq_and_batch():
    calls = []

    def weighted_l2(sr, hq, batch):
        calls.append((sr.shape, hq.shape, batch.it, sr.requires_grad))
        return 0.5 * ((sr - hq) ** 2).mean()

    batch = _batch()
    _, plain = _step()
    with torch.no_grad():
        sr = plain.model(batch.lq).float()
        expected = plain.loss_fn(sr, batch.hq) + 0.5 * ((sr - batch.hq) ** 2).mean()
    model, step = _step([weighted_l2])
    loss = step(batch, 1e-3)
    assert calls[0] == ((2, 3, 32, 32), (2, 3, 32, 32), 0, True)
    assert torch.allclose(loss, expected)
    _, plain = _step()
    plain(batch, 1e-3)
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), plain.model.parameters()))


def test_a_zero_extra_loss_changes_nothing():
    batch = _batch()
    m0, s0 = _step()
    m1, s1 = _step([lambda sr, hq, b: 0 * sr.mean()])
    for _ in range(2):
        assert torch.equal(s0(batch, 1e-3), s1(batch, 1e-3))
    assert all(torch.equal(a, b) for a, b in zip(m0.parameters(), m1.parameters()))


class _CountingHook:
    """A stand-in for a second network: counts steps, sees detached outputs, keeps a checkpointed state."""

    def __init__(self):
        self.n, self.detached = 0, True

    def step(self, sr, hq, batch):
        self.n += 1
        self.detached &= not sr.requires_grad

    def state_dict(self):
        return {"n": torch.tensor(self.n)}

    def load_state_dict(self, sd):
        self.n = int(sd["n"])


def test_extra_loss_and_hook_through_train_and_resume(tmp_path):
    seen = []

    def zero(sr, hq, batch):
        seen.append(batch.it)
        return 0 * sr.mean()

    common = ["train.ckpt_interval=3", "sched.periods=[6]", "train.val_interval=100"]
    hook = _CountingHook()
    train(tiny_cfg(tmp_path, "train.max_iters=6", *common), tmp_path / "ref", quiet=True)
    train(
        tiny_cfg(tmp_path, "train.max_iters=4", *common), tmp_path / "x", quiet=True, extra_losses=[zero], hooks=[hook]
    )
    assert seen == [0, 1, 2, 3] and hook.n == 4 and hook.detached
    assert int(load_checkpoint(tmp_path / "x" / "checkpoints" / "iter_3.pt")["hooks"][0]["n"]) == 3
    resumed = _CountingHook()
    train(
        tiny_cfg(tmp_path, "train.max_iters=6", *common),
        tmp_path / "x",
        resume=str(tmp_path / "x" / "checkpoints" / "iter_3.pt"),
        quiet=True,
        extra_losses=[zero],
        hooks=[resumed],
    )
    assert resumed.n == 6 and seen[4:] == [3, 4, 5]  # restored at 3, then iterations 3..5
    a, b = (load_checkpoint(tmp_path / d / "checkpoints" / "iter_6.pt") for d in ("ref", "x"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # a zero loss is no change
    assert "hooks" not in a  # no hooks: the checkpoint format is unchanged


# ----------------------------------------------------------------------------- Validator


def test_validator_keeps_the_best_and_writes_it(tmp_path):
    torch.manual_seed(0)
    model = build_model("msrresnet", mid_channels=8, num_blocks=1)
    rng = np.random.default_rng(0)
    pairs = [("a", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))]
    v = Validator(
        pairs,
        [("", model)],
        BestWeights(tmp_path, model, None, "msrresnet", []),
        device=torch.device("cpu"),
        precision="fp32",
        channels_last=False,
        best_metric="psnr",
    )
    rec = v(5, 1.5)
    assert set(rec) == {"iter", "kind", "psnr", "ssim", "psnr_challenge", "train_s"} and model.training
    assert v.best == {"metric": "psnr", "value": rec["psnr"], "iter": 5}
    assert json.loads((tmp_path / "best.json").read_text())["iter"] == 5
    assert read_weights(tmp_path / "best.safetensors").metadata["iter"] in (5, "5")
    v.best["value"] = float("inf")  # nothing beats it: best.json stays
    v(10, 3.0)
    assert json.loads((tmp_path / "best.json").read_text())["iter"] == 5
    assert not Validator([], [], v.out, device="cpu", precision="fp32", channels_last=False, best_metric="psnr")


# ----------------------------------------------------------------------------- the one resume-config merge


def test_resumed_config_merges_cfg_and_overrides_in_one_place():
    stored = load_config(None, ["train.max_iters=10", "optim.lr=1e-3"]).to_dict()
    assert resumed_config(stored, "config.yaml").optim.lr == 1e-3
    cfg = resumed_config(stored, "config.yaml", None, ["train.max_iters=20", "data.num_workers=0"])
    assert cfg.train.max_iters == 20 and cfg.data.num_workers == 0 and "train.max_iters" in cfg.user_set
    with pytest.raises(ConfigError, match=r"optim\.lr 0\.001 -> 0\.0005"):
        resumed_config(stored, "config.yaml", None, ["optim.lr=5e-4"])
    given = load_config(None, ["train.max_iters=30", "optim.lr=1e-3"])
    assert resumed_config(stored, "config.yaml", given).train.max_iters == 30  # the Python API's cfg
    with pytest.raises(ConfigError, match=r"train\.batch_size 12 -> 4"):
        resumed_config(stored, "config.yaml", load_config(None, ["optim.lr=1e-3", "train.batch_size=4"]))
    check_config_agrees(stored, "config.yaml", given, "x.yaml")
    with pytest.raises(ConfigError, match=r"x\.yaml differs .*optim\.lr"):
        check_config_agrees(stored, "config.yaml", load_config(None), "x.yaml")


# ----------------------------------------------------------------------------- train.amp -> train.precision


def test_deprecated_train_amp_is_read_as_precision(tmp_path, capsys):
    p = tmp_path / "old.yaml"
    p.write_text("train:\n  amp: none\n")
    with pytest.warns(DeprecationWarning, match="train.amp"):
        assert load_config(p).train.precision == "fp32"
    with pytest.warns(DeprecationWarning):
        assert load_config(None, ["train.amp=bf16"]).train.precision == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_config(p, ["train.precision=bf16"]).train.precision == "bf16"  # the override wins
        both = tmp_path / "both.yaml"
        both.write_text("train:\n  amp: bf16\n  precision: fp32\n")
        with pytest.raises(ConfigError, match="train.amp: means precision bf16, which contradicts"):
            load_config(both)
    assert "train.amp is deprecated" in capsys.readouterr().err
    assert "amp" not in load_config(None).to_dict()["train"]


def test_an_old_work_dir_with_train_amp_resumes_bit_identically(tmp_path):
    common = ["train.ckpt_interval=3", "sched.periods=[6]", "train.val_interval=3"]
    train(tiny_cfg(tmp_path, "train.max_iters=6", *common), tmp_path / "ref", quiet=True)
    train(tiny_cfg(tmp_path, "train.max_iters=3", *common), tmp_path / "old", quiet=True)
    # Make it look written by an older facesr: train.amp in config.yaml and in the checkpoint.
    yaml_path = tmp_path / "old" / "config.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("precision: fp32", "amp: none"))
    ckpt = tmp_path / "old" / "checkpoints" / "iter_3.pt"
    state = load_checkpoint(ckpt)
    state["config"]["train"]["amp"] = {"fp32": "none"}[state["config"]["train"].pop("precision")]
    torch.save(state, ckpt)
    with pytest.warns(DeprecationWarning):
        train(None, tmp_path / "old", resume=True, quiet=True, overrides=["train.max_iters=6"])
    a, b = (load_checkpoint(tmp_path / d / "checkpoints" / "iter_6.pt") for d in ("ref", "old"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert b["config"]["train"]["precision"] == "fp32" and "amp" not in b["config"]["train"]
    strip = lambda recs: [{k: v for k, v in r.items() if k not in ("it_per_s", "data_wait", "train_s")} for r in recs]
    assert strip(read_log(tmp_path / "ref")) == strip(read_log(tmp_path / "old"))


# ----------------------------------------------------------------------------- the loop stays readable


def test_no_function_in_training_is_over_100_lines():
    long = []
    for path in sorted(TRAINING.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 100:
                    long.append(f"{path.name}:{node.name} ({n} lines)")
    assert not long, long
