"""Typed, validated configuration: YAML presets -> dataclasses, plus ``--set a.b=v`` overrides.

Every key is checked on load: an unknown key, a wrong type or a value outside
its allowed set raises :class:`ConfigError` with a one-line message naming the
dotted key.  ``configs/*.yaml`` hold the presets; a missing section or key takes
the default given here (the reference course recipe).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .data.degradations import DegradationCfg
from .data.seeding import MAX_SEED
from .errors import ConfigError, one_line
from .io.files import open_regular
from .models.registry import arch_cfg
from .schema import convert, from_dict

#: Largest YAML file (config preset or a resumed run's config.yaml) read, in bytes.
MAX_YAML_BYTES = 1 << 20
#: Deepest nesting of YAML collections accepted (a config is 3-4 levels deep).
MAX_YAML_DEPTH = 50


class _SafeConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*ref``: the "billion laughs" expansion) and deep nesting."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"YAML aliases (*{event.anchor}) are not accepted in configs; write the value out "
                f"(line {event.start_mark.line + 1})"
            )
        if self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent):
            self._depth += 1
            if self._depth > MAX_YAML_DEPTH:
                raise ConfigError(
                    f"YAML nested deeper than {MAX_YAML_DEPTH} levels (line {self.peek_event().start_mark.line + 1})"
                )
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)


def safe_yaml_load(text: str):
    """Parse YAML text with :class:`_SafeConfigLoader` (no aliases, bounded depth); YAML errors propagate."""
    loader = _SafeConfigLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path) -> Any:
    """A YAML file's data: refuses missing, oversized, non-UTF-8, aliased, too deep or invalid files (ConfigError)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found")
    try:
        with open_regular(p) as f:  # a folder, FIFO or device is refused, never blocked on
            data = f.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"{p}: over the {MAX_YAML_BYTES:,}-byte limit for a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    try:
        return safe_yaml_load(text)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({one_line(exc, 150)})") from None
    except RecursionError:
        raise ConfigError(f"{p}: YAML nested too deeply") from None


#: the keys of a config's ``model:`` section that are not the architecture's own fields
OWN_KEYS = ("arch", "max_params")


