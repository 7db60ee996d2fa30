"""The training loop: one function, read top to bottom.

HQ folder -> on-the-fly degradation (DataLoader workers, or the GPU) -> uint8
batch -> float 0-1 on the device -> model -> loss -> Adam step -> EMA ->
(every ``log_interval``) log -> (every ``val_interval`` iterations or ``val_interval_min``
minutes) validate, keep best -> (every ``ckpt_interval``) resumable checkpoint.

Time: ``train_s`` (in log records, the checkpoint's ``elapsed_s`` and the time budget) is the
wall-clock seconds of the loop *without* validation and checkpoint writing, so runs of models with
different inference costs get the same training time under the same budget.

Iteration bookkeeping: ``it`` counts *completed* iterations.  The iteration that
brings the count from ``it`` to ``it + 1`` trains with ``lr_at(it)`` (the
reference closed form at n = it); log lines carry ``"iter": it + 1`` and that lr.
"""
from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..config import Config, val_weights_used
from ..errors import ConfigError, FacesrError, TrainingError
from ..devices import resolve_device
from ..errors import CheckpointError
from ..evaluation import evaluate_pairs
from ..inference import Restorer
from ..io.files import atomic_write_bytes
from ..models import build_model, count_params, save_weights
from ..models.weights import load_into, read_weights
from ..data.datasets import HQDegradeDataset, InfiniteSampler, load_val_pairs
from . import distributed as D
from .ema import EMA
from .losses import get_loss
from .schedules import lr_at
from .state import (FORMAT, latest_checkpoint, list_checkpoints, load_checkpoint, prune_checkpoints, rng_state,
                    save_checkpoint, set_rng_state)
from .workdir import check_new_run, move_aside, resumed_config, truncate_log


BUDGET_CHECK_EVERY = 10  # iterations between time-budget checks (the same on every rank)


def _read_log(path: Path) -> list[dict]:
    """Records of a ``log.jsonl`` (missing file or bad lines give nothing)."""
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _exit_with_parent(parent_pid: int) -> None:
    """Make this (DataLoader worker) process exit when ``parent_pid`` dies, even by ``kill -9``.

    A forkserver worker's parent is the fork server, not the trainer, so PR_SET_PDEATHSIG alone
    does not cover the trainer: a daemon thread also polls for the trainer once a second.
    """
    import os
    import threading
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:  # pragma: no cover - no libc: the poll below still works
            pass

    def watch():
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # pragma: no cover - the pid was reused by another user's process
                os._exit(0)

    threading.Thread(target=watch, name="facesr-parent-watch", daemon=True).start()


def _worker_init(_worker_id: int, parent_pid: int | None = None) -> None:
    # Workers each run single-threaded OpenCV/torch: N workers must not oversubscribe the cores.
    import cv2
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    if parent_pid is not None:
        _exit_with_parent(parent_pid)


def _worker_message(exc: BaseException) -> str:
    """The original one-line message of an error re-raised from a DataLoader worker (else the message)."""
    import re
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return re.sub(r"^[\w.]*(Error|Exception): ", "", lines[-1])
    return lines[0] if lines else type(exc).__name__


