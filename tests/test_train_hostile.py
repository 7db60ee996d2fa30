"""Hostile training and plot inputs (issue 21) and training progress (issue 23.4).

Signals at every stage (a batch being built, DataLoader workers starting, a forward pass, a checkpoint
being written), caps that follow from the machine (memory estimate, workers by cores), the write guard
(data folders, the current folder, a run's weights under plot --out), no half-made work dir, a full
disk at best.safetensors, stray checkpoints on resume, a non-UTF-8 log, and progress from the first
iteration on.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import signal_when_ready
from facesr.cli import main
from facesr.config import load_config
from facesr.errors import TrainingError
from facesr.training import loader as loader_mod
from facesr.training import memory as memory_mod
from facesr.training import signals as signals_mod
from facesr.training import state as state_mod
from facesr.training import validation as validation_mod
from facesr.training.signals import StopFlag, StopRequested
from facesr.training.state import load_checkpoint
from facesr.training.trainer import train
from test_engine import TINY, _faces, read_log, tiny_cfg

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
#: A signal must end the run within 2 s; a loaded test machine gets half a second more.
SIGNAL_LIMIT_S = 2.5


def _cli(capsys, *argv) -> tuple[int, str]:
    """Exit code and stderr; never a traceback."""
    capsys.readouterr()
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def _last_line(err: str) -> str:
    return err.replace("\r", "\n").strip().splitlines()[-1]


def _train_argv(wd: Path, hq: Path, *extra: str) -> list[str]:
    return ["train", "--work-dir", str(wd), "--set", *TINY, f"data.train_hq_dir={hq}", *extra]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def long_grace(monkeypatch):
    """In-process signal tests: no hard stop (os._exit) of the test process."""
    monkeypatch.setattr(signals_mod, "HARD_STOP_S", 600.0)


# ----------------------------------------------------------------------------------------- StopFlag


def test_stop_flag_raises_inside_a_section_only_and_restores_handlers(long_grace):
    before = signal.getsignal(signal.SIGTERM)
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    with StopFlag() as stop:
        with stop.interruptible("working"):
            pass
        os.kill(os.getpid(), signal.SIGTERM)  # outside a section: only recorded
        assert stop.signum == signal.SIGTERM
        with pytest.raises(StopRequested), stop.interruptible("next section"):  # a section after it stops at once
            pytest.fail("the section must not start")
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.set_wakeup_fd(wakeup) == wakeup  # the wakeup fd was given back

    with StopFlag() as stop, pytest.raises(StopRequested) as info:
        with stop.interruptible("a long python loop"):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000_000):  # the handler raises at the next bytecode, not after the loop
                pass
            pytest.fail("not interrupted")
    assert info.value.signum == signal.SIGINT


def test_stop_flag_leaves_no_thread_behind(long_grace):
    """The watcher and the grace timer end with the block: a daemon thread left holding the run's
    tensors aborted finished runs at interpreter exit (exit 134, "terminate called without an active
    exception")."""
    import threading

    def ours():
        return [t for t in threading.enumerate() if t.name == "facesr-stop-watch" or isinstance(t, threading.Timer)]

    assert not ours()
    with StopFlag(on_hard_stop=lambda s, w: None) as stop:
        assert [t.name for t in ours()] == ["facesr-stop-watch"]
        os.kill(os.getpid(), signal.SIGTERM)  # starts the grace timer
        deadline = time.monotonic() + 5
        while len(ours()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(ours()) == 2
    assert not ours()
    assert stop.on_hard_stop is None  # nothing of the run is held after the block


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_finished_runs_end_cleanly(tmp_path):
    """A finished tiny run exits 0, every time (before the fix, about one run in four aborted with 134)."""
    hq = _faces(tmp_path / "hq")
    for i in range(6):
        argv = _train_argv(tmp_path / f"run{i}", hq, "train.max_iters=2", "train.val_interval=2")
        proc = subprocess.run(
            [sys.executable, "-m", "facesr.cli", *argv], env=_env(), capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "terminate called" not in proc.stderr


def test_backward_half_of_a_step_changes_no_state():
    from facesr.models import build_model
    from facesr.training.losses import get_loss
    from facesr.training.step import Batch, TrainStep

    torch.manual_seed(0)
    model = build_model("msrresnet", mid_channels=8, num_blocks=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = TrainStep(model, opt, get_loss("l1"), device=torch.device("cpu"))
    batch = Batch(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32), 0)
    step(batch, 1e-3)  # the optimiser has state now
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = [s["exp_avg"].clone() for s in opt.state.values()]
    lrs = [g["lr"] for g in opt.param_groups]
    step.backward(Batch(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32), 1))
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(m, s["exp_avg"]) for m, s in zip(moments, opt.state.values()))
    assert [g["lr"] for g in opt.param_groups] == lrs


class _SignalAt:
    """A zero extra loss (called inside the forward/backward section) that sends SIGTERM at call ``n``."""

    def __init__(self, n: int | None):
        self.n, self.calls = n, 0

    def __call__(self, sr, hq, batch):
        self.calls += 1
        if self.calls == self.n:
            os.kill(os.getpid(), signal.SIGTERM)
        return sr.sum() * 0.0


def _weights_equal(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
        assert torch.equal(sa["ema"][k], sb["ema"][k]), k
    assert sa["best"] == sb["best"]


def test_signal_in_a_forward_pass_stops_at_the_last_whole_iteration_and_resumes_bit_identically(tmp_path, long_grace):
    common = ["train.ckpt_interval=3", "train.val_interval=3", "sched.periods=[4, 4]"]
    train(
        tiny_cfg(tmp_path, "train.max_iters=8", *common), tmp_path / "ref", quiet=True, extra_losses=[_SignalAt(None)]
    )
    summary = train(
        tiny_cfg(tmp_path, "train.max_iters=8", *common), tmp_path / "wd", quiet=True, extra_losses=[_SignalAt(5)]
    )  # the 5th forward: iterations 1-4 are whole
    assert summary["stopped_by_signal"] == signal.SIGTERM and summary["iter"] == 4
    assert summary["last_checkpoint"].endswith("iter_4.pt")
    assert max(r["iter"] for r in read_log(tmp_path / "wd")) == 4
    train(None, tmp_path / "wd", resume=True, quiet=True, extra_losses=[_SignalAt(None)])
    _weights_equal(tmp_path / "ref" / "checkpoints" / "iter_8.pt", tmp_path / "wd" / "checkpoints" / "iter_8.pt")
    strip = lambda recs: [{k: v for k, v in r.items() if k not in ("it_per_s", "data_wait", "train_s")} for r in recs]
    assert strip(read_log(tmp_path / "ref")) == strip(read_log(tmp_path / "wd"))


def test_signal_before_the_first_iteration_keeps_nothing_so_the_rerun_is_not_refused(tmp_path, long_grace):
    summary = train(tiny_cfg(tmp_path, "train.max_iters=3"), tmp_path / "wd", quiet=True, extra_losses=[_SignalAt(1)])
    assert summary["stopped_by_signal"] == signal.SIGTERM and summary["iter"] == 0
    assert summary["last_checkpoint"] is None and not (tmp_path / "wd").exists()
    assert train(tiny_cfg(tmp_path, "train.max_iters=3"), tmp_path / "wd", quiet=True)["iter"] == 3


def test_signal_during_validation_writes_no_checkpoint_for_that_iteration(tmp_path, long_grace, monkeypatch):
    real = validation_mod.Validator.evaluate

    def signalled(self, it, train_s):
        if it == 6:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, it, train_s)

    monkeypatch.setattr(validation_mod.Validator, "evaluate", signalled)
    summary = train(
        tiny_cfg(tmp_path, "train.max_iters=9", "train.val_interval=3", "train.ckpt_interval=2"),
        tmp_path / "wd",
        quiet=True,
    )
    assert summary["stopped_by_signal"] and summary["iter"] == 6
    # iteration 6's validation did not finish, so its checkpoint is not written: a resume validates it again
    assert sorted(p.name for p in (tmp_path / "wd" / "checkpoints").iterdir()) == ["iter_2.pt", "iter_4.pt"]


# ------------------------------------------------------------------------------------ memory and workers


def test_memory_estimate_refuses_the_issue_cases_in_one_line(monkeypatch):
    monkeypatch.setattr(memory_mod, "host_memory", lambda: (16 * 10**9, 24 * 10**9))
    cpu = torch.device("cpu")
    for over in (["train.batch_size=100000"], ["model.mid_channels=1024"]):
        with pytest.raises(TrainingError) as info:
            memory_mod.check_fits(load_config(None, over), cpu, 2, 1000)
        msg = str(info.value)
        assert "\n" not in msg and "training needs about" in msg and "16.0 GB is available" in msg, msg
        assert "train.batch_size" in msg
    memory_mod.check_fits(load_config(None, TINY), cpu, 0, 4)  # fits


def test_memory_estimate_follows_the_batch_and_the_precision():
    small = memory_mod.estimate(load_config(None, [*TINY, "train.batch_size=2"]), 0, 4)
    large = memory_mod.estimate(load_config(None, [*TINY, "train.batch_size=8"]), 0, 4)
    half = memory_mod.estimate(load_config(None, [*TINY, "train.batch_size=8", "train.precision=bf16"]), 0, 4)
    assert large.activations == pytest.approx(4 * small.activations, rel=0.01)
    assert half.activations < large.activations and large.state == small.state > 0


def test_memory_estimate_on_cuda_uses_the_gpu_free_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10**9, 8 * 10**9))
    monkeypatch.setattr(memory_mod, "host_memory", lambda: (64 * 10**9, 64 * 10**9))
    with pytest.raises(TrainingError, match=r"on cuda:0, which has 1.0 GB free \(8.0 GB in all\)"):
        memory_mod.check_fits(load_config(None, ["train.batch_size=64"]), torch.device("cuda", 0), 2, 1000)


