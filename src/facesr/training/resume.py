"""Resuming a run: which checkpoint, which configuration, and restoring the training state.

The configuration of a resumed run is the one stored in the work dir (``config.yaml``, else the
one inside the checkpoint).  :func:`resumed_config` is the one place where it is merged with what
the caller gives: a config (Python API) must agree with it apart from
:data:`~facesr.training.workdir.MUTABLE_KEYS` (whose values it may change) and the keys the run
rewrote itself; ``--set`` overrides may change only ``MUTABLE_KEYS``.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from ..config import Config, apply_overrides, config_from_dict, read_yaml_file
from ..errors import CheckpointError, ConfigError
from ..models.registry import arch_config_of
from ..models.weights import load_into
from .ema import EMA
from .runlog import RunLog
from .state import list_checkpoints, load_checkpoint, set_rng_state
from .step import TrainStep
from .workdir import (
    MUTABLE_KEYS,
    config_differences,
    format_differences,
    run_derived_keys,
)


def load_resume_state(work_dir: Path, resume: str | Path | bool) -> tuple[Path, dict]:
    """The checkpoint to resume from (``True``: the latest usable one in ``work_dir``) and its contents.

    With ``True``, checkpoints are tried newest first; one whose contents hold another iteration than
    its name (a renamed or copied file), or that does not load and whose iteration lies beyond the
    end of ``log.jsonl`` (a stray file), is passed over, and the choice is said in one line on stderr.
    A broken checkpoint within the log's reach is refused, naming the earlier one that may be intact.
    """
    ckpt_dir = work_dir / "checkpoints"
    if not isinstance(resume, bool):
        path = Path(resume)
        return path, load_checkpoint(path)
    cks = list_checkpoints(ckpt_dir)[::-1]
    if not cks:
        raise CheckpointError(
            f"{ckpt_dir}: resuming asked for, but no checkpoint found there (is {work_dir} the run's work dir?)"
        )
    log_end, passed = _log_end(work_dir), []
    for i, (n, path) in enumerate(cks):
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            if log_end is not None and n > log_end:
                passed.append(f"{path.name} (unreadable, beyond the log's last iteration)")
                continue
            _refuse_broken(path, exc, [p for _, p in cks[i + 1 :]])
        if state.get("iter") != n:
            passed.append(f"{path.name} (it holds iteration {state.get('iter')})")
            continue
        if passed:
            _note(f"resuming from {path.name}; passed over {', '.join(passed)}")
        return path, state
    raise CheckpointError(f"{ckpt_dir}: no checkpoint to resume from: {', '.join(passed)}")


def _refuse_broken(path: Path, exc: CheckpointError, earlier: list[Path]) -> None:
    if earlier:
        reason = str(exc).split("(", 1)[-1].rstrip(")")[:100]
        raise CheckpointError(
            f"{path} is unreadable ({reason}); the earlier checkpoint {earlier[0].name} may be "
            f"intact: resume from it by its path"
        ) from None
    raise exc


def _log_end(work_dir: Path) -> int | None:
    """The last iteration ``log.jsonl`` records plus one ``train.log_interval`` (a checkpoint may lie
    that far past the last log line); None without a log."""
    records = RunLog(work_dir).records()
    if not records:
        return None
    interval = 0
    f = work_dir / "config.yaml"
    if f.is_file():
        data = read_yaml_file(f)
        train = data.get("train") if isinstance(data, dict) else None
        value = train.get("log_interval") if isinstance(train, dict) else None
        interval = value if isinstance(value, int) else 0
    return max(r["iter"] for r in records) + interval


def _note(msg: str) -> None:
    """A one-line note on stderr (rank 0 only)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(msg, file=sys.stderr)


