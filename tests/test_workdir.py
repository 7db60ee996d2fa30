"""A work dir belongs to one run: refusal, --overwrite, --resume with the stored config, the interrupt hint,
pruning, log truncation, kill -9 then resume (bit-identical), full disk while checkpointing."""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from facesr.cli import main
from facesr.training import state as state_mod
from facesr.training.runlog import RunLog
from facesr.training.state import prune_checkpoints
from facesr.training.trainer import train
from test_engine import TINY, _faces, read_log, tiny_cfg

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def _sets(*extra: str) -> list[str]:
    return ["--set", *TINY, *extra]


def _cli(capsys, *argv) -> tuple[int, str]:
    """Exit code and the last stderr line (progress bars come before it); no traceback anywhere."""
    capsys.readouterr()
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.replace("\r", "\n").strip().splitlines()[-1] + "\n"


def _weights(wd: Path, it: int) -> dict:
    return torch.load(wd / "checkpoints" / f"iter_{it}.pt", map_location="cpu", weights_only=True)


def test_second_run_into_same_work_dir_is_refused(tmp_path, capsys):
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "wd"
    args = ["train", "--work-dir", str(wd), *_sets(f"data.train_hq_dir={hq}", "train.max_iters=3")]
    assert main(args) == 0
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in wd.rglob("*") if p.is_file()}
    code, err = _cli(capsys, *args)
    assert code == 2 and err.count("\n") == 1
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    after = {p.name: p.stat().st_mtime_ns for p in wd.rglob("*") if p.is_file()}
    assert before == after  # nothing touched


def test_overwrite_moves_the_old_run_aside(tmp_path, capsys):
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "wd"
    args = [
        "train",
        "--work-dir",
        str(wd),
        *_sets(f"data.train_hq_dir={hq}", f"data.val_hq_dir={hq}", "train.max_iters=3"),
    ]
    assert main(args) == 0
    old_best = (wd / "best.safetensors").read_bytes()
    assert main([*args, "--overwrite"]) == 0
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("wd.old-")]
    assert len(moved) == 1 and (moved[0] / "best.safetensors").read_bytes() == old_best
    assert (moved[0] / "checkpoints" / "iter_3.pt").is_file()
    assert len(read_log(wd)) == len(read_log(moved[0]))  # the new log holds only the new run


def test_resume_uses_stored_config_and_refuses_other_changes(tmp_path, capsys):
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "wd"
    assert (
        main(["train", "--work-dir", str(wd), *_sets(f"data.train_hq_dir={hq}", "train.max_iters=3", "optim.lr=1e-3")])
        == 0
    )
    stored = (wd / "config.yaml").read_text()
    code, err = _cli(capsys, "train", "--work-dir", str(wd), "--resume", "--set", "optim.lr=5e-4", "train.max_iters=6")
    assert code == 2 and err.count("\n") == 1 and "optim.lr" in err and "0.001 -> 0.0005" in err
    assert (wd / "config.yaml").read_text() == stored
    # A config file that disagrees with the stored one is refused, naming the differences.
    code, err = _cli(capsys, "train", str(REPO / "configs" / "quickstart.yaml"), "--work-dir", str(wd), "--resume")
    assert code == 2 and "differs" in err and "data.hq_size 64 -> 512" in err
    # Allowed: more iterations, other intervals; everything else comes from config.yaml.
    code, err = _cli(
        capsys, "train", "--work-dir", str(wd), "--resume", "--set", "train.max_iters=6", "train.log_interval=2"
    )
    assert code == 0, err
    cfg = _weights(wd, 6)["config"]
    assert cfg["optim"]["lr"] == 1e-3 and cfg["train"]["max_iters"] == 6 and cfg["data"]["train_hq_dir"] == str(hq)


def test_several_set_pairs_after_one_flag(tmp_path):
    import argparse

    from facesr.commands import add_set

    p = argparse.ArgumentParser()
    add_set(p)
    a = p.parse_args(["--set", "a=1", "b=2", "--set", "c=3"])
    assert a.overrides == ["a=1", "b=2", "c=3"]


def test_pruning_never_deletes_the_checkpoint_just_written(tmp_path):
    d = tmp_path / "checkpoints"
    d.mkdir()
    for i in (100, 200, 300):
        (d / f"iter_{i}.pt").write_bytes(b"x")
    (d / "iter_5.pt").write_bytes(b"new")
    prune_checkpoints(d, 1, protect=d / "iter_5.pt")
    assert sorted(p.name for p in d.iterdir()) == ["iter_100.pt", "iter_200.pt", "iter_300.pt", "iter_5.pt"]