def make_optimizer(cfg: Config, params, device: torch.device) -> torch.optim.Optimizer:
    o = cfg.optim
    kw = dict(lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    if o.impl == "fused" or (o.impl == "auto" and device.type == "cuda"):
        kw["fused"] = True
    elif o.impl == "foreach" or o.impl == "auto":
        kw["foreach"] = True
    else:
        kw["foreach"] = False
    cls = torch.optim.Adam if o.type == "adam" else torch.optim.AdamW
    return cls(params, **kw)


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and exits at the next iteration boundary."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # second signal: give up immediately
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def _apply_builtin_fallback(cfg: Config, main: bool) -> None:
    """With ``data.fallback_to_builtin``, replace missing data folders by the bundled sample faces."""
    d = cfg.data
    if not d.fallback_to_builtin:
        return
    user_set = getattr(cfg, "user_set", set())  # paths the user gave explicitly are never replaced
    missing = [k for k in ("train_hq_dir", "val_hq_dir")
               if isinstance(getattr(d, k), str) and not Path(getattr(d, k)).is_dir() and f"data.{k}" not in user_set]
    if not missing:
        return
    from ..assets import builtin_faces_dir
    folder = str(builtin_faces_dir())
    for k in missing:
        if main:
            print(f"data.{k}: {getattr(d, k)} not found; using the built-in sample faces ({folder})", file=sys.stderr)
        setattr(d, k, folder)


def train(cfg: Config, work_dir: str | Path, resume: str | bool | None = None, quiet: bool = False,
          init_from: str | Path | None = None, init_ema: bool = False, overwrite: bool = False) -> dict:
    """Train per ``cfg`` into ``work_dir``.  ``resume``: a checkpoint path, True (latest in work_dir) or None.

    ``init_from``: start from these weights only (any format :func:`facesr.models.read_weights`
    reads; its EMA copy with ``init_ema``), with a fresh optimiser and schedule.  The lineage (this
    file, its SHA-256 and its own lineage) is logged and stored in the weights this run writes.

    A work dir belongs to one run (:mod:`facesr.training.workdir`): a new run refuses a non-empty
    ``work_dir`` unless ``overwrite`` (the old run is moved to ``<work_dir>.old-<timestamp>``); a
    resumed run keeps the configuration stored in the work dir (``cfg`` may change only
    :data:`~facesr.training.workdir.MUTABLE_KEYS`) and cuts ``log.jsonl`` back to the checkpoint.

    Returns a summary dict (iterations, best metric, paths).  The process-wide
    deterministic-algorithms setting is restored afterwards.
    """
    prev = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        return _train(cfg, work_dir, resume, quiet, init_from, init_ema, overwrite)
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])


def _init_weights(model, path: str | Path, ema: bool, arch: str) -> list:
    """Load weights only from ``path`` into ``model``; return the lineage list (oldest first)."""
    import hashlib
    lw = read_weights(path, ema=ema)
    if lw.arch != arch or lw.arch_config != model.arch_config():
        diff = {k: (lw.arch_config.get(k), v) for k, v in model.arch_config().items() if lw.arch_config.get(k) != v}
        raise CheckpointError(f"{path}: the initial weights are {lw.arch} {lw.arch_config}, the config builds {arch} "
                              f"(differs in: {', '.join(f'{k} {a} vs {b}' for k, (a, b) in diff.items()) or 'arch'})")
    load_into(model, lw.state_dict, str(path))
    h = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    prev = lw.metadata.get("lineage") if isinstance(lw.metadata, dict) else None
    try:
        lineage = json.loads(prev) if isinstance(prev, str) else list(prev or [])
    except ValueError:
        lineage = []
    it = lw.metadata.get("iter") if isinstance(lw.metadata, dict) else None
    return [*lineage, {"init_from": str(path), "sha256": h, "ema": ema, "source_format": lw.source_format,
                       "source_iter": it}]


def _resume_state(work_dir: Path, resume: str | bool) -> tuple[Path, dict]:
    """The checkpoint to resume from and its contents; a broken latest one names the earlier ones."""
    ckpt_dir = work_dir / "checkpoints"
    path = latest_checkpoint(ckpt_dir) if resume is True else Path(resume)
    if path is None:
        raise CheckpointError(f"{ckpt_dir}: resuming asked for, but no checkpoint found there")
    try:
        return path, load_checkpoint(path)
    except CheckpointError as exc:
        earlier = [p for _, p in list_checkpoints(ckpt_dir) if p != path][::-1]
        if resume is True and earlier:
            reason = str(exc).split("(", 1)[-1].rstrip(")")[:100]
            raise CheckpointError(f"{path} is unreadable ({reason}); the earlier checkpoint {earlier[0].name} may be "
                                  f"intact: resume from it by its path") from None
        raise


def _stored_config(work_dir: Path, state: dict, path: Path) -> tuple[dict, str]:
    """The run's configuration: the work dir's config.yaml, else the one inside the checkpoint."""
    from ..config import read_yaml_file
    f = work_dir / "config.yaml"
    if f.is_file():
        data = read_yaml_file(f)
        if isinstance(data, dict):
            return data, str(f)
    if isinstance(state.get("config"), dict):
        return state["config"], str(path)
    raise CheckpointError(f"{path}: the run's configuration is missing ({f} and the checkpoint hold none)")


