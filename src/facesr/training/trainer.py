"""The training loop, read top to bottom in :func:`_loop`; its parts live in their own modules.

HQ folder -> on-the-fly degradation (:mod:`.loader`) -> float 0-1 batch on the device -> one
optimisation step (:mod:`.step`: autocast, loss + extra losses, GradScaler, clipping, Adam, EMA,
hooks) -> (every ``log_interval``) a ``train`` record in ``log.jsonl`` (:mod:`.runlog`) -> (every
``val_interval`` iterations or ``val_interval_min`` minutes) validation, keeping the best
(:mod:`.validation`) -> (every ``ckpt_interval``) a resumable checkpoint (:mod:`.state`).  A time
budget fixes the run's length from its measured speed (:mod:`.budget`).

Time: ``train_s`` is training time without validation and checkpoint writing (:mod:`.clock`).

Signals (:mod:`.signals`): building a batch, starting the loader, the forward and backward pass
(:meth:`.step.TrainStep.backward`) and validation scoring change no state, so SIGINT/SIGTERM abandon
them at once; the run then writes the checkpoint of its last whole iteration and ends.  Anything
still running a second after the signal is stopped hard, leaving no partial file.

Iteration bookkeeping: ``it`` counts *completed* iterations.  The iteration that brings the count
from ``it`` to ``it + 1`` trains with ``lr_at(it)`` (the reference closed form at n = it); log
lines carry ``"iter": it + 1`` and that lr.

Random streams: the global seed is set once (:func:`.build.setup_device`), then the model is
initialised, the EMA copied, a resumed run's RNG states restored and the DataLoader started, in
that order, so a resumed run ends bit-identical to one that never stopped.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import Config, val_weights_used
from ..data.datasets import load_val_pairs
from ..errors import TrainingError
from ..io.files import atomic_write_bytes
from ..io.guard import WriteGuard
from ..models import count_params
from ..models.registry import arch_config_of
from . import distributed as D
from .budget import BudgetDecision, BudgetPlanner, resize_run
from .build import build_networks, make_optimizer, setup_device, training_module
from .clock import TimedInterval, TrainClock
from .ema import EMA
from .loader import BatchSource, apply_builtin_fallback
from .losses import get_loss
from .memory import check_fits
from .progress import Progress
from .resume import load_resume_state, restore, resumed_config, stored_config
from .runlog import DISCARDED_NAME, RunLog
from .schedules import lr_at
from .signals import StopFlag, StopRequested
from .state import FORMAT, Checkpointer, remove_partial_files, rng_state
from .step import ExtraLoss, LossWindow, StepHook, TrainStep
from .validation import BestWeights, Validator
from .workdir import check_new_run, discard_unstarted, move_aside

__all__ = ["TrainingError", "make_optimizer", "train"]


def train(
    cfg: Config | None,
    work_dir: str | Path,
    resume: str | Path | bool | None = None,
    quiet: bool = False,
    init_from: str | Path | None = None,
    init_ema: bool = False,
    overwrite: bool = False,
    *,
    overrides: Sequence[str] = (),
    extra_losses: Sequence[ExtraLoss] = (),
    hooks: Sequence[StepHook] = (),
    protect: Sequence[str | Path] = (),
) -> dict:
    """Train per ``cfg`` into ``work_dir``.  ``resume``: a checkpoint path, True (latest in work_dir) or None.

    ``init_from``: start from these weights only (any format :func:`facesr.models.read_weights`
    reads; its EMA copy with ``init_ema``), with a fresh optimiser and schedule.  The lineage (this
    file, its SHA-256 and its own lineage) is logged and stored in the weights this run writes.

    A work dir belongs to one run (:mod:`facesr.training.workdir`): a new run refuses a non-empty
    ``work_dir`` unless ``overwrite`` (the old run is moved to ``<work_dir>.old-<timestamp>``, never
    when that folder is, holds or lies inside a data folder of the config, ``init_from`` or one of
    ``protect``: the command's inputs); a resumed run keeps the configuration stored in the work dir
    (see :func:`~facesr.training.resume.resumed_config`: ``cfg`` may be None, and it and
    ``overrides``, ``--set`` items, may change only :data:`~facesr.training.workdir.MUTABLE_KEYS`) and
    cuts ``log.jsonl`` back to the checkpoint.  A new run that fails before its first iteration
    leaves no work dir behind.  Before anything is allocated, a run that cannot fit in memory is
    refused (:mod:`facesr.training.memory`).

    SIGINT/SIGTERM stop the run within about 2 s at any stage, with a resumable checkpoint wherever
    one is safe to write (:mod:`facesr.training.signals`).

    ``extra_losses`` and ``hooks``: extra loss terms and per-step hooks (a second network), see
    :mod:`facesr.training.step`.

    Returns a summary dict (iterations, best metric, paths, ``stopped_by_signal``).  The
    process-wide deterministic-algorithms setting is restored afterwards.
    """
    prev = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    work_dir = Path(work_dir)
    report = _HardStopReport(work_dir)
    try:
        with StopFlag(on_hard_stop=report) as stop:
            try:
                with stop.interruptible("preparing the run"):
                    run = _prepare(
                        cfg, work_dir, resume, init_from, init_ema, overwrite, overrides, extra_losses, hooks, protect
                    )
            except StopRequested as s:  # nothing written yet
                return {
                    "iter": 0,
                    "best": None,
                    "work_dir": str(work_dir),
                    "last_checkpoint": None,
                    "params": None,
                    "stopped_by_signal": s.signum,
                }
            report.run = run
            stop.raise_in_sections = not run.dist.enabled  # under DDP, ranks stop together at sync points
            stop.stage = "writing the run's files"
            if run.dist.is_main:
                _open_outputs(run, overwrite=overwrite)
            return _run(run, stop, quiet)
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])


@dataclass
class _Run:
    """The parts of one run that the loop drives; ``it``: iterations completed so far; ``whole``: False
    while the state of ``it`` is not complete (its validation under way)."""

    cfg: Config
    work_dir: Path
    device: torch.device
    dist: D.DistInfo
    model: nn.Module
    ema: EMA | None
    step: TrainStep
    batches: BatchSource
    validator: Validator
    log: RunLog
    ckpt: Checkpointer
    clock: TrainClock
    lineage: list
    start_iter: int
    resumed: bool
    guard: WriteGuard
    it: int = 0
    whole: bool = True
    made_dir: bool = False


class _HardStopReport:
    """Called by the stop flag just before a hard stop: remove temporary files, say what is left."""

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self.run: _Run | None = None

    def __call__(self, signum: int, why: str) -> None:
        remove_partial_files(self.work_dir)
        last = self.run.ckpt.last_saved if self.run is not None else None
        if last:
            left = f"resumable checkpoint {last} (continue with --resume)"
        elif self.run is None or _unstarted(self.run):
            if self.run is not None:
                discard_unstarted(self.work_dir, remove_dir=self.run.made_dir)
            left = "nothing kept: no iteration had finished"
        else:
            left = "no checkpoint written yet (start over with --overwrite)"
        print(f"stopped by {signal.Signals(signum).name} at once ({why}); {left}", file=sys.stderr, flush=True)


def input_guard(cfg: Config, init_from: str | Path | None = None, protect: Sequence[str | Path] = ()) -> WriteGuard:
    """What a run must never move or write into: every data folder of ``cfg``, ``init_from`` and ``protect``."""
    d = cfg.data
    guard = WriteGuard().protect(
        d.train_hq_dir if isinstance(d.train_hq_dir, list) else [d.train_hq_dir], "data.train_hq_dir"
    )
    for key in ("val_lq_dir", "val_gt_dir", "val_hq_dir"):
        guard.protect([getattr(d, key)], f"data.{key}")
    return guard.protect([init_from], "the initial weights").protect(protect, "input")


def _config(
    cfg: Config | None, work_dir: Path, resume, overwrite: bool, overrides: Sequence[str], guard_extra: tuple
) -> tuple[Config, Path | None, dict | None]:
    """``(config, checkpoint, its contents)``: a resumed run's merged config, or a new run's own."""
    if resume:
        path, state = load_resume_state(work_dir, resume)
        stored, source = stored_config(work_dir, path, state)
        return resumed_config(stored, source, cfg, overrides), path, state
    if cfg is None or overrides:
        raise TrainingError("a new run needs a config (with its overrides applied: facesr.config.load_config)")
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 owns the work dir (others may start late)
        check_new_run(work_dir, overwrite, input_guard(cfg, *guard_extra))
    return cfg, None, None


def _prepare(
    cfg: Config | None,
    work_dir: Path,
    resume,
    init_from,
    init_ema: bool,
    overwrite: bool,
    overrides: Sequence[str],
    extra_losses: Sequence[ExtraLoss],
    hooks: Sequence[StepHook],
    protect: Sequence[str | Path],
) -> _Run:
    """Build every part, in the order that fixes the random stream; restore a resumed run's state.

    The data and the memory estimate are checked before the model is built (nothing slow or big first).
    """
    cfg, resume_path, state = _config(cfg, work_dir, resume, overwrite, overrides, (init_from, protect))
    device, dist = setup_device(cfg)
    if not resume:  # a resumed run trains on the data stored in its config, never on a fallback
        apply_builtin_fallback(cfg, dist.is_main)
    batches = BatchSource(cfg, device, dist)  # data validated before anything slow
    check_fits(
        cfg,
        device,
        batches.num_workers,
        len(batches.dataset),
        local_procs=max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)),
    )
    model, ema, lineage = build_networks(cfg, device, None if resume else init_from, init_ema)
    step = TrainStep(
        model,
        make_optimizer(cfg, model.parameters(), device),
        get_loss(cfg.train.loss),
        device=device,
        precision=cfg.train.precision,
        grad_clip=cfg.train.grad_clip,
        ema=ema,
        extra_losses=extra_losses,
        hooks=hooks,
    )
    val_pairs = load_val_pairs(cfg.data, cfg.degradation, cfg.model.upscale_factor) if dist.is_main else []
    start_iter, best, prior_s = 0, None, 0.0
    if state is not None and resume_path is not None:
        restore(state, resume_path, model, ema, step)
        start_iter, best, prior_s = int(state["iter"]), state.get("best"), float(state.get("elapsed_s") or 0.0)
        lineage = list(state.get("lineage") or [])
    if start_iter >= cfg.train.max_iters:
        raise TrainingError(
            f"nothing to do: checkpoint is at iteration {start_iter}, train.max_iters is {cfg.train.max_iters}"
        )
    step.forward = training_module(model, device, dist, cfg.train.compile)
    validator = _validator(cfg, work_dir, device, val_pairs, model, ema, lineage, best)
    ckpt = Checkpointer(work_dir / "checkpoints", cfg.train.keep_last, resume_path)
    validator.out.last_good = lambda: ckpt.last_saved
    return _Run(
        cfg,
        work_dir,
        device,
        dist,
        model,
        ema,
        step,
        batches,
        validator,
        RunLog(work_dir),
        ckpt,
        TrainClock(prior_s),
        lineage,
        start_iter,
        resumed=state is not None,
        guard=input_guard(cfg, init_from, protect),
        it=start_iter,
    )


def _validator(
    cfg: Config,
    work_dir: Path,
    device: torch.device,
    val_pairs: list,
    model: nn.Module,
    ema: EMA | None,
    lineage: list,
    best: dict | None,
) -> Validator:
    """Validation of the weights ``train.val_weights`` names (raw ``""``, EMA ``"_ema"``), best kept in work_dir."""
    which = val_weights_used(cfg.train)
    models = [("", model)] if which in ("raw", "both") else []
    if ema is not None and which != "raw":
        models.append(("_ema", ema.module))
    out = BestWeights(work_dir, model, ema.module if ema else None, cfg.model.arch, lineage)
    return Validator(
        val_pairs,
        models,
        out,
        device=device,
        precision=cfg.train.precision,
        channels_last=cfg.train.channels_last,
        best_metric=cfg.train.best_metric,
        best=best,
    )


def _open_outputs(run: _Run, overwrite: bool) -> None:
    """Rank 0: claim the work dir (moving an old run aside), write config.yaml, cut back and open the log."""
    if not run.resumed and overwrite:
        moved = move_aside(run.work_dir, run.guard)
        if moved is not None:
            print(f"moved the earlier run in {run.work_dir} to {moved}", file=sys.stderr)
    run.made_dir = not run.work_dir.exists()
    run.work_dir.mkdir(parents=True, exist_ok=True)
    _write_config(run)
    if run.resumed:
        cut = run.log.truncate(run.start_iter)
        if cut:
            print(
                f"{run.log.path}: {cut} line(s) written after iteration {run.start_iter} (the checkpoint resumed "
                f"from) moved to {DISCARDED_NAME}",
                file=sys.stderr,
            )
    run.log.open()
    if run.lineage and run.start_iter == 0:
        run.log.write({"iter": 0, "kind": "init", **run.lineage[-1], "lineage_depth": len(run.lineage)})


def _write_config(run: _Run) -> None:
    if run.dist.is_main:
        atomic_write_bytes(run.work_dir / "config.yaml", run.cfg.to_yaml().encode("utf-8"))


def _run(run: _Run, stop: StopFlag, quiet: bool) -> dict:
    """Run the loop; close the log, loader and process group however it ends.  A new run that fails or
    is stopped before its first iteration leaves no work dir behind (:func:`_discard_if_unstarted`)."""
    budget = _budget_planner(run)
    progress = Progress(run.cfg.train.max_iters, run.start_iter, run.dist.is_main and not quiet)
    progress.starting(_describe_run(run))
    try:
        it, stopped_by = _loop(run, budget, progress, stop)
    except Exception:
        run.log.close()
        _discard_if_unstarted(run)
        raise
    finally:
        stop.stage = "closing"
        progress.close()
        run.log.close()
        run.batches.close(now=stop.signum is not None)
        D.cleanup(run.dist)
    if stopped_by is not None:
        _discard_if_unstarted(run)
    last = run.ckpt.last_saved
    return {
        "iter": it,
        "best": run.validator.best,
        "work_dir": str(run.work_dir),
        "last_checkpoint": str(last) if last else None,
        "params": count_params(run.model),
        "stopped_by_signal": stopped_by,
    }


def _unstarted(run: _Run) -> bool:
    """A new run that has finished no iteration and written no checkpoint (its work dir holds nothing of value)."""
    return run.dist.is_main and not run.resumed and run.it == run.start_iter and run.ckpt.last_saved is None


def _discard_if_unstarted(run: _Run) -> None:
    """Remove an unstarted run's files (:func:`~.workdir.discard_unstarted`), so the same command can run again."""
    if _unstarted(run):
        discard_unstarted(run.work_dir, remove_dir=run.made_dir)


def _describe_run(run: _Run) -> str:
    c = run.cfg
    crop = run.batches.crop_size or c.data.hq_size // c.model.upscale_factor
    return (
        f"training from iteration {run.start_iter} to {c.train.max_iters} on {run.device} ({c.train.precision}, "
        f"batch {c.train.batch_size} of {crop}x{crop}, {run.batches.num_workers} data worker(s))"
    )


def _loop(run: _Run, budget: BudgetPlanner | None, progress: Progress, stop: StopFlag) -> tuple[int, int | None]:
    """Train from ``run.start_iter`` to ``train.max_iters``; returns the iteration reached and the
    signal that stopped the run early (None when it ran to the end)."""
    cfg = run.cfg
    window, timed_val = LossWindow(run.device), TimedInterval(cfg.train.val_interval_min, run.clock.prior_s)
    try:
        with stop.interruptible("starting the data loader"):
            run.batches.start(run.it)
        run.model.train()
        run.clock.start()
        while run.it < cfg.train.max_iters:
            lr = lr_at(run.it, cfg.sched, cfg.optim.lr)
            wait_s, step_s = _step(run, stop, window, lr)
            progress.update()
            if run.it == run.start_iter + 1:
                progress.first_step(step_s, wait_s, cfg.train.max_iters - run.it)
            if budget is not None and budget.due(run.it):
                _check_budget(run, budget, run.it, progress)
            if _after_step(run, stop, window, timed_val, progress, lr):
                _save_at_stop(run, stop)
                return run.it, stop.signum or signal.SIGTERM
    except StopRequested as s:  # in a section that keeps no state: the run stops at run.it
        if run.whole:
            _save_at_stop(run, stop)
        return run.it, s.signum
    return run.it, None


def _step(run: _Run, stop: StopFlag, window: LossWindow, lr: float) -> tuple[float, float]:
    """One iteration: batch, forward and backward (abandoned at a signal), then the update; returns
    ``(seconds waiting for the batch, seconds in all)``."""
    t0 = time.perf_counter()
    with stop.interruptible("building a batch"):
        new_crop = run.batches.crop_changes_at(run.it)  # progressive patches: a new loader at the new size
        lq, gt = run.batches.fetch()
        t1 = time.perf_counter()
        stop.stage = "in a forward and backward pass"
        pending = run.step.backward(run.batches.to_device(lq, gt, run.it))
    if new_crop:
        run.log.write({"iter": run.it, "kind": "crop", "crop_size": run.batches.crop_size})
    stop.stage = "in an optimiser step"
    loss = run.step.update(pending, lr)
    run.it += 1
    t2 = time.perf_counter()
    window.add(loss, t1 - t0, t2 - t0)
    return t1 - t0, t2 - t0


def _after_step(
    run: _Run, stop: StopFlag, window: LossWindow, timed_val: TimedInterval, progress: Progress, lr: float
) -> bool:
    """Log, validate and checkpoint as due after iteration ``run.it``; True when the run stops here."""
    it = run.it
    due = _Due.at(run, it, timed_val.due(run.clock))
    stopping = _agree_on_stop(run.dist, stop, due.sync)
    if (due.sync or stopping) and D.all_reduce_max_flag(run.dist, window.any_nonfinite()):
        # Checked before anything is saved, so no checkpoint ever holds non-finite weights.
        raise TrainingError(
            f"loss became non-finite before iteration {it} (lr {lr:.3g}); stopped. Last good "
            f"checkpoint: {run.ckpt.last_saved or 'none written yet'} (untouched). Lower "
            "optim.lr, set train.grad_clip, or use train.precision=fp32."
        )
    if due.log:
        _log_train(run, it, lr, window, progress)
    with run.clock.paused():
        if due.val:
            timed_val.advance(run.clock)
            _validate(run, stop, progress)
        if due.ckpt:
            _save(run, stop)
    if due.sync:
        D.barrier(run.dist)
    return stopping


def _validate(run: _Run, stop: StopFlag, progress: Progress) -> None:
    """Score the weights of ``run.it`` (abandoned at a signal: no checkpoint is then written for this
    iteration, so a resumed run validates it again), then keep a new best."""
    progress.validating(len(run.validator.pairs), run.it)
    run.whole = False
    with stop.interruptible("validating"):
        rec = run.validator.evaluate(run.it, round(run.clock.train_s(), 2))
    stop.stage = "writing the best weights"
    run.validator.keep(rec)
    run.whole = True
    run.log.write(rec)
    progress.show_val(rec)


def _save(run: _Run, stop: StopFlag) -> None:
    stop.stage = f"writing checkpoint {run.ckpt.path(run.it).name}"
    run.ckpt.save(run.it, _payload(run, run.it))


def _save_at_stop(run: _Run, stop: StopFlag) -> None:
    """The resumable checkpoint of ``run.it`` when a signal stops the run (rank 0; unless written already,
    or no iteration has finished: a new run is then discarded, a resumed one keeps its checkpoint)."""
    if run.dist.is_main and run.it > run.start_iter and run.ckpt.last_saved != run.ckpt.path(run.it):
        _save(run, stop)


@dataclass(frozen=True)
class _Due:
    """What happens after iteration ``it``: a log line, validation, a checkpoint; ``sync``: the ranks
    meet (the same iterations on every rank; validation and checkpoints are rank 0's alone)."""

    log: bool
    val: bool
    ckpt: bool
    sync: bool

    @staticmethod
    def at(run: _Run, it: int, timed_val: bool) -> _Due:
        t, main = run.cfg.train, run.dist.is_main
        at_end = it == t.max_iters
        log = it % t.log_interval == 0 or at_end
        return _Due(
            log=log,
            val=(it % t.val_interval == 0 or at_end or timed_val) and bool(run.validator) and main,
            ckpt=(it % t.ckpt_interval == 0 or at_end) and main,
            sync=log or it % t.val_interval == 0 or it % t.ckpt_interval == 0,
        )


def _agree_on_stop(dist: D.DistInfo, stop: StopFlag, sync: bool) -> bool:
    """Whether to stop now: on a signal; under DDP agreed at sync points only (collectives stay matched)."""
    if not dist.enabled:
        return stop.signum is not None
    return D.all_reduce_max_flag(dist, stop.signum is not None) if sync else False


def _log_train(run: _Run, it: int, lr: float, window: LossWindow, progress: Progress) -> None:
    stats = window.flush()
    run.log.write({"iter": it, "kind": "train", "lr": lr, **stats, "train_s": round(run.clock.train_s(), 2)})
    progress.show_loss(stats["loss"], lr, stats["data_wait"])


def _budget_planner(run: _Run) -> BudgetPlanner | None:
    """The time-budget planner (None without ``train.time_budget_min``); a logged plan is not made again."""
    minutes = run.cfg.train.time_budget_min
    if not minutes:
        return None
    planned = run.dist.is_main and run.log.has_plan()
    planned = bool(D.all_reduce_max_int(run.dist, int(planned)))  # every rank must agree (only rank 0 reads the log)
    return BudgetPlanner(minutes * 60, run.start_iter, planned)


def _check_budget(run: _Run, budget: BudgetPlanner, it: int, progress: Progress) -> None:
    """Rank 0's clock decides, at the same iterations on every rank; every rank applies the decision."""
    cfg, dist = run.cfg, run.dist
    mine = budget.propose(it, run.clock.train_s(), cfg.train.max_iters) if dist.is_main else BudgetDecision()
    d = BudgetDecision(
        D.all_reduce_max_int(dist, mine.max_iters), D.all_reduce_max_flag(dist, mine.over), mine.it_per_s
    )
    budget.accept(d)
    if d.max_iters and not d.over:
        resize_run(cfg, d.max_iters)
        run.log.write(
            {
                "iter": it,
                "kind": "plan",
                "max_iters": d.max_iters,
                "sched_periods": cfg.sched.periods,
                "it_per_s": d.it_per_s,
                "time_budget_min": cfg.train.time_budget_min,
            }
        )
    if d.over:  # slower than planned: end here (validate, checkpoint)
        cfg.train.max_iters = it
        run.log.write({"iter": it, "kind": "plan", "max_iters": it, "reason": "over 110% of the time budget"})
    if d.max_iters or d.over:
        _write_config(run)
        progress.set_total(cfg.train.max_iters)


def _payload(run: _Run, it: int) -> dict:
    """The resumable checkpoint of iteration ``it`` (see :mod:`facesr.training.state`)."""
    cfg, step = run.cfg, run.step
    payload = {
        "format": FORMAT,
        "arch": cfg.model.arch,
        "arch_config": arch_config_of(run.model),
        "model": run.model.state_dict(),
        "ema": run.ema.state_dict() if run.ema else None,
        "optimizer": step.optimizer.state_dict(),
        "scaler": step.scaler.state_dict() if step.scaler.is_enabled() else None,
        "iter": it,
        "best": run.validator.best,
        "rng": rng_state(),
        "config": cfg.to_dict(),
        "lineage": run.lineage,
        "elapsed_s": run.clock.train_s(),
    }
    hook_states = step.hook_states()
    if hook_states is not None:
        payload["hooks"] = hook_states
    return payload
