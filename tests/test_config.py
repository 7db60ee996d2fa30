"""Typed config: defaults, unknown keys, bad types, --set overrides, presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesr.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_course_recipe():
    cfg = load_config(None)
    assert isinstance(cfg, Config)
    assert (cfg.model.num_blocks, cfg.model.mid_channels, cfg.model.variant) == (16, 64, "mmagic")
    assert cfg.train.batch_size == 12 and cfg.train.max_iters == 300_000 and cfg.train.loss == "l1"
    assert cfg.optim.lr == 2e-4 and cfg.sched.periods == [150_000, 150_000] and cfg.sched.eta_min == 1e-7
    assert cfg.train.ema_momentum == 0.001
    assert cfg.degradation.blur.kernel_size == [41] and cfg.degradation.final.size == 128
    assert cfg.degradation.jpeg.color_order == "mmagic"


def test_unknown_key_named():
    with pytest.raises(ConfigError, match=r"^train\.foo: unknown key"):
        load_config(None, ["train.foo=1"])
    with pytest.raises(ConfigError, match=r"^degradation\.blur\.sigma: unknown key"):
        load_config(None, ["degradation.blur.sigma=[1, 2]"])
    with pytest.raises(ConfigError, match=r"^bogus: unknown key"):
        load_config(None, ["bogus=1"])


def test_unknown_model_key_lists_every_model_key():
    """model.* takes arch and max_params as well as the architecture's own fields: the message names them all."""
    with pytest.raises(ConfigError, match=r"^model\.foo: unknown key") as e:
        load_config(None, ["model.foo=1"])
    known = str(e.value).split("known: ")[1].rstrip(")").split(", ")
    assert {"arch", "max_params", "num_blocks", "mid_channels"} <= set(known)


def test_unknown_key_in_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  batch_size: 4\n  max_iter: 10\n")
    with pytest.raises(ConfigError, match=r"train\.max_iter: unknown key"):
        load_config(p)


@pytest.mark.parametrize(
    "item,key",
    [
        ("train.batch_size=abc", "train.batch_size"),
        ("train.amp=yes", "train.amp"),
        ("train.precision=none", "train.precision"),
        ("optim.lr=fast", "optim.lr"),
        ("sched.periods=100", "sched.periods"),
        ("sched.periods=[100, x]", "sched.periods[1]"),
        ("model.variant=kair", "model.variant"),
        ("data.flip=3", "data.flip"),
        ("train=5", "train"),
    ],
)
def test_bad_type_named(item, key):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [item])
    assert str(exc.value).split(":")[0] == key
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "item,key",
    [
        ("train.batch_size=0", "train.batch_size"),
        ("data.crop_size=200", "data.crop_size"),
        ("sched.restart_weights=[1.0]", "sched.restart_weights"),
        ("train.ema_momentum=1.5", "train.ema_momentum"),
        ("model.upscale_factor=8", "model.upscale_factor"),
    ],
)
def test_cross_field_validation_named(item, key):
    with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.") + ":"):
        load_config(None, [item])


def test_malformed_override():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["train.batch_size"])


def _get(cfg, dotted):
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize(
    "item,expected",
    [
        ("seed=7", 7),
        ("model.num_blocks=24", 24),
        ("model.mid_channels=32", 32),
        ("model.max_params=2276356", 2_276_356),
        ("data.train_hq_dir=/data/ffhq", "/data/ffhq"),
        ("data.val_lq_dir=val/lq", "val/lq"),
        ("data.val_gt_dir=val/gt", "val/gt"),
        ("data.val_hq_dir=val/hq", "val/hq"),
        ("data.num_workers=0", 0),
        ("data.crop_size=64", 64),
        ("train.batch_size=16", 16),
        ("train.max_iters=1000", 1000),
        ("train.val_interval=250", 250),
        ("train.ckpt_interval=500", 500),
        ("train.log_interval=10", 10),
        ("train.loss=psnr", "psnr"),
        ("train.ema_momentum=0.002", 0.002),
        ("train.ema_momentum=null", None),
        ("train.precision=bf16", "bf16"),
        ("optim.lr=1e-4", 1e-4),
        ("optim.lr=0.0003", 3e-4),
        ("sched.periods=[100000, 100000, 100000]", [100_000, 100_000, 100_000]),
        ("sched.restart_weights=[1.0, 0.5]", [1.0, 0.5]),
        ("sched.eta_min=0", 0.0),
        ("degradation.rng=mmagic", "mmagic"),
        ("degradation.jpeg.color_order=rgb", "rgb"),
    ],
)
def test_set_overrides(item, expected):
    cfg = load_config(None, [item])
    key = item.split("=", 1)[0]
    value = _get(cfg, key)
    assert value == expected
    if isinstance(expected, float):
        assert isinstance(value, float)