def _train(cfg: Config, work_dir: str | Path, resume: str | bool | None, quiet: bool,
           init_from: str | Path | None = None, init_ema: bool = False, overwrite: bool = False) -> dict:
    work_dir = Path(work_dir)
    state = resume_path = None
    if resume:
        resume_path, state = _resume_state(work_dir, resume)
        stored, source = _stored_config(work_dir, state, resume_path)
        user_set = getattr(cfg, "user_set", set())
        cfg = resumed_config(stored, cfg, source)
        cfg.user_set = user_set
    elif int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 owns the work dir (others may start late)
        check_new_run(work_dir, overwrite)
    device = resolve_device(cfg.train.device, option="train.device")
    dist_info = D.init_distributed(device.type)
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", dist_info.local_rank)
    main = dist_info.is_main
    if cfg.train.amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp: fp16 needs a CUDA device (use bf16 on CPU)")
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)

    # ---- model, parameter cap, EMA, optimiser --------------------------------------------------
    model = build_model(cfg.model.arch, **cfg.model.arch_kwargs())
    n_params = count_params(model)
    if cfg.model.max_params is not None and n_params > cfg.model.max_params:
        raise ConfigError(f"model.max_params: the model has {n_params:,} trainable parameters, over the cap of "
                          f"{cfg.model.max_params:,}")
    lineage: list = []
    if init_from is not None and not resume:
        lineage = _init_weights(model, init_from, init_ema, cfg.model.arch)
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    ema = EMA(model, cfg.train.ema_momentum) if cfg.train.ema_momentum else None
    optimizer = make_optimizer(cfg, model.parameters(), device)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.amp == "fp16")
    loss_fn = get_loss(cfg.train.loss)
    amp_dtype = Restorer.AMP[cfg.train.amp]  # the training step's own autocast (validation: the Restorer's)
    which = val_weights_used(cfg.train)
    val_models = ([("", model)] if which in ("raw", "both") else []) + ([("_ema", ema.module)] if which != "raw" else [])

    # ---- data (validated before anything slow) ---------------------------------------------------
    if not resume:  # a resumed run trains on the data stored in its config, never on a fallback
        _apply_builtin_fallback(cfg, main)
    if not cfg.data.train_hq_dir:
        raise ConfigError("data.train_hq_dir: not set (a folder of HQ face images)")

    def crop_at(it: int) -> int | None:
        """The LQ patch size iteration ``it`` trains on (``data.crop_schedule``, else ``data.crop_size``)."""
        if not cfg.data.crop_schedule:
            return cfg.data.crop_size
        return [c for start, c in cfg.data.crop_schedule if start <= it][-1]

    dataset = HQDegradeDataset(cfg.data.train_hq_dir, cfg.degradation, cfg.seed, cfg.data.hq_size, cfg.data.hq_resize,
                               crop_at(0), cfg.data.flip, cfg.model.upscale_factor,
                               degrade=cfg.data.degrade_on == "cpu")
    val_pairs = load_val_pairs(cfg.data, cfg.degradation, cfg.model.upscale_factor) if main else []
    gpu_degrader = None
    if cfg.data.degrade_on == "gpu":
        from ..data.gpu_degradations import GpuDegrader
        gpu_degrader = GpuDegrader(cfg.degradation, cfg.seed, device, cfg.data.crop_size)

    # ---- resume --------------------------------------------------------------------------------------
    start_iter, best, prior_s = 0, None, 0.0
    ckpt_dir = work_dir / "checkpoints"
    if state is not None:
        path = resume_path
        if state["arch_config"] != model.arch_config():
            raise CheckpointError(f"{path}: checkpoint architecture {state['arch_config']} does not match the config "
                                  f"{model.arch_config()}")
        load_into(model, state["model"], str(path))
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start_iter, best = int(state["iter"]), state.get("best")
        prior_s = float(state.get("elapsed_s") or 0.0)
        lineage = list(state.get("lineage") or [])
    if start_iter >= cfg.train.max_iters:
        raise TrainingError(f"nothing to do: checkpoint is at iteration {start_iter}, train.max_iters is {cfg.train.max_iters}")

    train_model = model
    if dist_info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        train_model = torch.compile(train_model)

    def make_loader(from_iter: int) -> DataLoader:
        """Batches from iteration ``from_iter`` on, at that iteration's patch size (rebuilt when it changes)."""
        dataset.crop_size = crop_at(from_iter)
        sampler = InfiniteSampler(len(dataset), cfg.seed, from_iter * cfg.train.batch_size * dist_info.world_size,
                                  dist_info.rank, dist_info.world_size)
        nw = cfg.data.num_workers
        return DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler, num_workers=nw,
                          pin_memory=cfg.data.pin_memory and device.type == "cuda", drop_last=True,
                          worker_init_fn=functools.partial(_worker_init, parent_pid=os.getpid()) if nw else None,
                          persistent_workers=nw > 0,
                          prefetch_factor=cfg.data.prefetch_factor if nw else None,
                          # forkserver: a forked worker deadlocks in OpenCV once the parent has used its thread pool.
                          multiprocessing_context="forkserver" if nw and sys.platform != "win32" else None)
    loader = make_loader(start_iter)

    # ---- outputs (rank 0) ------------------------------------------------------------------------
    log_f = writer = None
    if main:
        if not resume and overwrite:
            moved = move_aside(work_dir)
            if moved is not None:
                print(f"moved the earlier run in {work_dir} to {moved}", file=sys.stderr)
        work_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(work_dir / "config.yaml", cfg.to_yaml().encode("utf-8"))
        if resume:
            truncate_log(work_dir / "log.jsonl", start_iter)
        log_f = open(work_dir / "log.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(work_dir / "tb"))
        except Exception:  # tensorboard missing or broken: the jsonl log still has everything
            writer = None

    def log(record: dict) -> None:
        if log_f is None:
            return
        log_f.write(json.dumps(record) + "\n")
        log_f.flush()
        if writer is not None:
            for k, v in record.items():
                if k not in ("iter", "kind") and isinstance(v, (int, float)):
                    writer.add_scalar(f"{record['kind']}/{k}", v, record["iter"])

    def checkpoint_payload(it: int) -> dict:
        return {"format": FORMAT, "arch": cfg.model.arch, "arch_config": model.arch_config(),
                "model": model.state_dict(), "ema": ema.state_dict() if ema else None,
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "iter": it, "best": best, "rng": rng_state(), "config": cfg.to_dict(), "lineage": lineage,
                "elapsed_s": train_s()}

    def train_s() -> float:
        """Training seconds so far (this run and the runs it resumes), excluding validation and checkpoints."""
        return prior_s + time.perf_counter() - t_start - paused_s

    def save(it: int) -> Path:
        path = ckpt_dir / f"iter_{it}.pt"
        save_checkpoint(path, checkpoint_payload(it), last_good=last_saved)
        prune_checkpoints(ckpt_dir, cfg.train.keep_last, protect=path)
        return path

    def score(m) -> dict:
        """Mean validation scores of module ``m`` through the one forward path (Restorer); train mode restored."""
        was_training = m.training
        try:
            restorer = Restorer(m, device=device, amp=cfg.train.amp, channels_last=cfg.train.channels_last)
            return evaluate_pairs(restorer, val_pairs)["mean"]
        finally:
            m.train(was_training)

    def validate(it: int) -> dict:
        rec: dict = {"iter": it, "kind": "val"}
        for suffix, m in val_models:
            rec.update({k + suffix: v for k, v in score(m).items()})
        return rec

    if lineage and start_iter == 0:
        log({"iter": 0, "kind": "init", **lineage[-1], "lineage_depth": len(lineage)})

    # ---- the loop --------------------------------------------------------------------------------------
    budget_s = cfg.train.time_budget_min * 60 if cfg.train.time_budget_min else None
    planned = budget_s is None or (main and any(r.get("kind") == "plan" for r in _read_log(work_dir / "log.jsonl")))
    if budget_s is not None:  # every rank must agree (only rank 0 sees the log)
        planned = bool(D.all_reduce_max_int(dist_info, int(planned)))
    pbar = None
    if main and not quiet:
        from tqdm import tqdm
        pbar = tqdm(total=cfg.train.max_iters, initial=start_iter, unit="it", dynamic_ncols=True, file=sys.stderr)
    loss_sum = torch.zeros((), device=device)
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    n_in_window, wait_s, step_s = 0, 0.0, 0.0
    last_saved = resume_path  # the last good checkpoint (on resume: the one resumed from)
    data_iter = iter(loader)
    model.train()
    it = start_iter
    stopped_by = None
    t_start, warm = time.perf_counter(), None  # prior_s: training seconds of the run before a resume
    paused_s = 0.0  # seconds spent validating and checkpointing (not training time)
    val_every_s = cfg.train.val_interval_min * 60 if cfg.train.val_interval_min else None
    next_val_s = (prior_s // val_every_s + 1) * val_every_s if val_every_s else None
    with _StopFlag() as stop:
        try:
            while it < cfg.train.max_iters:
                if dataset.crop_size != crop_at(it):  # progressive patches: a new loader at the new size
                    data_iter = None  # the old loader's workers exit once it is dropped
                    loader = make_loader(it)
                    data_iter = iter(loader)
                    log({"iter": it, "kind": "crop", "crop_size": dataset.crop_size})
                t0 = time.perf_counter()
                try:
                    lq, gt = next(data_iter)
                except FacesrError as exc:  # from a DataLoader worker: its message is "Caught X in ... Traceback"
                    raise type(exc)(_worker_message(exc)) from None
                t1 = time.perf_counter()
                lr = lr_at(it, cfg.sched, cfg.optim.lr)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                gt = gt.to(device, non_blocking=True).float().div_(255.0)
                if gpu_degrader is not None:
                    lq, gt = gpu_degrader(gt, it * cfg.train.batch_size * dist_info.world_size + dist_info.rank,
                                          stride=dist_info.world_size)
                else:
                    lq = lq.to(device, non_blocking=True).float().div_(255.0)
                if cfg.train.channels_last:
                    lq = lq.contiguous(memory_format=torch.channels_last)
                    gt = gt.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    out = train_model(lq)
                loss = loss_fn(out.float(), gt)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.train.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(model)
                # No host sync per step: accumulate on the device, read at log time.
                ld = loss.detach()
                loss_sum += ld
                nonfinite |= ~torch.isfinite(ld)
                it += 1
                n_in_window += 1
                t2 = time.perf_counter()
                wait_s += t1 - t0
                step_s += t2 - t0
                if pbar is not None:
                    pbar.update(1)

                if budget_s is not None and (it - start_iter) % BUDGET_CHECK_EVERY == 0:
                    # Rank 0's clock decides, at the same iterations on every rank (collectives stay matched).
                    total, over, rate = 0, False, None
                    if main:
                        elapsed = train_s()
                        if not planned and warm is None and it - start_iter >= 10 and elapsed >= 0.05 * budget_s:
                            warm = (it, elapsed)  # the speed is measured from 5% to 15% of the budget
                        elif not planned and warm is not None and elapsed >= 0.15 * budget_s:
                            rate = (it - warm[0]) / (elapsed - warm[1])
                            total = max(it + 1, it + int(rate * max(0.0, budget_s - elapsed)))
                        over = elapsed > 1.1 * budget_s and it < cfg.train.max_iters
                    total = D.all_reduce_max_int(dist_info, total)
                    over = D.all_reduce_max_flag(dist_info, over)
                    if total and not over:
                        # Fix the run's length from the measured speed; a one-period cosine is resized to it.
                        cfg.train.max_iters = total
                        if cfg.sched.type == "cosine_restart" and len(cfg.sched.periods) == 1:
                            cfg.sched.periods = [total]
                        planned = True
                        log({"iter": it, "kind": "plan", "max_iters": total, "sched_periods": cfg.sched.periods,
                             "it_per_s": rate, "time_budget_min": cfg.train.time_budget_min})
                    if over:  # slower than planned: end here (validate, checkpoint)
                        cfg.train.max_iters = it
                        log({"iter": it, "kind": "plan", "max_iters": it, "reason": "over 110% of the time budget"})
                    if (total or over) and main:
                        atomic_write_bytes(work_dir / "config.yaml", cfg.to_yaml().encode("utf-8"))
                    if (total or over) and pbar is not None:
                        pbar.total = cfg.train.max_iters
                        pbar.refresh()
                at_end = it == cfg.train.max_iters
                do_log = it % cfg.train.log_interval == 0 or at_end
                timed_val = next_val_s is not None and train_s() >= next_val_s  # rank 0 validates alone: no collective
                do_val = (it % cfg.train.val_interval == 0 or at_end or timed_val) and bool(val_pairs) and main
                do_ckpt = (it % cfg.train.ckpt_interval == 0 or at_end) and main
                # Sync points are the same on every rank; under DDP the stop flag is only agreed on there.
                sync = do_log or it % cfg.train.val_interval == 0 or it % cfg.train.ckpt_interval == 0
                if dist_info.enabled:
                    stopping = D.all_reduce_max_flag(dist_info, stop.signum is not None) if sync else False
                else:
                    stopping = stop.signum is not None
                if (sync or stopping) and D.all_reduce_max_flag(dist_info, bool(nonfinite.item())):
                    # Checked before anything is saved, so no checkpoint ever holds non-finite weights.
                    raise TrainingError(
                        f"loss became non-finite before iteration {it} (lr {lr:.3g}); stopped. Last good checkpoint: "
                        f"{last_saved or 'none written yet'} (untouched). Lower optim.lr, set train.grad_clip, "
                        f"or use train.amp=none.")
                if do_log:
                    mean_loss = loss_sum.item() / n_in_window
                    frac = wait_s / step_s if step_s > 0 else 0.0
                    log({"iter": it, "kind": "train", "lr": lr, "loss": mean_loss, "data_wait": frac,
                         "it_per_s": n_in_window / step_s if step_s > 0 else 0.0, "train_s": round(train_s(), 2)})
                    if pbar is not None:
                        pbar.set_postfix(loss=f"{mean_loss:.4g}", lr=f"{lr:.3g}", wait=f"{frac:.0%}")
                    loss_sum.zero_()
                    n_in_window, wait_s, step_s = 0, 0.0, 0.0

                t_pause = time.perf_counter()
                if do_val:
                    if next_val_s is not None:
                        while next_val_s <= train_s():
                            next_val_s += val_every_s
                    at_s = round(train_s(), 2)
                    rec = {**validate(it), "train_s": at_s}
                    log(rec)
                    metric = cfg.train.best_metric  # one of rec's keys: checked when the config was loaded
                    if best is None or rec[metric] > best["value"]:  # every validation metric: higher is better
                        best = {"metric": metric, "value": rec[metric], "iter": it}
                        save_weights(work_dir / "best.safetensors", model, arch=cfg.model.arch,
                                     ema=ema.module if ema else None,
                                     metadata={"iter": it, "val": {k: v for k, v in rec.items() if k != "kind"},
                                               "lineage": lineage})
                        (work_dir / "best.json").write_text(json.dumps({**best, "val": rec}, indent=2))
                    if pbar is not None:
                        pbar.write(f"[val] iter {it}: " + ", ".join(f"{k} {v:.4f}" for k, v in rec.items()
                                                                   if isinstance(v, float)))
                if do_ckpt:
                    last_saved = save(it)
                paused_s += time.perf_counter() - t_pause
                if sync:
                    D.barrier(dist_info)
                if stopping:
                    stopped_by = stop.signum or signal.SIGTERM
                    if main and last_saved != ckpt_dir / f"iter_{it}.pt":
                        last_saved = save(it)
                    break
        finally:
            if pbar is not None:
                pbar.close()
            if log_f is not None:
                log_f.close()
            if writer is not None:
                writer.close()
            del data_iter
            D.cleanup(dist_info)
    summary = {"iter": it, "best": best, "work_dir": str(work_dir),
               "last_checkpoint": str(last_saved) if last_saved else None, "params": n_params,
               "stopped_by_signal": stopped_by}
    return summary
