"""Checkpoint I/O: facesr safetensors, MMagic and BasicSR dicts, hostile and broken files."""

from __future__ import annotations

import builtins
import os
import pickle
import re

import pytest
import torch

from facesr.models import CheckpointError, MSRResNet, load_model, read_weights, save_weights


class MessageHub:
    """Stands in for mmengine's MessageHub: a class the loader must not import."""

    def __init__(self):
        self.runtime_info = {"iter": 300000, "epoch": 0}
        self.log_scalars = {"loss": [0.1, 0.09]}


class Evil:
    """Pickles to a call of ``fn(*args)`` on load (os.system, eval, exec, ...)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _models(randomise, blocks=2, ch=16, variant="mmagic"):
    raw = randomise(MSRResNet(num_blocks=blocks, mid_channels=ch, variant=variant), seed=10).eval()
    ema = randomise(MSRResNet(num_blocks=blocks, mid_channels=ch, variant=variant), seed=11).eval()
    return raw, ema


def _out(model, x):
    with torch.no_grad():
        return model(x)


X = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))


def test_facesr_safetensors_round_trip(tmp_path, randomise):
    raw, ema = _models(randomise)
    path = tmp_path / "w.safetensors"
    save_weights(path, raw, ema=ema, metadata={"iter": 42})
    model, lw = load_model(path)
    assert lw.source_format == "facesr" and not lw.used_ema
    assert lw.arch_config["num_blocks"] == 2 and lw.arch_config["mid_channels"] == 16
    assert torch.equal(_out(model, X), _out(raw, X))
    model_e, lw_e = load_model(path, ema=True)
    assert lw_e.used_ema
    assert torch.equal(_out(model_e, X), _out(ema, X))
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left nothing behind


def test_safetensors_without_ema_refuses_ema(tmp_path, randomise):
    raw, _ = _models(randomise)
    path = tmp_path / "w.safetensors"
    save_weights(path, raw)
    with pytest.raises(CheckpointError, match="EMA"):
        load_model(path, ema=True)


def test_mmagic_checkpoint(tmp_path, randomise):
    raw, ema = _models(randomise)
    sd = {f"generator.{k}": v for k, v in raw.state_dict().items()}
    sd.update({f"generator_ema.{k}": v for k, v in ema.state_dict().items()})
    path = tmp_path / "iter_300000.pth"
    torch.save(
        {
            "meta": {"mmagic_version": "1.2.0"},
            "state_dict": sd,
            "message_hub": MessageHub(),
            "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]},
        },
        path,
    )
    model, lw = load_model(path)
    assert lw.source_format == "mmagic" and lw.arch_config["variant"] == "mmagic"
    assert torch.equal(_out(model, X), _out(raw, X))
    model_e, lw_e = load_model(path, ema=True)
    assert lw_e.used_ema
    assert torch.equal(_out(model_e, X), _out(ema, X))
    assert not torch.equal(_out(model_e, X), _out(model, X))


def _to_basicsr_names(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^trunk_net\.(\d+)\.", r"body.\1.", k)
        k = k.replace("upsample1.upsample_conv.", "upconv1.").replace("upsample2.upsample_conv.", "upconv2.")
        out[k] = v
    return out


def test_basicsr_checkpoint(tmp_path, randomise, ref_forward):
    raw, ema = _models(randomise, variant="basicsr")
    params = _to_basicsr_names(raw.state_dict())
    assert {
        "body.0.conv1.weight",
        "body.1.conv2.bias",
        "upconv1.weight",
        "upconv2.weight",
        "conv_hr.weight",
        "conv_last.weight",
        "conv_first.weight",
    } <= set(params)
    path = tmp_path / "basicsr.pth"
    torch.save({"params": params, "params_ema": _to_basicsr_names(ema.state_dict())}, path)
    model, lw = load_model(path)
    assert lw.source_format == "basicsr" and model.variant == "basicsr"
    torch.testing.assert_close(
        _out(model, X), ref_forward(raw.state_dict(), X, 2, variant="basicsr"), rtol=0, atol=1e-6
    )
    model_e, _ = load_model(path, ema=True)
    assert torch.equal(_out(model_e, X), _out(ema, X))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
@pytest.mark.parametrize("payload", ["os.system", "builtins.exec"])
def test_malicious_pickle_is_not_executed(tmp_path, randomise, how, payload):
    marker = tmp_path / "pwned"
    if payload == "os.system":
        evil = Evil(os.system, f"touch '{marker}'")
    else:
        evil = Evil(builtins.exec, f"open({str(marker)!r}, 'w').write('x')")
    raw, _ = _models(randomise)
    obj = {"state_dict": {f"generator.{k}": v for k, v in raw.state_dict().items()}, "hook": evil}
    path = tmp_path / "evil.pth"
    if how == "torch.save":
        torch.save(obj, path)
        model, _ = load_model(path)  # the weights load; the evil object becomes inert
        assert torch.equal(_out(model, X), _out(raw, X))
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f)
        with pytest.raises(CheckpointError, match="evil.pth"):
            load_model(path)
    assert not marker.exists()


def test_malicious_top_level_object(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save(Evil(os.system, f"touch '{marker}'"), path)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_model(path)
    assert not marker.exists()


def _mmagic_file(tmp_path, sd):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"generator.{k}": v for k, v in sd.items()}, "message_hub": MessageHub()}, path)
    return path


def test_missing_key_named(tmp_path, randomise):
    sd = dict(_models(randomise)[0].state_dict())
    del sd["trunk_net.1.conv2.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys: trunk_net\.1\.conv2\.bias"):
        load_model(_mmagic_file(tmp_path, sd))


def test_unexpected_key_named(tmp_path, randomise):
    sd = dict(_models(randomise)[0].state_dict())
    sd["attention.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"unexpected keys: attention\.weight"):
        load_model(_mmagic_file(tmp_path, sd))


def test_shape_mismatch_named(tmp_path, randomise):
    sd = dict(_models(randomise)[0].state_dict())
    sd["conv_hr.weight"] = torch.zeros(16, 16, 1, 1)
    with pytest.raises(CheckpointError, match=r"shape mismatch: conv_hr\.weight \(16, 16, 1, 1\)"):
        load_model(_mmagic_file(tmp_path, sd))


def test_not_msrresnet(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"generator.encoder.weight": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match="conv_first"):
        load_model(path)
    path2 = tmp_path / "nothing.pth"
    torch.save({"a": 1}, path2)
    with pytest.raises(CheckpointError, match="no model weights"):
        load_model(path2)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_truncated_file(tmp_path, randomise, fmt):
    raw, _ = _models(randomise)
    full = tmp_path / f"full.{fmt}"
    if fmt == "pth":
        torch.save({"params": raw.state_dict()}, full)
    else:
        save_weights(full, raw)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut"):
        load_model(cut)
    empty = tmp_path / f"empty.{fmt}"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_weights(empty)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pth")
