"""The GPU stage in one call: checks, then a training stage that fills the rest of the window.

Two sub-commands:

``python3 scripts/gpu_stage.py prep [--total-mib 62]`` (here, before the device call) copies
in-domain training faces (``../shared/data/train-hq-celebahq``, a fixed random order) and the
validation faces (``dev-val-celebahq``) into the git-ignored folder ``gpu_carry/``, as many
training faces as keep the working tree plus the folder under ``--total-mib`` (the device
carries 64 MiB in all).

``python3 scripts/gpu_stage.py run --budget-min 9.2 --out $OUT`` (on the device; see
``scripts/gpu_stage.sh`` and docs/gpu-runs.md):

1. the GPU rows of ``python -m benchmarks`` (``bench_degradation --gpu-only``: the batched engine's
   samples/s, its op count on CUDA, and the training step at batch 24 with the shipped model on
   the batched degradation against synthetic batches), to ``bench_gpu.txt``, while the GPU is idle;
2. the tests of the batched engine (CUDA tests included), at low priority beside step 3, log to
   ``pytest.log``;
3. a training stage (``scripts/gpu_stage.yaml``) warm-started from the shipped weights, its
   ``train.time_budget_min`` = the time left minus what the end needs (one cosine period sized
   to it); if it fails before validating, the exact engine in CPU workers takes the time left;
4. the better of its raw/EMA weights as fp32 ``stage.safetensors``, and both models scored side
   by side in fp32 on ``dev-val-celebahq`` (``eval.json``); logs in ``stage_logs.tar.gz``;
   ``session.log`` times every step.

``--dry-run`` runs the same steps on the CPU within a tiny budget (small batches and patches,
two validation faces, no test or benchmark work): tests/test_gpu_stage.py runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
WEIGHTS = REPO / "src" / "facesr" / "weights" / "facesr_default.safetensors"
STAGE_CONFIG = REPO / "scripts" / "gpu_stage.yaml"
#: Seconds kept back from the training budget for what follows it (startup, final validation of raw and
#: EMA weights on 100 faces, export, the two fp32 evaluations, packing), on the device / in a dry run.
RESERVE_S = {"device": 150.0, "dry": 45.0, "train-only": 75.0}


class Session:
    """Wall clock of the session and its log (``session.log`` in the output folder)."""

    def __init__(self, out: Path, budget_s: float):
        self.out, self.budget_s, self.t0 = out, budget_s, time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def say(self, msg: str) -> None:
        line = f"[{self.elapsed():6.1f}s] {msg}"
        print(line, flush=True)
        with open(self.out / "session.log", "a") as f:
            f.write(line + "\n")


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + str(REPO), PYTHONUNBUFFERED="1")
    return env


def run_logged(cmd: list[str], log: Path, timeout_s: float, stop_signal=signal.SIGTERM) -> int:
    """Run ``cmd`` in the repo with its output in ``log``; past ``timeout_s`` send ``stop_signal`` (then kill
    30 s later).  Returns the exit status (124 when stopped for time)."""
    with open(log, "ab") as f:
        p = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT)
        try:
            return p.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            p.send_signal(stop_signal)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            return 124


def tail(path: Path, n: int = 240) -> str:
    try:
        return path.read_text(errors="replace")[-n:].replace("\r", " ").replace("\n", " | ")
    except OSError:
        return "(no output)"


# ----------------------------------------------------------------------------- prep (here)


def tree_bytes() -> int:
    """Bytes of what travels to the device besides the carry: tracked plus untracked, not ignored files."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sum((REPO / f).stat().st_size for f in out.split("\0") if f and (REPO / f).is_file())


def prep(carry: Path, total_mib: float, train_dir: Path, val_dir: Path, seed: int = 0) -> dict:
    """Fill ``carry``/train and ``carry``/val; returns counts and sizes."""
    if not train_dir.is_dir() or not val_dir.is_dir():
        raise SystemExit(f"gpu_stage prep: {train_dir} or {val_dir} missing")
    if carry.exists():
        shutil.rmtree(carry)
    (carry / "train").mkdir(parents=True)
    shutil.copytree(val_dir, carry / "val")
    val_b = sum(p.stat().st_size for p in (carry / "val").iterdir())
    room = int(total_mib * 2**20) - tree_bytes() - val_b
    files = sorted(p for p in train_dir.iterdir() if p.is_file())
    random.Random(seed).shuffle(files)
    used = n = 0
    for p in files:
        size = p.stat().st_size
        if used + size > room:
            continue
        shutil.copy2(p, carry / "train" / p.name)
        used, n = used + size, n + 1
    return {
        "train_faces": n,
        "train_mib": used / 2**20,
        "val_faces": len(list((carry / "val").iterdir())),
        "of": len(files),
        "room_mib": room / 2**20,
    }


