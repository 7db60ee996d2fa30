"""data.degrade_engine in the config and the trainer, `facesr degrade --engine batched`, and the old names."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from conftest import make_face, write_rgb_png
from facesr.cli import main
from facesr.config import load_config
from facesr.errors import ConfigError
from facesr.io.images import read_rgb


def test_engine_keys_and_the_deprecated_spelling():
    cfg = load_config(None)
    assert cfg.data.degrade_engine == "exact" and cfg.data.degrade_device == "auto" and cfg.data.degrade_on == "cpu"
    cfg = load_config(None, ["data.degrade_engine=batched", "data.degrade_device=cuda:1"])
    assert cfg.data.degrade_on == "gpu" and "degrade_on" not in cfg.to_dict()["data"]
    with pytest.warns(FutureWarning, match="data.degrade_on: gpu is deprecated; write data.degrade_engine: batched"):
        cfg = load_config(None, ["data.degrade_on=gpu"])
    assert cfg.data.degrade_engine == "batched"
    with pytest.warns(FutureWarning):  # the old key wins over the new one (scripts that --set it keep working)
        assert load_config(None, ["data.degrade_engine=batched", "data.degrade_on=cpu"]).data.degrade_engine == "exact"
    with pytest.raises(ConfigError, match="data.degrade_on: 'tpu'"):
        load_config(None, ["data.degrade_on=tpu"])
    with pytest.raises(ConfigError, match="data.degrade_device"):
        load_config(None, ["data.degrade_device=gpu0"])
    with pytest.raises(ConfigError, match="data.crop_schedule: needs data.degrade_engine: exact"):
        load_config(None, ["data.degrade_engine=batched", "data.crop_schedule=[[0, 32]]"])


def test_old_module_is_a_deprecated_shim():
    import importlib
    import sys

    sys.modules.pop("facesr.data.gpu_degradations", None)
    with pytest.warns(DeprecationWarning, match="batched_degradations"):
        mod = importlib.import_module("facesr.data.gpu_degradations")
    from facesr.data.batched_degradations import BatchedDegrader

    assert mod.GpuDegrader is BatchedDegrader


def test_train_degrader_follows_the_config():
    import torch

    from facesr.data.batched_degradations import train_degrader

    assert train_degrader(load_config(None), torch.device("cpu")) is None
    d = train_degrader(
        load_config(None, ["data.degrade_engine=batched", "data.degrade_device=cpu", "data.crop_size=32"]),
        torch.device("cpu"),
    )
    assert d.device.type == "cpu" and d.out_device.type == "cpu" and d.crop_size == 32 and d.scale == 4


@pytest.mark.parametrize("spelling", ["data.degrade_engine=batched", "data.degrade_on=gpu"])
def test_trainer_runs_with_the_batched_engine_and_crop(tmp_path, spelling):
    """The batched engine end to end (CPU device): full GT from the dataset, crop after degrading."""
    from facesr.data.datasets import HQDegradeDataset
    from facesr.training.trainer import train

    hq = tmp_path / "hq"
    hq.mkdir()
    for i in range(3):
        write_rgb_png(hq / f"f{i}.png", make_face(i, size=64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        cfg = load_config(
            None,
            [
                f"data.train_hq_dir={hq}",
                "data.hq_size=64",
                "degradation.up.size=64",
                "degradation.final.size=16",
                "data.crop_size=8",
                spelling,
                "data.num_workers=0",
                "model.mid_channels=8",
                "model.num_blocks=1",
                "train.batch_size=2",
                "train.max_iters=3",
                "train.log_interval=1",
                "train.device=cpu",
                "train.ema_momentum=null",
            ],
        )
    ds = HQDegradeDataset(str(hq), cfg.degradation, 0, hq_size=64, crop_size=8, degrade=cfg.data.degrade_on == "cpu")
    lq, gt = ds[(0, 0)]
    assert lq.numel() == 0 and tuple(gt.shape) == (3, 64, 64)  # the batched engine crops, not the dataset
    train(cfg, tmp_path / "wd", quiet=True)
    logs = [json.loads(line) for line in (tmp_path / "wd" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if r["kind"] == "train"]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert "degrade_engine: batched" in (tmp_path / "wd" / "config.yaml").read_text()


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def test_degrade_cli_batched_engine_writes_the_same_files_and_records(capsys, tmp_path, face_dir):
    exact, batched = tmp_path / "exact", tmp_path / "batched"
    assert main(["degrade", str(face_dir), str(exact), "--seed", "4", "--copies", "2"]) == 0
    assert (
        main(
            [
                "degrade",
                str(face_dir),
                str(batched),
                "--seed",
                "4",
                "--copies",
                "2",
                "--engine",
                "batched",
                "--device",
                "cpu",
                "--batch",
                "3",
                "--workers",
                "2",
            ]
        )
        == 0
    )
    capsys.readouterr()
    names = sorted(p.name for p in exact.iterdir())
    assert sorted(p.name for p in batched.iterdir()) == names
    a = [json.loads(ln) for ln in (exact / "params.jsonl").read_text().splitlines()]
    b = [json.loads(ln) for ln in (batched / "params.jsonl").read_text().splitlines()]
    assert [r.pop("engine") for r in b] == ["batched"] * len(a) and a == b
    for r in a:
        e, f = read_rgb(exact / r["file"]), read_rgb(batched / r["file"])
        assert e.shape == f.shape == (128, 128, 3) and _psnr(e, f) > 33  # the engine's approximations only


def test_degrade_cli_engine_options_are_checked(capsys, tmp_path, face_dir):
    assert main(["degrade", str(face_dir), str(tmp_path / "o"), "--batch", "4"]) == 2
    assert "--engine batched" in capsys.readouterr().err
    assert main(["degrade", str(face_dir), str(tmp_path / "o"), "--engine", "batched", "--batch", "0"]) == 2
    assert "--batch must be at least 1" in capsys.readouterr().err
    assert main(["degrade", str(face_dir), str(tmp_path / "o"), "--engine", "batched", "--device", "nonsense"]) == 2
    assert "--device" in capsys.readouterr().err