def test_overrides_apply_on_top_of_file_and_in_order(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: 3\nmodel: {num_blocks: 8}\ntrain: {batch_size: 4}\n")
    cfg = load_config(p, ["model.num_blocks=24", "train.batch_size=2", "train.batch_size=6"])
    assert (cfg.seed, cfg.model.num_blocks, cfg.train.batch_size) == (3, 24, 6)
    assert cfg.train.max_iters == 300_000  # untouched keys keep their defaults


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


@pytest.mark.timeout(20)
def test_a_config_that_is_not_a_regular_file_is_one_line_never_a_hang(tmp_path, monkeypatch):
    import os

    import facesr.config as config_mod

    fifo = tmp_path / "cfg.yaml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    with pytest.raises(ConfigError, match="FIFO"):
        load_config(fifo)
    with pytest.raises(ConfigError, match="a folder"):
        load_config(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_text("seed: 1\n" + "#" * 100 + "\n")
    monkeypatch.setattr(config_mod, "MAX_YAML_BYTES", 50)
    with pytest.raises(ConfigError, match="50-byte limit"):
        load_config(big)


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(None, ["model.num_blocks=24", "sched.periods=[100, 200]"])
    p = tmp_path / "dump.yaml"
    p.write_text(cfg.to_yaml())
    assert load_config(p).to_dict() == cfg.to_dict()


PRESETS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.skipif(not PRESETS, reason="no presets in configs/ yet")
@pytest.mark.parametrize("path", PRESETS, ids=[p.name for p in PRESETS])
def test_presets_load(path):
    from facesr.models import build_model, count_params

    cfg = load_config(path)  # every key known, every type right, cross-field checks pass
    model = build_model(cfg.model.arch, **cfg.model.arch_kwargs())
    if cfg.model.max_params is not None:
        assert count_params(model) <= cfg.model.max_params


# ----------------------------------------------------------------------------- seed presets pin the recipe

#: The fully resolved configs of the four seed presets as they were when each restated every default
#: (49 lines); the presets now list only what differs, so the built-in defaults must still give these.
SEED_RESOLVED = REPO / "tests" / "data" / "seed_presets_resolved.json"


def _normalise(d: dict) -> dict:
    """``sched.restart_weights: null`` means 1.0 for every period (what the old presets spelled out);
    the snapshot's ``train.amp`` is the old spelling of ``train.precision``, and its ``data.degrade_on: cpu`` is
    today's ``degrade_engine: exact`` (``degrade_device: auto``)."""
    from facesr.config import AMP_TO_PRECISION

    if "amp" in d["train"]:
        d["train"]["precision"] = AMP_TO_PRECISION[d["train"].pop("amp")]
    s = d["sched"]
    if s["restart_weights"] is None:
        s["restart_weights"] = [1.0] * len(s["periods"])
    if "degrade_on" in d["data"]:
        d["data"]["degrade_engine"] = {"cpu": "exact", "gpu": "batched"}[d["data"].pop("degrade_on")]
        d["data"]["degrade_device"] = "auto"
    return d


@pytest.mark.parametrize(
    "name", ["seed_baseline.yaml", "seed_b24_l1.yaml", "seed_b24_psnr_240k.yaml", "seed_best.yaml"]
)
def test_seed_presets_resolve_to_the_course_recipe(name):
    import json

    expected = _normalise(json.loads(SEED_RESOLVED.read_text())[name])
    got = _normalise(load_config(REPO / "configs" / name).to_dict())
    for section, values in got.items():  # options added after the snapshot must default to off (null)
        if isinstance(values, dict) and isinstance(expected.get(section), dict):
            for key in set(values) - set(expected[section]):
                assert values.pop(key) is None, f"{section}.{key}: a new option that changes the recipe"
    assert got == expected
    assert len((REPO / "configs" / name).read_text().splitlines()) < 20  # only the differences are listed


# ----------------------------------------------------------------------------- fixed choices and cross-field rules


@pytest.mark.parametrize(
    "item,key",
    [
        ("degradation.rng=numpy", "degradation.rng"),
        ("degradation.jpeg.color_order=bgr", "degradation.jpeg.color_order"),
        ("degradation.blur.kernel_list=[iso, box]", "degradation.blur.kernel_list[1]"),
        ("degradation.down.resize_opt=[area, cubic]", "degradation.down.resize_opt[1]"),
        ("degradation.final.resize_opt=[nearest]", "degradation.final.resize_opt[0]"),
    ],
)
def test_fixed_choices_are_checked_by_type(item, key):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [item])
    assert str(exc.value).split(":")[0] == key and "is not one of" in str(exc.value)


@pytest.mark.parametrize(
    "overrides,ok",
    [
        (["train.best_metric=psnr_challenge"], True),
        (["train.best_metric=ssim_ema"], True),
        (["train.best_metric=psnr_challenge_ema", "train.val_weights=ema"], True),
        (["train.best_metric=psnr", "train.val_weights=ema"], False),  # ema validates only the EMA weights
        (["train.best_metric=psnr_ema", "train.val_weights=raw"], False),
        (["train.best_metric=psnr_ema", "train.ema_momentum=null"], False),  # no EMA, no _ema metrics
        (["train.best_metric=pnsr"], False),  # a typo is caught at load time, not at the first validation
    ],
)
def test_best_metric_is_checked_at_load_time(overrides, ok):
    if ok:
        load_config(None, overrides)
    else:
        with pytest.raises(ConfigError, match=r"^train\.best_metric: .*choose from"):
            load_config(None, overrides)


def test_model_fields_set_from_python_are_validated_and_kept():
    from facesr.config import load_config
    from facesr.errors import ConfigError

    cfg = load_config(None)
    cfg.model.num_blocks = 8
    assert cfg.model.num_blocks == 8 and cfg.to_dict()["model"]["num_blocks"] == 8
    with pytest.raises(ConfigError, match="model.num_blocks"):
        cfg.model.num_blocks = 100000