def stored_config(work_dir: Path, resume: str | Path | bool, state: dict | None = None) -> tuple[dict, str]:
    """``(config dict, where it came from)``: the work dir's config.yaml, else the checkpoint's.

    ``state``: the checkpoint's contents when already loaded (else it is loaded only if needed).
    """
    f = work_dir / "config.yaml"
    if f.is_file():
        data = read_yaml_file(f)
        if isinstance(data, dict):
            return data, str(f)
    path = None if isinstance(resume, bool) else Path(resume)
    if state is None:
        path, state = load_resume_state(work_dir, resume)
    if isinstance(state.get("config"), dict):
        return state["config"], str(path)
    raise CheckpointError(f"{path}: the run's configuration is missing ({f} and the checkpoint hold none)")


def refused_differences(stored: dict, given: dict) -> dict[str, tuple]:
    """Differences of config dict ``given`` from ``stored`` that a resume may not make."""
    skip = set(MUTABLE_KEYS) | run_derived_keys(stored)
    base = config_from_dict(stored).to_dict()
    return {k: v for k, v in config_differences(base, given).items() if k not in skip}


def check_config_agrees(stored: dict, source: str, given: Config, name: str) -> None:
    """Refuse a config ``given`` with a resume (``name``: its file) that differs from the stored one."""
    diffs = refused_differences(stored, given.to_dict())
    if diffs:
        raise ConfigError(
            f"{name} differs from the resumed run's own config ({Path(source).name}): "
            f"{format_differences(diffs, 3)}; omit the config file to resume"
        )


def resumed_config(stored: dict, source: str, cfg: Config | None = None, overrides: Sequence[str] = ()) -> Config:
    """The config a resumed run uses: ``stored``, with ``cfg``'s :data:`MUTABLE_KEYS` values, then ``overrides``.

    ``cfg`` (None: the stored config as it is) must agree with ``stored`` apart from
    ``MUTABLE_KEYS`` and the keys the run rewrote itself (a time-budget plan, the built-in data
    fallback; those keep their stored value unless ``cfg.user_set`` names them).  ``overrides``
    (``--set`` items) may change only ``MUTABLE_KEYS``.  Anything else is refused, listed.
    """
    merged = config_from_dict(stored)
    user_set = set(getattr(cfg, "user_set", set()))
    if cfg is not None:
        _refuse(refused_differences(stored, cfg.to_dict()), source)
        derived = run_derived_keys(stored)
        for k, (_old, new) in config_differences(merged.to_dict(), cfg.to_dict()).items():
            if k in MUTABLE_KEYS and (k not in derived or k in user_set):  # a plan's max_iters stays unless set
                _set_key(merged, k, new)
    if overrides:
        before = merged.to_dict()
        merged = config_from_dict(apply_overrides(copy.deepcopy(before), list(overrides)))
        changed = config_differences(before, merged.to_dict())
        _refuse({k: v for k, v in changed.items() if k not in MUTABLE_KEYS}, source)
        user_set |= {o.split("=", 1)[0].strip() for o in overrides}
    merged.user_set = user_set
    return merged


def _refuse(diffs: dict[str, tuple], source: str) -> None:
    if diffs:
        raise ConfigError(
            f"a resumed run keeps its configuration ({Path(source).name}), but these differ: "
            f"{format_differences(diffs, 3)} (a resume may change only {', '.join(MUTABLE_KEYS)})"
        )


def _set_key(cfg: Config, dotted: str, value) -> None:
    section, name = dotted.split(".")
    setattr(getattr(cfg, section), name, value)


def restore(state: dict, path: Path, model: nn.Module, ema: EMA | None, step: TrainStep) -> None:
    """Load a checkpoint's weights, EMA, optimiser, grad-scaler, hook and RNG states (in that order)."""
    if state["arch_config"] != arch_config_of(model):
        raise CheckpointError(
            f"{path}: checkpoint architecture {state['arch_config']} does not match the config {arch_config_of(model)}"
        )
    load_into(model, state["model"], str(path))
    if ema is not None and state.get("ema") is not None:
        ema.load_state_dict(state["ema"])
    step.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        step.scaler.load_state_dict(state["scaler"])
    step.load_hook_states(state.get("hooks"))
    set_rng_state(state["rng"])