def test_too_big_a_batch_is_refused_before_anything_is_made(tmp_path, capsys):
    hq = _faces(tmp_path / "hq")
    t = time.perf_counter()
    code, err = _cli(capsys, *_train_argv(tmp_path / "wd", hq, "train.batch_size=100000", "train.max_iters=3"))
    assert code == 2 and "training needs about" in _last_line(err) and "available" in _last_line(err)
    assert not (tmp_path / "wd").exists()
    assert time.perf_counter() - t < 60


def test_workers_are_capped_by_the_cores(monkeypatch, capsys):
    monkeypatch.setattr(loader_mod.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    cfg = load_config(None, [*TINY, "data.num_workers=1000"])
    assert loader_mod.capped_workers(cfg, warn=True) == 2
    assert capsys.readouterr().err.strip() == "data.num_workers=1000 is more than the 2 CPU core(s) here; using 2"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert loader_mod.capped_workers(cfg) == 1
    assert loader_mod.capped_workers(load_config(None, [*TINY, "data.num_workers=0"])) == 0


# ------------------------------------------------------------------------------------------ write guard


@pytest.mark.parametrize("where", ["train data", "val data", "parent of the data", "inside the data"])
def test_overwrite_never_moves_or_writes_into_a_data_folder(tmp_path, capsys, where):
    project = tmp_path / "project"
    hq = _faces(project / "hq")
    val = _faces(project / "val", n=2)
    (project / "notes.txt").write_text("mine")
    wd = {"train data": hq, "val data": val, "parent of the data": project, "inside the data": hq / "run"}[where]
    before = _tree(project)
    code, err = _cli(capsys, *_train_argv(wd, hq, f"data.val_hq_dir={val}", "train.max_iters=2"), "--overwrite")
    assert code == 2 and err.count("\n") == 1, err
    assert "data.train_hq_dir" in err or "data.val_hq_dir" in err
    assert _tree(project) == before and [p.name for p in tmp_path.iterdir()] == ["project"]


def test_overwrite_of_the_current_folder_is_one_line(tmp_path, capsys, monkeypatch):
    hq = _faces(tmp_path / "hq")
    here = tmp_path / "here"
    here.mkdir()
    (here / "keep.txt").write_text("x")
    monkeypatch.chdir(here)
    code, err = _cli(capsys, *_train_argv(Path("."), hq, "train.max_iters=2"), "--overwrite")
    assert code == 2 and err.count("\n") == 1 and "current folder" in err
    assert (here / "keep.txt").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["here", "hq"]


def test_overwrite_never_moves_the_config_file_or_initial_weights(tmp_path, capsys):
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "wd"
    assert main(_train_argv(wd, hq, "train.max_iters=3", "train.val_interval=3", f"data.val_hq_dir={hq}")) == 0
    cfg_file = wd / "my.yaml"
    cfg_file.write_text("train: {max_iters: 2}\n")
    code, err = _cli(capsys, "train", str(cfg_file), *_train_argv(wd, hq)[1:], "--overwrite")
    assert code == 2 and "input" in err and str(cfg_file) in err and cfg_file.is_file()
    code, err = _cli(
        capsys, *_train_argv(wd, hq, "train.max_iters=2"), "--overwrite", "--init-from", str(wd / "best.safetensors")
    )
    assert code == 2 and "the initial weights" in err and (wd / "best.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]


def _fake_run(run: Path) -> Path:
    run.mkdir()
    recs = [{"iter": i, "kind": "val", "psnr": 20.0 + i, "train_s": 10.0 * i} for i in range(1, 4)]
    recs += [{"iter": i, "kind": "train", "loss": 1.0 / i, "lr": 1e-4, "train_s": 10.0 * i} for i in range(1, 4)]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "best.safetensors").write_bytes(b"weights")
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "iter_3.pt").write_bytes(b"checkpoint")
    return run