@dataclass
class ModelCfg:
    """The ``model:`` section: ``{arch: NAME, max_params: N, **the architecture's own Cfg fields}``.

    The architecture's fields are validated against its registered ``Cfg`` dataclass
    (:mod:`facesr.models.registry`) and kept, defaults filled in, in ``kwargs``;
    ``cfg.model.num_blocks`` reads them like ordinary attributes.
    """

    arch: str = "msrresnet"
    max_params: Optional[int] = None  # refuse to build/train a model with more trainable parameters
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", dataclasses.asdict(arch_cfg(self.arch, self.kwargs, also_known=OWN_KEYS)))

    def arch_kwargs(self) -> dict:
        """All constructor arguments of the architecture (defaults filled in)."""
        return dict(self.kwargs)

    def __getattr__(self, name: str):  # only called for names that are not real attributes
        kw = self.__dict__.get("kwargs")
        if name.startswith("__") or kw is None:
            raise AttributeError(name)
        if name in kw:
            return kw[name]
        raise AttributeError(f"model.{name}: not a field of architecture {self.arch!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in ("arch", "max_params", "kwargs"):
            object.__setattr__(self, name, value)
            return
        kw = arch_cfg(self.arch, {**self.kwargs, name: value}, also_known=OWN_KEYS)
        object.__setattr__(self, "kwargs", dataclasses.asdict(kw))

    def to_dict(self) -> dict:
        return {"arch": self.arch, "max_params": self.max_params, **self.arch_kwargs()}

    @staticmethod
    def from_config_value(value: Any, key: str) -> ModelCfg:
        return _model_cfg(value, key)


def _model_cfg(value: Any, key: str) -> ModelCfg:
    """``model:`` mapping -> :class:`ModelCfg` (the ``from_config_value`` hook of :func:`facesr.schema.convert`)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping (arch, max_params and the architecture's fields), got {value!r}")
    rest = dict(value)
    arch = rest.pop("arch", "msrresnet")
    if not isinstance(arch, str):
        raise ConfigError(f"{key}.arch: expected a string, got {arch!r}")
    max_params = convert(rest.pop("max_params", None), Optional[int], f"{key}.max_params")
    return ModelCfg(arch=arch.lower(), max_params=max_params, kwargs=rest)


@dataclass
class DataCfg:
    train_hq_dir: Union[str, list[str], None] = None  # folder(s) of HQ faces (uint8 RGB, nominally 512x512)
    val_lq_dir: Optional[str] = None  # paired validation: LQ folder ...
    val_gt_dir: Optional[str] = None  # ... and GT folder, matched by file stem
    val_hq_dir: Optional[str] = None  # or: HQ folder degraded once with val_seed
    val_seed: int = 0
    fallback_to_builtin: bool = False  # missing train/val folders -> the bundled sample faces (quickstart)
    num_workers: int = 2
    crop_size: Optional[int] = None  # LQ patch size; null = full 128x128 (reference)
    # Progressive patches: [[iteration, LQ patch size], ...] from iteration 0, e.g. [[0, 48], [3000, 96],
    # [5000, 128]]; replaces crop_size (keep that null).  CPU degradation only; not with time_budget_min.
    crop_schedule: Optional[list[list[int]]] = None
    flip: bool = True  # horizontal flip p=0.5 of LQ and GT together
    hq_size: int = 512
    hq_resize: Literal["area", "error"] = "area"  # what to do with HQ images not hq_size^2
    # exact: OpenCV, bit-exact MMagic LQ, in the DataLoader workers; batched: whole batches in torch on
    # degrade_device (auto = the training device), same LQ statistics (docs/performance.md).  The old
    # spelling `degrade_on: cpu|gpu` is still read (with a warning) as exact|batched.
    degrade_engine: Literal["exact", "batched"] = "exact"
    degrade_device: str = "auto"  # batched engine: auto (the training device), cpu, cuda, cuda:N
    prefetch_factor: int = 4
    pin_memory: bool = True

    @staticmethod
    def from_config_value(value: Any, key: str) -> DataCfg:  # the deprecated degrade_on read as degrade_engine
        return _section(DataCfg, value, key, _renamed_degrade_on)

    @property
    def degrade_on(self) -> str:
        """Deprecated view of ``degrade_engine`` (``cpu`` = exact, ``gpu`` = batched), for old callers."""
        return "gpu" if self.degrade_engine == "batched" else "cpu"


@dataclass
class TrainCfg:
    batch_size: int = 12  # per process; effective batch = batch_size x world size
    max_iters: int = 300_000
    val_interval: int = 5000
    val_interval_min: Optional[float] = None  # also validate every this many minutes of training time (null: off)
    ckpt_interval: int = 5000
    log_interval: int = 100
    keep_last: int = 3
    loss: Literal["l1", "mse", "charbonnier", "psnr"] = "l1"
    ema_momentum: Optional[float] = 0.001  # null disables EMA
    val_weights: Literal["raw", "ema", "both"] = "both"
    best_metric: str = "psnr"  # a metric val_weights produces: psnr, ssim, psnr_challenge (+ _ema variants)
    grad_clip: Optional[float] = None
    # Autocast of the training step and of validation (the inference vocabulary: fp32, bf16, fp16;
    # fp16 needs CUDA and adds a GradScaler).  The old key train.amp (none|bf16|fp16) is still read.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    compile: bool = False
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    deterministic: bool = False
    # Wall-clock budget in minutes (null = none).  At 15% of it, max_iters is fixed from the speed measured
    # since 5% (and a single-period cosine schedule is resized to it), so the run ends on budget with its lr
    # annealed; the plan is logged and written to config.yaml, so --resume continues it exactly.
    time_budget_min: Optional[float] = None

    @staticmethod
    def from_config_value(value: Any, key: str) -> TrainCfg:  # the deprecated amp read as precision
        return _section(TrainCfg, value, key, _read_deprecated_amp)


@dataclass
class OptimCfg:
    type: Literal["adam", "adamw"] = "adam"
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    impl: Literal["auto", "foreach", "fused", "loop"] = "auto"


@dataclass
class SchedCfg:
    type: Literal["cosine_restart", "constant"] = "cosine_restart"
    periods: list[int] = field(default_factory=lambda: [150_000, 150_000])
    restart_weights: Optional[list[float]] = None  # null = 1.0 for every period
    eta_min: float = 1e-7


@dataclass
class Config:
    name: str = "run"
    seed: int = 0
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    sched: SchedCfg = field(default_factory=SchedCfg)
    degradation: DegradationCfg = field(default_factory=DegradationCfg)

    def __post_init__(self) -> None:
        #: Dotted keys the user set on the command line (not a config field: never read from or written to YAML).
        self.user_set: set[str] = set()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


#: the deprecated ``train.amp`` values and the ``train.precision`` each one means
AMP_TO_PRECISION = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}
_warned: set[str] = set()


def _amp_as_precision(amp: Any, key: str) -> str:
    """The ``train.precision`` a deprecated ``train.amp`` value means; warns (once per process on stderr)."""
    if amp not in AMP_TO_PRECISION:
        raise ConfigError(
            f"{key}: {amp!r} is not one of 'none', 'bf16', 'fp16' (deprecated key: use train.precision: fp32|bf16|fp16)"
        )
    new = AMP_TO_PRECISION[amp]
    msg = f"{key} is deprecated; read as train.precision: {new} (fp32|bf16|fp16)"
    warnings.warn(msg, DeprecationWarning, stacklevel=3)
    if msg not in _warned:
        _warned.add(msg)
        print(f"facesr: {msg}", file=sys.stderr)
    return new


def _read_deprecated_amp(data: dict, prefix: str) -> dict:
    """A ``train:`` mapping with its deprecated ``amp`` key (old presets, old work dirs) as ``precision``."""
    if "amp" not in data:
        return data
    data = dict(data)
    new = _amp_as_precision(data.pop("amp"), f"{prefix}.amp")
    if data.get("precision", new) != new:
        raise ConfigError(
            f"{prefix}.amp: means precision {new}, which contradicts {prefix}.precision "
            f"{data['precision']!r}; give precision only"
        )
    data["precision"] = new
    return data


def _section(cls: type, value: Any, key: str, renamed: Callable[[dict, str], dict]) -> Any:
    """Config section ``cls`` from a mapping, its deprecated keys first rewritten by ``renamed``."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping of {cls.__name__} fields, got {value!r}")
    return from_dict(cls, renamed(value, key), key)