def test_log_is_cut_back_to_the_resumed_iteration(tmp_path):
    log = tmp_path / "log.jsonl"
    recs = [{"iter": i, "kind": "train"} for i in range(1, 8)] + [{"iter": 6, "kind": "plan", "max_iters": 9}]
    log.write_text("\n".join(json.dumps(r) for r in recs) + '\n{"iter": 8, "ki')  # half-written last line
    assert RunLog(tmp_path).truncate(4) == 4
    kept = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["iter"] for r in kept if r["kind"] == "train"] == [1, 2, 3, 4]
    assert any(r["kind"] == "plan" for r in kept)  # the plan lives on in config.yaml, so its record stays
    assert (tmp_path / "log.discarded.jsonl").read_text().count("\n") == 4


def _train_args(wd: Path, hq: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "facesr.cli",
        "train",
        "--work-dir",
        str(wd),
        "--set",
        *TINY,
        f"data.train_hq_dir={hq}",
        f"data.val_hq_dir={hq}",
        *extra,
    ]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(SRC)}


@pytest.mark.slow
def test_kill_9_then_printed_hint_continues_bit_identically(tmp_path):
    hq = _faces(tmp_path / "hq")
    common = ["train.ckpt_interval=4", "sched.periods=[10, 10]", "train.val_interval=5", "train.max_iters=20"]
    ref = tmp_path / "ref"
    subprocess.run(_train_args(ref, hq, *common), env=_env(), check=True, capture_output=True, timeout=300)

    wd = tmp_path / "wd"
    proc = subprocess.Popen(
        _train_args(wd, hq, *common, "train.max_iters=100000"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (wd / "checkpoints" / "iter_8.pt").exists():
        time.sleep(0.05)
    time.sleep(0.05)  # somewhere past the checkpoint (a fast machine may already have written iter_12)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    done = sorted(int(p.stem[5:]) for p in (wd / "checkpoints").glob("iter_*.pt"))
    assert done and 8 <= done[-1] < 20, done
    # The run was started with max_iters=100000; stop it at 20 like the reference (a key --resume may change).
    hint_cmd = ["facesr", "train", "--work-dir", str(wd), "--resume"]
    r = subprocess.run(
        [sys.executable, "-m", "facesr.cli", *hint_cmd[1:], "--set", "train.max_iters=20"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    a, b = _weights(ref, 20), _weights(wd, 20)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    assert a["best"] == b["best"]
    la, lb = read_log(ref), read_log(wd)
    strip = lambda recs: [{k: v for k, v in r.items() if k not in ("it_per_s", "data_wait", "train_s")} for r in recs]
    assert strip(la) == strip(lb)  # no repeated records, same losses and validations


@pytest.mark.slow
def test_interrupt_hint_is_the_exact_command_that_continues(tmp_path):
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "my wd"
    proc = subprocess.Popen(
        _train_args(
            wd, hq, "train.max_iters=100000", "train.ckpt_interval=100000", "train.val_interval=100000", "optim.lr=3e-4"
        ),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not (
        (wd / "log.jsonl").exists() and (wd / "log.jsonl").read_text().count("\n") >= 3
    ):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    hint = err.split("continue with: ")[1].rsplit(")", 1)[0]
    argv = shlex.split(hint)
    assert argv[:2] == ["facesr", "train"]
    stopped = max(r["iter"] for r in read_log(wd))
    # Follow the hint (with a stop condition: the stored max_iters is 100000, a key --resume may change).
    r = subprocess.run(
        [sys.executable, "-m", "facesr.cli", *argv[1:], "--set", f"train.max_iters={stopped + 2}"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    cfg = torch.load(wd / "checkpoints" / f"iter_{stopped + 2}.pt", weights_only=True)["config"]
    assert cfg["optim"]["lr"] == 3e-4 and cfg["data"]["train_hq_dir"] == str(hq)  # the --set overrides kept


def test_full_disk_while_checkpointing_gives_one_line_and_keeps_last_good(tmp_path, capsys, monkeypatch):
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "wd"
    real_save = torch.save
    calls = {"n": 0}

    def full_disk_save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] >= 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(state_mod.torch, "save", full_disk_save)
    code, err = _cli(capsys, "train", "--work-dir", str(wd), *_sets(f"data.train_hq_dir={hq}", "train.max_iters=9"))
    assert code == 2 and err.count("\n") == 1, err
    assert "No space left on device" in err and str(wd / "checkpoints") in err and "MB free" in err
    assert "iter_3.pt kept" in err
    assert sorted(p.name for p in (wd / "checkpoints").iterdir()) == ["iter_3.pt"]  # no .tmp left


def test_torch_write_failure_runtimeerror_is_one_line(tmp_path, capsys, monkeypatch):
    hq = _faces(tmp_path / "hq")

    def enforce_fail(obj, f, *a, **kw):
        f.write(b"partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
            "data/0: file write failed"
        )

    monkeypatch.setattr(state_mod.torch, "save", enforce_fail)
    code, err = _cli(
        capsys, "train", "--work-dir", str(tmp_path / "wd"), *_sets(f"data.train_hq_dir={hq}", "train.max_iters=3")
    )
    assert code == 2 and err.count("\n") == 1 and "cannot write checkpoint" in err
    assert not list((tmp_path / "wd" / "checkpoints").glob("*.tmp"))


def test_too_little_free_space_is_refused_before_writing(tmp_path, capsys, monkeypatch):
    from collections import namedtuple

    hq = _faces(tmp_path / "hq")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(state_mod.shutil, "disk_usage", lambda p: usage(3 << 20, 3 << 20, 1000))
    code, err = _cli(
        capsys, "train", "--work-dir", str(tmp_path / "wd"), *_sets(f"data.train_hq_dir={hq}", "train.max_iters=3")
    )
    assert code == 2 and "not enough free space in" in err and "needs about" in err
    assert not list((tmp_path / "wd" / "checkpoints").glob("*")) if (tmp_path / "wd" / "checkpoints").exists() else True


def test_truncated_latest_checkpoint_names_the_earlier_one(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path, "train.max_iters=6", "train.keep_last=3")
    train(cfg, tmp_path / "wd", quiet=True)
    latest = tmp_path / "wd" / "checkpoints" / "iter_6.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    code, err = _cli(capsys, "train", "--work-dir", str(tmp_path / "wd"), "--resume", "--set", "train.max_iters=9")
    assert code == 2 and err.count("\n") == 1 and "iter_3.pt may be intact" in err


def test_corrupt_training_image_is_named(tmp_path, capsys):
    hq = _faces(tmp_path / "hq")
    (hq / "face_1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, err = _cli(
        capsys,
        "train",
        "--work-dir",
        str(tmp_path / "wd"),
        *_sets(f"data.train_hq_dir={hq}", "train.max_iters=6", "data.num_workers=1"),
    )
    assert code == 2 and err.count("\n") == 1 and "face_1.png" in err and "Traceback" not in err


@pytest.mark.slow
def test_dataloader_worker_exits_when_trainer_is_killed(tmp_path):
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "wd"
    proc = subprocess.Popen(
        _train_args(
            wd,
            hq,
            "train.max_iters=100000",
            "train.ckpt_interval=100000",
            "train.val_interval=100000",
            "data.num_workers=1",
        ),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 90
    while time.time() < deadline and not (
        (wd / "log.jsonl").exists() and (wd / "log.jsonl").read_text().count("\n") >= 2
    ):
        time.sleep(0.1)
    kids = _descendants(proc.pid)
    assert kids, "expected DataLoader worker processes"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 15
    while time.time() < deadline and [k for k in kids if _alive(k)]:
        time.sleep(0.2)
    left = [k for k in kids if _alive(k)]
    for k in left:  # do not leave them behind if the test fails
        try:
            os.kill(k, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes still running {left}"


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines()[1:]:
        p, pp = map(int, line.split())
        children.setdefault(pp, []).append(p)
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_resume_keeps_a_time_budget_plan_unless_max_iters_is_set(tmp_path):
    from facesr.config import load_config
    from facesr.training.resume import resumed_config

    stored = load_config(None, ["train.time_budget_min=5", "train.max_iters=777", "sched.periods=[777]"]).to_dict()
    preset = load_config(None, ["train.time_budget_min=5", "train.max_iters=100000", "sched.periods=[100000]"])
    preset.user_set = set()
    cfg = resumed_config(stored, "config.yaml", preset)
    assert cfg.train.max_iters == 777 and cfg.sched.periods == [777]
    longer = load_config(None, ["train.time_budget_min=5", "train.max_iters=900", "sched.periods=[777]"])
    longer.user_set = {"train.max_iters"}
    assert resumed_config(stored, "config.yaml", longer).train.max_iters == 900