# ----------------------------------------------------------------------------- the run (device)


def model_overrides(weights: Path) -> list[str]:
    """``model.*`` overrides that rebuild the architecture stored in ``weights``' metadata."""
    sys.path.insert(0, str(REPO / "src"))
    from facesr.models.weights import read_weights

    lw = read_weights(weights)
    return [f"model.arch={lw.arch}"] + [f"model.{k}={v}" for k, v in sorted(lw.arch_config.items())]


def benchmarks(s: Session, dry: bool) -> None:
    """Step 2, first, while the GPU is idle: the GPU benchmark rows (skipped in a dry run)."""
    if dry:
        s.say("dry run: benchmarks skipped")
        return
    rc = run_logged(
        [sys.executable, "-m", "benchmarks.bench_degradation", "--gpu-only"],
        s.out / "bench_gpu.txt",
        min(150.0, 0.25 * s.left()),
    )
    s.say(f"bench rc={rc}: {tail(s.out / 'bench_gpu.txt', 600)}")


def start_tests(s: Session, dry: bool) -> subprocess.Popen | None:
    """Step 1, beside the training stage (mostly CPU work, at low priority): the tests, CUDA ones included."""
    if dry:
        s.say("dry run: tests skipped")
        return None
    s.say("tests started beside the training stage")
    with open(s.out / "pytest.log", "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [
                "nice",
                "-n",
                "10",
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/test_batched_degradations.py",
                "tests/test_degrade_engine.py",
            ],
            cwd=REPO,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def finish_tests(s: Session, p: subprocess.Popen | None, timeout_s: float) -> None:
    if p is None:
        return
    try:
        rc = p.wait(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    s.say(f"tests rc={rc}: {tail(s.out / 'pytest.log', 160)}")


def train_cmd(work: Path, budget_min: float, extra: list[str], dry: bool) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "facesr.cli",
        "train",
        str(STAGE_CONFIG),
        "--work-dir",
        str(work),
        "--init-from",
        str(WEIGHTS),
        "--set",
        f"train.time_budget_min={budget_min:.3f}",
        *model_overrides(WEIGHTS),
    ]
    if dry:
        cmd += [
            "train.batch_size=2",
            "data.crop_size=16",
            "data.num_workers=1",
            "train.device=cpu",
            "train.precision=fp32",
            "train.channels_last=false",
            "train.log_interval=5",
            "train.ckpt_interval=1000000",
        ]
    return cmd + extra


def train_stage(
    s: Session, runs: Path, carry: Path, dry: bool, extra: list[str], train_only: bool = False
) -> Path | None:
    """Step 3; returns the run folder that validated (None if none did)."""
    reserve = RESERVE_S["dry" if dry else "train-only" if train_only else "device"]
    data = [f"data.train_hq_dir={carry / 'train'}", f"data.val_hq_dir={carry / 'val'}"]
    for attempt, more in (("batched", []), ("exact", ["data.degrade_engine=exact", "data.num_workers=15"])):
        budget_min = (s.left() - reserve) / 60
        if budget_min < (0.05 if dry else 0.5):
            s.say(f"{attempt}: no time left to train ({s.left():.0f} s)")
            return None
        work = runs / attempt
        s.say(f"train ({attempt} degradation): {budget_min:.2f} min budget")
        rc = run_logged(
            train_cmd(work, budget_min, data + more + extra, dry),
            runs / f"{attempt}.out",
            budget_min * 60 * 1.15 + 90,
            stop_signal=signal.SIGINT,
        )
        s.say(f"train rc={rc}: {tail(runs / f'{attempt}.out')}")
        if (work / "best.json").is_file():
            return work
        if dry:
            break
    return None


def export(s: Session, work: Path) -> Path:
    """Step 4a: the better of raw/EMA (by validation PSNR) as fp32 safetensors in the output folder."""
    sys.path.insert(0, str(REPO / "src"))
    from facesr.models import build_model
    from facesr.models.weights import read_weights, save_weights

    val = json.loads((work / "best.json").read_text())["val"]
    use_ema = val.get("psnr_ema", -1e9) > val.get("psnr", -1e9)
    lw = read_weights(work / "best.safetensors", ema=use_ema)
    model = build_model(lw.arch, **lw.arch_config)
    model.load_state_dict(lw.state_dict)
    meta = {k: v for k, v in lw.metadata.items() if k not in ("format", "arch", "arch_config")}
    meta["weights"] = "ema" if use_ema else "raw"
    out = s.out / "stage.safetensors"
    save_weights(out, model, arch=lw.arch, metadata=meta)
    s.say(f"exported {'EMA' if use_ema else 'raw'} weights; validation {val}")
    return out