def _renamed_degrade_on(data: dict, prefix: str) -> dict:
    """``data.degrade_on: cpu|gpu`` (deprecated) -> ``data.degrade_engine: exact|batched``, with a warning.
    When both are given, the old key wins (a script's ``--set data.degrade_on=cpu`` keeps its meaning)."""
    if "degrade_on" not in data:
        return data
    data = dict(data)
    old = data.pop("degrade_on")
    key = f"{prefix}.degrade_on" if prefix else "degrade_on"
    new = {"cpu": "exact", "gpu": "batched"}.get(old)
    if new is None:
        raise ConfigError(
            f"{key}: {old!r} is not one of 'cpu', 'gpu' (deprecated key: use data.degrade_engine: exact|batched)"
        )
    warnings.warn(f"{key}: {old} is deprecated; write data.degrade_engine: {new}", FutureWarning, stacklevel=2)
    data["degrade_engine"] = new
    return data


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.max_iters=1000")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r}: empty key")
    if len(raw) > 10_000:
        raise ConfigError(f"override {key}: value is {len(raw):,} characters long (at most 10,000)")
    try:
        value = safe_yaml_load(raw) if raw.strip() != "" else None
    except ConfigError as exc:
        raise ConfigError(f"override {key}: {exc}") from None
    except (yaml.YAMLError, RecursionError):
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a plain config dict."""
    for item in overrides or []:
        path, value = _parse_override(item)
        if path == ["train", "amp"]:  # deprecated: an override of the old key replaces the preset's precision
            path, value = ["train", "precision"], _amp_as_precision(value, "train.amp")
        if path == ["train", "precision"] and isinstance(data.get("train"), dict):
            data["train"].pop("amp", None)  # the override wins over a preset's deprecated train.amp
        node = data
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"{'.'.join(path[: i + 1])}: is not a section, cannot set {'.'.join(path)}")
            node = nxt
        node[path[-1]] = value
    return data


VAL_METRICS = ("psnr", "ssim", "psnr_challenge")


def val_weights_used(train: TrainCfg) -> str:
    """Which weights validation scores: ``train.val_weights``, or ``"raw"`` when EMA is off."""
    return train.val_weights if train.ema_momentum else "raw"


def validation_metrics(train: TrainCfg) -> list[str]:
    """The metrics validation logs: psnr, ssim, psnr_challenge for the raw weights, ``*_ema`` for the EMA ones."""
    which = val_weights_used(train)
    return ([*VAL_METRICS] if which in ("raw", "both") else []) + (
        [f"{k}_ema" for k in VAL_METRICS] if which in ("ema", "both") else []
    )


def _need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def _check_finite(d: dict, prefix: str = "") -> None:
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        vals = v if isinstance(v, list) else [v]
        if isinstance(v, dict):
            _check_finite(v, key)
        elif any(isinstance(x, float) and not math.isfinite(x) for x in vals):
            raise ConfigError(f"{key}: must be a finite number, got {v!r}")


def _check_train(cfg: Config) -> None:
    need = _need
    metrics = validation_metrics(cfg.train)
    need(
        cfg.train.best_metric in metrics,
        "train.best_metric",
        f"{cfg.train.best_metric!r} is not a metric that validation of the {val_weights_used(cfg.train)} weights "
        f"produces (choose from {', '.join(metrics)})",
    )

    need(cfg.model.max_params is None or cfg.model.max_params > 0, "model.max_params", "must be positive or null")
    need(cfg.train.batch_size > 0, "train.batch_size", "must be positive")
    need(0 <= cfg.seed <= MAX_SEED, "seed", f"must be in 0..{MAX_SEED}")
    need(0 <= cfg.data.val_seed <= MAX_SEED, "data.val_seed", f"must be in 0..{MAX_SEED}")
    tb = cfg.train.time_budget_min
    need(
        tb is None or (math.isfinite(tb) and tb > 0),
        "train.time_budget_min",
        "must be a positive number of minutes or null",
    )
    vm = cfg.train.val_interval_min
    need(
        vm is None or (math.isfinite(vm) and vm > 0),
        "train.val_interval_min",
        "must be a positive number of minutes or null",
    )
    need(
        tb is None or cfg.sched.type != "cosine_restart" or len(cfg.sched.periods) == 1,
        "train.time_budget_min",
        "needs a one-period cosine (sched.periods: [N], resized to the budget) or sched.type: constant",
    )
    dirs = cfg.data.train_hq_dir
    need(
        not isinstance(dirs, list) or len(dirs) > 0,
        "data.train_hq_dir",
        "must be a folder or a non-empty list of folders",
    )
    need(cfg.train.max_iters > 0, "train.max_iters", "must be positive")
    for k in ("val_interval", "ckpt_interval", "log_interval", "keep_last"):
        need(getattr(cfg.train, k) > 0, f"train.{k}", "must be positive")
    m = cfg.train.ema_momentum
    need(m is None or 0 < m <= 1, "train.ema_momentum", "must be in (0, 1] or null")
    need(cfg.optim.lr > 0, "optim.lr", "must be positive")
    need(
        len(cfg.optim.betas) == 2 and all(0 <= b < 1 for b in cfg.optim.betas),
        "optim.betas",
        "must be two numbers in [0, 1)",
    )
    if cfg.sched.type == "cosine_restart":
        need(
            len(cfg.sched.periods) > 0 and all(p > 0 for p in cfg.sched.periods),
            "sched.periods",
            "must be a non-empty list of positive integers",
        )
        need(
            cfg.sched.restart_weights is None or len(cfg.sched.restart_weights) == len(cfg.sched.periods),
            "sched.restart_weights",
            f"needs one weight per period ({len(cfg.sched.periods)}), got {len(cfg.sched.restart_weights or [])}",
        )
    need(cfg.sched.eta_min >= 0, "sched.eta_min", "must be >= 0")
    need(cfg.optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    need(cfg.train.grad_clip is None or cfg.train.grad_clip > 0, "train.grad_clip", "must be positive or null")
    need(cfg.data.prefetch_factor > 0, "data.prefetch_factor", "must be positive")
    need(
        cfg.sched.restart_weights is None or all(w >= 0 for w in cfg.sched.restart_weights),
        "sched.restart_weights",
        "must be >= 0",
    )


def _check_data(cfg: Config) -> None:
    need = _need
    final = cfg.degradation.final.size
    cs = cfg.data.crop_size
    need(cs is None or 0 < cs <= final, "data.crop_size", f"must be null or in 1..{final}")
    sch = cfg.data.crop_schedule
    if sch is not None:
        ok = (
            isinstance(sch, list)
            and len(sch) > 0
            and all(isinstance(e, list) and len(e) == 2 and all(isinstance(v, int) for v in e) for e in sch)
        )
        need(ok, "data.crop_schedule", "must be a list of [iteration, patch size] pairs of integers")
        need(
            sch[0][0] == 0 and all(a[0] < b[0] for a, b in zip(sch, sch[1:])),
            "data.crop_schedule",
            "iterations must start at 0 and increase",
        )
        need(all(0 < c <= final for _, c in sch), "data.crop_schedule", f"patch sizes must be in 1..{final}")
        need(cs is None, "data.crop_size", "must be null when data.crop_schedule is set")
        need(cfg.data.degrade_engine == "exact", "data.crop_schedule", "needs data.degrade_engine: exact")
        need(
            cfg.train.time_budget_min is None,
            "train.time_budget_min",
            "cannot plan a run whose patch size changes (data.crop_schedule); give train.max_iters instead",
        )
    need(cfg.data.num_workers >= 0, "data.num_workers", "must be >= 0")
    dd = cfg.data.degrade_device.strip().lower()
    need(
        dd == "auto" or dd == "cpu" or dd.split(":")[0] in ("cuda", "mps"),
        "data.degrade_device",
        f"{cfg.data.degrade_device!r} is not auto, cpu, cuda, cuda:N or mps",
    )
    need(cfg.data.hq_size == cfg.degradation.up.size, "data.hq_size", "must equal degradation.up.size")
    need(
        cfg.data.hq_size == final * cfg.model.upscale_factor,
        "data.hq_size",
        f"must equal degradation.final.size x model.upscale_factor ({final} x {cfg.model.upscale_factor})",
    )


def _check_degradation(cfg: Config) -> None:
    need, deg = _need, cfg.degradation
    for sec in ("blur", "down", "noise", "jpeg", "up", "final"):
        need(0 <= getattr(cfg.degradation, sec).prob <= 1, f"degradation.{sec}.prob", "must be in [0, 1]")
    for sec, lst, probs in (
        ("blur", "kernel_list", "kernel_prob"),
        ("down", "resize_opt", "resize_prob"),
        ("up", "resize_opt", "resize_prob"),
        ("final", "resize_opt", "resize_prob"),
    ):
        s = getattr(cfg.degradation, sec)
        need(
            len(getattr(s, lst)) == len(getattr(s, probs)),
            f"degradation.{sec}.{probs}",
            f"needs one probability per entry of {lst}",
        )
        need(abs(sum(getattr(s, probs)) - 1) < 1e-6, f"degradation.{sec}.{probs}", "must sum to 1")
    need(len(deg.blur.kernel_size) > 0, "degradation.blur.kernel_size", "must be a non-empty list")
    for size in deg.blur.kernel_size:
        need(
            size % 2 == 1 and 0 < size <= 201,
            "degradation.blur.kernel_size",
            f"kernel sizes must be odd, 1..201, got {size}",
        )

    def pair(key: str, v: list, lo: float, hi: float, lo_open: bool = False) -> None:
        ok = len(v) == 2 and v[0] <= v[1] and (v[0] > lo if lo_open else v[0] >= lo) and v[1] <= hi
        need(ok, key, f"must be two numbers [low, high] within {'(' if lo_open else '['}{lo}, {hi}], got {v}")

    pair("degradation.blur.sigma_x", deg.blur.sigma_x, 0, 100, lo_open=True)
    pair("degradation.blur.sigma_y", deg.blur.sigma_y, 0, 100, lo_open=True)
    pair("degradation.blur.rotate_angle", deg.blur.rotate_angle, -2 * math.pi, 2 * math.pi)
    rs = deg.down.resize_scale
    up_p = deg.down.resize_mode_prob[0] if deg.down.resize_mode_prob else 0
    need(
        len(rs) == 2 and 0 < rs[0] <= 1 and rs[0] <= rs[1] <= (4 if up_p > 0 else 1),
        "degradation.down.resize_scale",
        f"must be [low, high] with low in (0, 1] and high in [low, {4 if up_p > 0 else 1}], got {rs}",
    )
    need(
        len(deg.down.resize_mode_prob) == 3
        and all(p >= 0 for p in deg.down.resize_mode_prob)
        and abs(sum(deg.down.resize_mode_prob) - 1) < 1e-6,
        "degradation.down.resize_mode_prob",
        "must be three probabilities (up, down, keep) summing to 1",
    )
    pair("degradation.noise.gaussian_sigma", deg.noise.gaussian_sigma, 0, 255)
    need(
        0 <= deg.noise.gaussian_gray_noise_prob <= 1, "degradation.noise.gaussian_gray_noise_prob", "must be in [0, 1]"
    )
    pair("degradation.jpeg.quality", deg.jpeg.quality, 1, 100)
    for sec in ("up", "final"):
        need(0 < getattr(deg, sec).size <= 4096, f"degradation.{sec}.size", "must be in 1..4096")


def validate(cfg: Config) -> Config:
    """Cross-field checks that types alone cannot express (fixed choices are ``Literal`` types, checked on load)."""
    _check_finite(cfg.to_dict())
    _check_train(cfg)
    _check_data(cfg)
    _check_degradation(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML preset (or the built-in defaults when ``path`` is None), apply overrides, validate."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        data = read_yaml_file(p) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
    data = apply_overrides(data, overrides)
    cfg = validate(from_dict(Config, data))
    # Keys the user set on the command line (the built-in data fallback never replaces those).
    cfg.user_set = {".".join(_parse_override(item)[0]) for item in overrides or []}
    return cfg


def config_from_dict(data: dict) -> Config:
    return validate(from_dict(Config, data))