@pytest.mark.parametrize(
    "name", ["best.safetensors", "config.yaml", "log.jsonl", "checkpoints/iter_3.pt", "plot.webp", "plot"]
)
def test_plot_never_replaces_a_run_file_and_writes_only_plot_formats(tmp_path, capsys, name):
    run = _fake_run(tmp_path / "run")
    before = _tree(run)
    code, err = _cli(capsys, "plot", str(run), "--out", str(run / name), "--overwrite")
    assert code == 2 and err.count("\n") == 1 and "--out" in err, err
    assert _tree(run) == before


@pytest.mark.parametrize(
    "suffix, magic",
    [
        (".png", b"\x89PNG"),
        (".jpg", b"\xff\xd8\xff"),
        (".jpeg", b"\xff\xd8\xff"),
        (".pdf", b"%PDF"),
        (".svg", b"<?xml"),
    ],
)
def test_plot_writes_the_format_its_name_says(tmp_path, capsys, suffix, magic):
    run = _fake_run(tmp_path / "run")
    out = tmp_path / f"curve{suffix.upper() if suffix == '.jpeg' else suffix}"
    code, _ = _cli(capsys, "plot", str(run), "--out", str(out))
    assert code == 0 and out.read_bytes().startswith(magic)


def test_plot_of_a_log_that_is_not_utf8_is_one_line_naming_it(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_bytes(b'\xff\xfe{"iter": 1, "kind": "val", "psnr": 3.0}\n')
    code, err = _cli(capsys, "plot", str(run), "--out", str(tmp_path / "p.png"))
    assert code == 2 and err.count("\n") == 1 and str(run / "log.jsonl") in err and "UTF-8" in err
    assert not (tmp_path / "p.png").exists()


# ------------------------------------------------------------------------- no half-made work dir; full disk


@pytest.mark.parametrize("case", ["wrong image size", "corrupt image", "seed"])
def test_a_run_that_fails_before_its_first_iteration_leaves_no_work_dir(tmp_path, capsys, case):
    hq = _faces(tmp_path / "hq")
    extra = {
        "wrong image size": [
            "data.hq_resize=error",
            "data.hq_size=32",
            "degradation.up.size=32",
            "degradation.final.size=8",
        ],
        "corrupt image": [],
        "seed": ["seed=-1"],
    }[case]
    if case == "corrupt image":
        (hq / "face_1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    wd = tmp_path / "wd"
    code, err = _cli(capsys, *_train_argv(wd, hq, "train.max_iters=3", *extra))
    assert code == 2 and "error" in _last_line(err)
    assert not wd.exists()
    if case == "corrupt image":  # fixed, the same command runs: nothing blocks it
        _faces(tmp_path / "hq")
        assert main(_train_argv(wd, hq, "train.max_iters=3")) == 0


def test_an_empty_work_dir_the_user_made_stays_after_such_a_failure(tmp_path, capsys):
    hq = _faces(tmp_path / "hq")
    (hq / "face_1.png").write_bytes(b"garbage")
    wd = tmp_path / "wd"
    wd.mkdir()
    code, _ = _cli(capsys, *_train_argv(wd, hq, "train.max_iters=3"))
    assert code == 2 and wd.is_dir() and not list(wd.iterdir())


def test_full_disk_at_best_safetensors_is_one_line_and_keeps_the_earlier_best(tmp_path, capsys, monkeypatch):
    from safetensors import SafetensorError

    hq = _faces(tmp_path / "hq")
    import facesr.models.weights as weights_mod

    real, calls = weights_mod.save_file, {"n": 0}

    def full_disk(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] >= 2:
            Path(filename).write_bytes(b"partial")
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, metadata=metadata)

    def always_better(self, rec):
        self.best = {"metric": "psnr", "value": rec["psnr"], "iter": rec["iter"]}
        return self.best

    monkeypatch.setattr(weights_mod, "save_file", full_disk)
    monkeypatch.setattr(validation_mod.Validator, "update_best", always_better)
    wd = tmp_path / "wd"
    code, err = _cli(
        capsys,
        *_train_argv(
            wd, hq, f"data.val_hq_dir={hq}", "train.val_interval=2", "train.ckpt_interval=3", "train.max_iters=9"
        ),
    )
    line = _last_line(err)
    assert code == 2 and "cannot write the best weights" in line and "No space left on device" in line, err
    assert "last good checkpoint iter_3.pt kept" in line
    assert json.loads((wd / "best.json").read_text())["iter"] == 2  # the earlier best, whole
    assert weights_mod.read_weights(wd / "best.safetensors").metadata["iter"] in (2, "2")
    assert not [p.name for p in wd.iterdir() if p.name.endswith(".tmp")]


def test_too_little_space_for_best_safetensors_is_refused_before_writing(tmp_path, capsys, monkeypatch):
    from collections import namedtuple

    hq = _faces(tmp_path / "hq")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(state_mod.shutil, "disk_usage", lambda p: usage(3 << 20, 3 << 20, 1000))
    wd = tmp_path / "wd"
    code, err = _cli(
        capsys,
        *_train_argv(
            wd, hq, f"data.val_hq_dir={hq}", "train.val_interval=2", "train.ckpt_interval=100", "train.max_iters=4"
        ),
    )
    assert code == 2 and "best.safetensors needs about" in _last_line(err) and "no checkpoint written yet" in err
    assert not (wd / "best.safetensors").exists()


# ----------------------------------------------------------------------------------- stray checkpoints


@pytest.mark.parametrize("stray", ["copy of an old checkpoint", "garbage"])
def test_a_stray_checkpoint_is_passed_over_in_one_line_and_no_log_line_is_lost(tmp_path, capsys, stray):
    train(tiny_cfg(tmp_path, "train.max_iters=9", "train.keep_last=3"), tmp_path / "wd", quiet=True)
    ckpts = tmp_path / "wd" / "checkpoints"
    name = "iter_99999999999999999999.pt"
    if stray == "garbage":
        (ckpts / name).write_bytes(b"junk")
    else:
        shutil.copy(ckpts / "iter_3.pt", ckpts / name)
    code, err = _cli(capsys, "train", "--work-dir", str(tmp_path / "wd"), "--resume", "--set", "train.max_iters=12")
    assert code == 0
    note = [ln for ln in err.splitlines() if "passed over" in ln]
    assert len(note) == 1 and "resuming from iter_9.pt" in note[0] and name in note[0]
    log = read_log(tmp_path / "wd")
    assert [r["iter"] for r in log if r["kind"] == "train"] == list(range(1, 13))
    assert not (tmp_path / "wd" / "log.discarded.jsonl").exists()


def test_resuming_from_an_earlier_checkpoint_says_how_many_log_lines_it_moves(tmp_path, capsys):
    train(tiny_cfg(tmp_path, "train.max_iters=9", "train.keep_last=3"), tmp_path / "wd", quiet=True)
    earlier = tmp_path / "wd" / "checkpoints" / "iter_6.pt"
    code, err = _cli(
        capsys, "train", "--work-dir", str(tmp_path / "wd"), "--resume", str(earlier), "--set", "train.max_iters=9"
    )
    assert code == 0
    assert "line(s) written after iteration 6" in err and "log.discarded.jsonl" in err


# --------------------------------------------------------------------------------------------- progress


def test_progress_shows_the_first_step_and_an_eta_at_once_in_a_log(tmp_path, capsys):
    hq = _faces(tmp_path / "hq")
    code, err = _cli(capsys, *_train_argv(tmp_path / "wd", hq, "train.max_iters=4", "train.log_interval=100"))
    assert code == 0
    lines = err.splitlines()
    assert lines[0].startswith("training from iteration 0 to 4 on cpu")
    assert lines[1].startswith("first iteration: ") and "remaining 3 take about" in lines[1]


def test_log_progress_lines_carry_the_postfix():
    import io

    from facesr.io.progress import LogProgress

    out = io.StringIO()
    t = [0.0]
    p = LogProgress(4, "train", "it", out, interval=30, clock=lambda: t[0])
    t[0] = 31.0
    p.set_postfix_str("loss 0.1")
    p.update(1)
    assert out.getvalue().strip().endswith(", loss 0.1")


# ------------------------------------------------------------------ signals from another process (slow)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


def _signal_run(
    wd: Path, hq: Path, ready, *extra: str, sig=signal.SIGTERM, delay: float = 0.0, second: float | None = None
) -> tuple[float, int, str]:
    """Start ``facesr train``, wait for ``ready(wd)`` (and ``delay`` s), send ``sig`` (again after ``second`` s);
    returns ``(seconds from the signal to the exit, exit status, stderr)``."""
    argv = [
        sys.executable,
        "-m",
        "facesr.cli",
        *_train_argv(wd, hq, "train.val_interval=100000", "train.ckpt_interval=100000", *extra),
    ]
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not ready(wd) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(delay)
        t0 = time.perf_counter()
        proc.send_signal(sig)
        if second is not None:
            time.sleep(second)
            proc.send_signal(sig)
        proc.wait(timeout=60)
        elapsed = time.perf_counter() - t0
        return elapsed, proc.returncode, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _started(wd: Path) -> bool:
    return (wd / "config.yaml").exists()


def _no_partial_files(wd: Path) -> None:
    assert not [p for p in wd.rglob("*") if p.name.endswith(".tmp")]
    for p in (wd / "checkpoints").glob("iter_*.pt") if (wd / "checkpoints").exists() else []:
        load_checkpoint(p)  # every checkpoint there is whole


#: a model whose first forward and backward pass takes seconds on one core
BIG = ["model.mid_channels=512", "model.num_blocks=2", "train.batch_size=2", "data.num_workers=0"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage, extra, delay",
    [
        ("building a batch", ["train.batch_size=3000", "data.num_workers=0"], 1.0),
        ("starting the workers", ["train.batch_size=3000", "data.num_workers=2"], 0.0),
        ("waiting for the workers' batch", ["train.batch_size=3000", "data.num_workers=2"], 3.0),
        ("a forward pass", BIG, 1.5),
    ],
)
def test_sigterm_ends_training_within_2_s(tmp_path, stage, extra, delay):
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "wd"
    elapsed, code, err = _signal_run(wd, hq, _started, "train.max_iters=5", *extra, delay=delay)
    assert code == 130, err
    assert elapsed < SIGNAL_LIMIT_S, (stage, elapsed, err)
    assert "Traceback" not in err and "leaked" not in err
    last = err.strip().splitlines()[-1]
    assert "nothing kept" in last, last  # no iteration had finished: the rerun must not be refused
    assert not wd.exists(), sorted(wd.rglob("*"))


@pytest.mark.slow
def test_sigterm_while_a_checkpoint_is_written(tmp_path):
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "wd"
    writing = lambda wd: (wd / "checkpoints" / "iter_1.pt.tmp").exists()
    elapsed, code, err = _signal_run(wd, hq, writing, "train.max_iters=5", *BIG, "train.ckpt_interval=1")
    assert code == 130 and elapsed < SIGNAL_LIMIT_S, (elapsed, err)
    _no_partial_files(wd)  # the checkpoint is either whole or not there


@pytest.mark.slow
def test_a_second_sigint_stops_at_once(tmp_path):
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "wd"
    writing = lambda wd: (wd / "checkpoints" / "iter_1.pt.tmp").exists()
    elapsed, code, err = _signal_run(
        wd, hq, writing, "train.max_iters=5", *BIG, "train.ckpt_interval=1", sig=signal.SIGINT, second=0.1
    )
    assert code == 130 and elapsed < 1.0, (elapsed, err)
    assert "a second SIGINT" in err or "interrupted" in err
    _no_partial_files(wd)


@pytest.mark.slow
def test_a_long_torch_operation_does_not_hold_a_signal_back(tmp_path):
    """One torch call of many seconds: no Python handler can run, the watcher thread stops the process."""
    script = tmp_path / "long_op.py"
    script.write_text(
        "import sys, torch\n"
        "from facesr.training.signals import StopFlag\n"
        "torch.set_num_threads(1)\n"
        "a = torch.rand(1500, 1500)\n"
        "def report(signum, why):\n"
        "    print('hard stop:', why, file=sys.stderr, flush=True)\n"
        "with StopFlag(on_hard_stop=report) as stop:\n"
        "    with stop.interruptible('multiplying'):\n"
        "        print('ready', flush=True)\n"
        "        torch.linalg.matrix_power(a, 4000)\n"
        "print('not stopped', file=sys.stderr)\n"
    )
    code, seconds, err = signal_when_ready(script, _env())
    assert code == 130 and seconds < SIGNAL_LIMIT_S
    assert "hard stop: still multiplying 1 s later" in err


@pytest.mark.slow
def test_sigterm_mid_run_then_resume_is_bit_identical(tmp_path):
    hq = _faces(tmp_path / "hq")
    common = [
        "train.deterministic=true",
        "train.batch_size=8",
        "sched.periods=[10, 10]",
        f"data.val_hq_dir={hq}",
        "train.val_interval=5",
        "train.ckpt_interval=4",
    ]
    ref = tmp_path / "ref"
    subprocess.run(
        [sys.executable, "-m", "facesr.cli", *_train_argv(ref, hq, *common, "train.max_iters=20")],
        env=_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    wd = tmp_path / "wd"
    logged = lambda wd: (wd / "log.jsonl").exists() and (wd / "log.jsonl").read_text().count('"train"') >= 6
    _, code, err = _signal_run(wd, hq, logged, *common, "train.max_iters=100000")
    assert code == 130, err
    stopped = max(r["iter"] for r in read_log(wd))
    assert stopped < 20
    r = subprocess.run(
        [sys.executable, "-m", "facesr.cli", "train", "--work-dir", str(wd), "--resume", "--set", "train.max_iters=20"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    _weights_equal(ref / "checkpoints" / "iter_20.pt", wd / "checkpoints" / "iter_20.pt")


@pytest.mark.slow
def test_a_real_write_failure_at_best_safetensors_is_one_line(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes the write of best.safetensors fail for real (EFBIG)."""
    hq = _faces(tmp_path / "hq")
    wd = tmp_path / "wd"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, 16 << 10))

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "facesr.cli",
            *_train_argv(
                wd, hq, f"data.val_hq_dir={hq}", "train.val_interval=2", "train.max_iters=4", "train.ckpt_interval=100"
            ),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "cannot write the best weights" in line and os.strerror(errno.EFBIG) in line, line
    assert not (wd / "best.safetensors").exists() and not list(wd.glob("*.tmp"))