def evaluate(s: Session, new: Path, carry: Path, dry: bool) -> None:
    """Step 4b: shipped and new weights, fp32, side by side on the validation faces (eval.json)."""
    tmp = Path(tempfile.mkdtemp(prefix="gpu_stage_eval_"))
    lq = tmp / "lq"
    run_logged(
        [
            sys.executable,
            "-m",
            "facesr.cli",
            "degrade",
            str(carry / "val"),
            str(lq),
            "--seed",
            "0",
            "--workers",
            "1" if dry else "8",
        ],
        tmp / "degrade.out",
        120,
    )
    scores = {}
    for name, w in (("shipped", WEIGHTS), ("stage", new)):
        js = tmp / f"{name}.json"
        run_logged(
            [
                sys.executable,
                "-m",
                "facesr.cli",
                "eval",
                "--checkpoint",
                str(w),
                "--lq",
                str(lq),
                "--gt",
                str(carry / "val"),
                "--precision",
                "fp32",
                "--device",
                "cpu" if dry else "auto",
                "--json",
                str(js),
            ],
            tmp / f"{name}.out",
            120,
        )
        scores[name] = json.loads(js.read_text())["mean"] if js.is_file() else {"error": tail(tmp / f"{name}.out")}
    (s.out / "eval.json").write_text(json.dumps(scores, indent=2) + "\n")
    s.say(f"fp32 eval on {carry / 'val'}: {json.dumps(scores)}")
    shutil.rmtree(tmp, ignore_errors=True)


def pack_logs(s: Session, runs: Path) -> None:
    with tarfile.open(s.out / "stage_logs.tar.gz", "w:gz") as tar:
        for p in sorted(runs.rglob("*")):
            if p.is_file() and p.suffix not in (".pt", ".safetensors") and "checkpoints" not in p.parts:
                tar.add(p, arcname=str(p.relative_to(runs)))


def run(a) -> int:
    s = Session(Path(a.out), a.budget_min * 60)
    carry = Path(a.carry).resolve()
    if not (carry / "train").is_dir() or not (carry / "val").is_dir():
        s.say(f"{carry}: no train/ and val/ folders; run `python3 scripts/gpu_stage.py prep` first")
        return 2
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    s.say(
        f"{gpu} | {os.cpu_count()} CPUs | torch {torch.__version__} | budget {a.budget_min} min | "
        f"{len(list((carry / 'train').iterdir()))} training faces"
    )
    if not a.dry_run and not torch.cuda.is_available():
        s.say("no CUDA device: stopping (use --dry-run on a CPU)")
        return 2
    tests = None
    if not a.train_only:
        benchmarks(s, a.dry_run)
        tests = start_tests(s, a.dry_run)
    runs = Path(tempfile.mkdtemp(prefix="gpu_stage_runs_"))
    work = train_stage(s, runs, carry, a.dry_run, list(a.set), a.train_only)
    finish_tests(s, tests, 30)
    if work is not None:
        new = export(s, work)
        if not a.train_only:
            evaluate(s, new, carry, a.dry_run)
    pack_logs(s, runs)
    shutil.rmtree(runs, ignore_errors=True)
    s.say("done" if work is not None else "no stage weights")
    return 0 if work is not None else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prep", help="copy training and validation faces into the carry folder (run here)")
    p.add_argument("--carry", default=str(REPO / "gpu_carry"))
    p.add_argument("--total-mib", type=float, default=62.0, help="working tree + carry must stay under this")
    p.add_argument("--train-dir", default=str(SHARED / "train-hq-celebahq"))
    p.add_argument("--val-dir", default=str(SHARED / "dev-val-celebahq"))
    p.add_argument("--seed", type=int, default=0, help="the random order the training faces are taken in")
    r = sub.add_parser("run", help="tests, benchmarks, training stage, export and evaluation (on the device)")
    r.add_argument("--budget-min", type=float, default=9.2, help="wall-clock minutes for everything")
    r.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_out"))
    r.add_argument("--carry", default=str(REPO / "gpu_carry"))
    r.add_argument("--dry-run", action="store_true", help="CPU, tiny budget: check that every step runs")
    r.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more training overrides")
    r.add_argument(
        "--train-only",
        action="store_true",
        help="a short second call: no benchmarks, tests or evaluation (score stage.safetensors here)",
    )
    a = ap.parse_args(argv)
    if a.cmd == "prep":
        print(json.dumps(prep(Path(a.carry), a.total_mib, Path(a.train_dir), Path(a.val_dir), a.seed)))
        return 0
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
